"""How the scorer's search guess behaves on the demo stream: answers beyond it, lists skipped, time.

A detector (the defaults, one thread) learns the first 100 frames of the demo stream, then scores the
next 100 (``score_descriptors`` on precomputed descriptors, so the backbone is not timed) once with the
guess off and once for each guess slack. Per setting: the share of the answers that lay beyond the
guess, the share of probed lists the window's and the memory's bounded searches skipped (mean), and
the scoring time per frame (p50 / p99). The answers are the same in every setting
(tests/test_detector.py); only the work changes.

    python -m streamad.bench.scripts.guess_probe
    python -m streamad.bench.scripts.guess_probe --slacks 1.1 1.25 1.5 2.0
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slacks", type=float, nargs="+", default=[1.1, 1.25, 1.5, 2.0])
    args = parser.parse_args(argv)

    import threadpoolctl
    import torch

    import streamad.index.ivf as ivf
    from streamad.bench.throughput import bench_config, demo_frames
    from streamad.stream.detector import StreamDetector
    from streamad.stream.distance_guess import DistanceGuess

    threadpoolctl.threadpool_limits(1)
    torch.set_num_threads(1)
    frames = demo_frames(200)
    det = StreamDetector(bench_config())
    for f in frames[:100]:
        det.process(f)
    shape = frames[0].shape[:2]
    desc = [det.extractor([f])[0] for f in frames[100:]]
    skipped: dict[str, list[float]] = {"window": [], "memory": []}
    note = ivf._BoundsPay.note

    def spy(pay: ivf._BoundsPay, share: float) -> None:  # which index's bounded search skipped how much
        skipped["window" if det.index is not None and pay is det.index._bounds_pay else "memory"].append(share)
        note(pay, share)

    ivf._BoundsPay.note = spy  # type: ignore[method-assign]
    print("| guess | answers beyond it | lists skipped: window / memory | score ms p50 / p99 |")
    print("|---|---|---|---|")
    for slack in [None, *args.slacks]:
        det._guess = DistanceGuess(slack=slack) if slack else _NoGuess()  # type: ignore[assignment]
        for d in desc[:5]:  # the guess needs a frame before it
            det.score_descriptors(d, shape)
        det._guess.offered = det._guess.beyond = 0
        skipped["window"].clear()
        skipped["memory"].clear()
        ms = []
        for d in desc[5:]:
            t0 = time.perf_counter()
            det.score_descriptors(d, shape)
            ms.append((time.perf_counter() - t0) * 1e3)
        g = det._guess
        beyond = f"{g.beyond / g.offered:.1%}" if g.offered else "-"
        share = " / ".join(f"{np.mean(v):.0%}" if v else "-" for v in skipped.values())
        print(f"| {'off' if slack is None else f'x {slack}'} | {beyond} | {share} | "
              f"{np.median(ms):.1f} / {np.quantile(ms, 0.99):.1f} |", flush=True)
    det.close()


class _NoGuess:
    """The guess off (the window's plain search)."""

    offered = beyond = 0

    def guess(self, n: int) -> None:
        return None

    def observe(self, distances: np.ndarray) -> None:
        pass


if __name__ == "__main__":
    main()
