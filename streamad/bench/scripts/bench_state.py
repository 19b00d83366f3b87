"""Size on disk and save / load time of a full engine state (docs/persistence.md, "Size and time").

    python -m streamad.bench.scripts.bench_state [--frames 80] [--window 64] [--dim 256] [--repeats 3]

A StreamDetector with the default configuration (D = 10 seeds, HNSW index) on a 28 x 28 grid is fed
synthetic descriptors (a fixed scene plus noise, seeded), then saved and loaded ``--repeats`` times
into a temporary folder. Prints the sizes, the times, the largest files, and whether the reloaded
detector gives the same next result as the original.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from streamad.config import StreamConfig
from streamad.stream.detector import StreamDetector
from streamad.evaluation.descriptor_cache import PrecomputedDescriptors


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=80)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    grid, size = (28, 28), (224, 224)
    rng = np.random.default_rng(0)
    base = rng.normal(size=(grid[0] * grid[1], args.dim)).astype(np.float32)
    det = StreamDetector(StreamConfig(window=args.window), extractor=PrecomputedDescriptors(grid, size))
    t = time.perf_counter()
    for i in range(args.frames):
        det.process_descriptors(base + 0.1 * rng.normal(size=base.shape).astype(np.float32), timestamp=float(i))
    print(f"{args.frames} frames in {time.perf_counter() - t:.0f} s; nominal patches {det.nominal_count}, "
          f"graph in use: {det.index is not None and det.index.uses_graph}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "state")
        for _ in range(args.repeats):
            t = time.perf_counter()
            det.save(path)
            t_save = time.perf_counter() - t
            t = time.perf_counter()
            back = StreamDetector.load(path, extractor=PrecomputedDescriptors(grid, size))
            t_load = time.perf_counter() - t
            files = os.listdir(path)
            total = sum(os.path.getsize(os.path.join(path, f)) for f in files)
            print(f"save {t_save:.2f} s, load {t_load:.2f} s, {total / 1e6:.1f} MB in {len(files)} files")
        big = sorted(((os.path.getsize(os.path.join(path, f)), f) for f in os.listdir(path)), reverse=True)[:4]
        print("largest:", ", ".join(f"{f} {s / 1e6:.1f} MB" for s, f in big))
    x = rng.normal(size=base.shape).astype(np.float32)
    a, b = det.process_descriptors(x, timestamp=1e3), back.process_descriptors(x, timestamp=1e3)
    print("same next result after reload:", a.score == b.score and np.array_equal(a.patch_scores, b.patch_scores))


if __name__ == "__main__":
    main()
