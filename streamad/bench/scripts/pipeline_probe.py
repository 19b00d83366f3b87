"""The live loop on one thread against the live loop with its reader describing one frame ahead.

``serial``: ``run_watch(..., pipeline=False)``, each frame's features then its score on the loop's thread;
``overlap``: ``run_watch`` as ``watch`` runs it, the reader thread computing the next frame's features
while the loop scores the current one. Both with a background learner admitting. The window and the
long-term memory are filled first (every frame learned once, untimed, as ``streamad bench`` does), then
the demo's frames after the first window go through the loop twice over, timed (in memory: no decoding).
Prints frames per second and the learner's admissions per second; run the two modes interleaved on a
quiet machine.

    python -m streamad.bench.scripts.pipeline_probe serial
    python -m streamad.bench.scripts.pipeline_probe overlap
"""

from __future__ import annotations

import argparse
import dataclasses
import time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["serial", "overlap"])
    parser.add_argument("--frames", type=int, default=300, help="demo frames (default 300)")
    args = parser.parse_args(argv)

    from streamad.adapters.sources import ArraySource
    from streamad.bench import throughput
    from streamad.runtime.heap import heap_as_in_watch
    from streamad.runtime.live import run_watch
    from streamad.stream.detector import StreamDetector
    from streamad.stream.threads import apply_threads

    print(heap_as_in_watch())
    config = dataclasses.replace(throughput.bench_config(), learn_in_background=True)
    apply_threads(config.threads, background=True)  # the live budget: torch and BLAS on one thread each
    frames = throughput.demo_frames(args.frames)
    timed = frames[config.window:] * 2
    with StreamDetector(config) as det:
        for f in frames:
            det.learn_one(f)
        before = det.learner_stats().get("admitted", 0)
        t0 = time.perf_counter()
        summary = run_watch(ArraySource(timed), det, pipeline=args.mode == "overlap")
        elapsed = time.perf_counter() - t0
        admitted = det.learner_stats().get("admitted", 0) - before
    print(f"{args.mode}: {summary.frames} frames, {summary.frames / elapsed:.2f} fps, "
          f"learner {admitted / elapsed:.2f} admissions/s")


if __name__ == "__main__":
    main()
