"""What overlapping the next frame's features with the current frame's scoring would give live scoring.

Live scoring as ``streamad bench`` runs it (``serial``: each frame's features, then its score, on one
thread, a background learner admitting) against a prototype (``overlap``): a second thread computes the
next frame's features while the caller scores the current one, one frame in flight. The prototype calls
the detector's two halves directly (``StreamDetector._features`` and ``_process``), which the live loop
does not split yet: it measures the lever, it is not the product. The window and the long-term memory are
filled first (every frame learned once, untimed, as ``streamad bench`` does), then the demo's frames after
the first window are scored twice over, timed. Prints frames per second and the learner's admissions per
second.

    python -m streamad.bench.scripts.pipeline_probe serial
    python -m streamad.bench.scripts.pipeline_probe overlap
"""

from __future__ import annotations

import argparse
import dataclasses
import queue
import threading
import time


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["serial", "overlap"])
    parser.add_argument("--frames", type=int, default=300, help="demo frames (default 300)")
    args = parser.parse_args(argv)

    from streamad.bench import throughput
    from streamad.runtime.heap import heap_as_in_watch
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
        if args.mode == "serial":
            for f in timed:
                det.process(f)
        else:
            described: queue.Queue = queue.Queue(maxsize=1)

            def describe() -> None:
                for f in timed:
                    frame, desc, _ = det._features(f)
                    described.put((desc, frame.shape[:2]))
                described.put(None)

            feeder = threading.Thread(target=describe, name="probe-features", daemon=True)
            feeder.start()
            while (item := described.get()) is not None:
                det._process(item[0], item[1], None, learn=True, timings={})
            feeder.join()
        elapsed = time.perf_counter() - t0
        admitted = det.learner_stats().get("admitted", 0) - before
    print(f"{args.mode}: {len(timed)} frames, {len(timed) / elapsed:.2f} fps, "
          f"learner {admitted / elapsed:.2f} admissions/s")


if __name__ == "__main__":
    main()
