"""What the C heap keeps when the backbone's batch size changes, and what handing it back costs.

The default extractor (one torch thread) runs on random batch sizes 1-4 (as the shared backbone does
while cameras come and go), after one call of each size. Modes: ``plain`` (glibc keeps freed memory),
``minute`` (``streamad.runtime.heap.release_free_memory`` every 60 calls, about what the once-a-minute
trimmer of serve does at a few frames a second), ``every`` (after every call: the price of the pages
faulted in again). Prints the memory (RSS) every 50 calls and the median time of a call per batch size.

    python -m streamad.bench.scripts.heap_batches plain
    python -m streamad.bench.scripts.heap_batches minute
    python -m streamad.bench.scripts.heap_batches every
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["plain", "minute", "every"])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    from streamad.config import FeatureConfig
    from streamad.runtime.heap import release_free_memory
    from streamad.vision.features import PatchFeatureExtractor

    torch.set_num_threads(1)
    extract = PatchFeatureExtractor(FeatureConfig())
    rng = np.random.default_rng(args.seed)
    frames = [rng.integers(0, 255, (384, 384, 3), np.uint8) for _ in range(4)]
    for b in (4, 3, 2, 1):
        extract(frames[:b])
    print(f"{args.mode}: after one call of each size: RSS {rss_mib():.1f} MiB", flush=True)
    times: dict[int, list[float]] = {b: [] for b in range(1, 5)}
    rows = []
    for i in range(1, args.calls + 1):
        b = int(rng.integers(1, 5))
        t0 = time.perf_counter()
        extract(frames[:b])
        times[b].append(time.perf_counter() - t0)
        if args.mode == "every" or (args.mode == "minute" and i % 60 == 0):
            release_free_memory()
        if i % 50 == 0:
            rows.append(f"{rss_mib():.1f}")
    print(f"{args.mode}: RSS every 50 calls (MiB): {' '.join(rows)}")
    print(f"{args.mode}: median call (ms): " + ", ".join(f"batch {b} {1e3 * np.median(v):.1f}" for b, v in times.items()))


if __name__ == "__main__":
    main()
