"""The live loop on one thread against the live loop with its reader describing one frame ahead.

``serial``: ``streamad bench``'s live pass with ``run_watch(..., pipeline=False)``, each frame's features
then its score on the loop's thread; ``overlap``: the same pass as ``streamad bench`` runs it (and ``watch``),
the reader thread computing the next frame's features while the loop scores the current one. Both with a
background learner admitting, on the demo's frames in memory (the first window learned untimed, as
``streamad bench`` does). Prints frames per second and the learner's admissions per second; run the two
modes interleaved on a quiet machine.

    python -m streamad.bench.scripts.pipeline_probe serial
    python -m streamad.bench.scripts.pipeline_probe overlap
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["serial", "overlap"])
    parser.add_argument("--frames", type=int, default=536, help="demo frames, the first window untimed (default 536)")
    args = parser.parse_args(argv)

    from streamad.bench import throughput
    from streamad.runtime.heap import heap_as_in_watch

    print(heap_as_in_watch())
    r = throughput.measure_throughput(throughput.demo_frames(args.frames), throughput.bench_config(),
                                      modes=("live",), pipeline=args.mode == "overlap")
    print(f"{args.mode}: {r['frames_timed']} frames, {r['pipeline_fps']:.2f} fps, "
          f"learner {r['admissions_per_s']:.2f} admissions/s")


if __name__ == "__main__":
    main()
