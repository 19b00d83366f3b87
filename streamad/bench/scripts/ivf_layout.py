"""Why the IVF index keeps its vectors column by column: a list's matrix product and a change's copy.

On random float32 data of the engine's size (152 dimensions), one BLAS thread, medians of repeated
calls:

- ``product``: a few queries (as a bounded search gives a list) times one list of vectors stored as
  the transpose of a row-major block (``rows[lo:hi].T``) or as a column block (``columns[:, lo:hi]``);
- ``change``: an admission's change (784 removed, 784 added, in list order) as the former row-major
  merge, as scattered columns, and as the index does it (one take of the held columns in the new
  order, then the added columns written in their places).

    python -m streamad.bench.scripts.ivf_layout
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np


def median_ms(fn: Callable[[], object], reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    import threadpoolctl

    threadpoolctl.threadpool_limits(1)
    rng = np.random.default_rng(0)
    d, n, change = 152, 45_000, 784
    rows = rng.standard_normal((n, d)).astype(np.float32)
    columns = np.ascontiguousarray(rows.T)
    for queries, size in ((11, 111), (11, 250), (118, 213)):
        q = rng.standard_normal((queries, d)).astype(np.float32)
        t_rows = median_ms(lambda: q @ rows[1000:1000 + size].T, 2000) * 1e3
        t_cols = median_ms(lambda: q @ columns[:, 1000:1000 + size], 2000) * 1e3
        print(f"product, {queries} queries x a list of {size}: row block transposed {t_rows:.1f} us, "
              f"column block {t_cols:.1f} us")
    keep = np.ones(n, bool)
    keep[rng.choice(n, change, replace=False)] = False
    kept = np.flatnonzero(keep)
    added_at = np.zeros(len(kept) + change, bool)
    added_at[rng.choice(len(added_at), change, replace=False)] = True
    pos_a, pos_k = np.flatnonzero(added_at), np.flatnonzero(~added_at)
    new = rng.standard_normal((change, d)).astype(np.float32)
    source = np.zeros(len(added_at), np.int64)
    source[pos_k] = kept

    def row_major() -> np.ndarray:
        out = np.empty((len(added_at), d), np.float32)
        out[pos_k], out[pos_a] = rows[keep], new
        return out

    def scattered_columns() -> np.ndarray:
        out = np.empty((d, len(added_at)), np.float32)
        out[:, pos_k], out[:, pos_a] = columns[:, keep], new.T
        return out

    def take_then_write() -> np.ndarray:
        out = np.take(columns, source, axis=1)
        out[:, pos_a] = new.T
        return out

    assert np.array_equal(row_major().T, take_then_write()) and np.array_equal(scattered_columns(), take_then_write())
    print(f"change of {change} out and {change} in, {n:,} vectors: row-major merge {median_ms(row_major, 10):.1f} ms, "
          f"scattered columns {median_ms(scattered_columns, 10):.1f} ms, "
          f"one take then the added written {median_ms(take_then_write, 10):.1f} ms")


if __name__ == "__main__":
    main()
