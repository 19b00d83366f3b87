"""Picture of methods on a drifting stream: frame scores over time, one panel per method.

Each panel shows the frame scores (nominal frames grey, defective frames red), the threshold the
method judged each frame by, its drift flags (orange ticks along the top) and the run boundaries.

    >>> import os, tempfile
    >>> from types import SimpleNamespace as T
    >>> tr = T(method="m", scores=[1.0, None, 3.0], thresholds=[2.0, 2.0, 2.0], drift=[False, True, False])
    >>> path = os.path.join(tempfile.mkdtemp(), "p.png")
    >>> plot_stream_traces([tr], labels=[0, 0, 1], runs=["a", "a", "b"], path=path)
    >>> os.path.getsize(path) > 0
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def plot_stream_traces(traces: Sequence[Any], labels: Sequence[int], runs: Sequence[str], path: str,
                       title: str = "") -> None:
    """Write a PNG to ``path``; ``traces`` have ``method``, ``scores``, ``thresholds`` and ``drift`` per frame."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(labels)
    x = np.arange(n)
    y = np.asarray(labels, bool)
    starts = [i for i in range(n) if i == 0 or runs[i] != runs[i - 1]]
    fig, axes = plt.subplots(len(traces), 1, figsize=(12, 2.2 * len(traces) + 0.6), sharex=True, squeeze=False)
    for ax, tr in zip(axes[:, 0], traces):
        s = np.array([np.nan if v is None else v for v in tr.scores], float)
        t = np.array([np.nan if v is None else v for v in tr.thresholds], float)
        top = np.nanmax(np.concatenate([s[np.isfinite(s)], t[np.isfinite(t)], [1.0]]))
        ax.scatter(x[~y], s[~y], s=5, c="0.55", label="nominal frame", lw=0)
        ax.scatter(x[y], s[y], s=22, c="tab:red", marker="x", label="defective frame", lw=1.2)
        ax.plot(x, t, c="tab:blue", lw=1.2, label="threshold")
        flags = np.flatnonzero(np.asarray(tr.drift, bool))
        if len(flags):
            ax.vlines(flags, top * 1.02, top * 1.1, colors="tab:orange", lw=1.5, label="drift flag")
        for k, st in enumerate(starts):
            if k:
                ax.axvline(st - 0.5, c="k", ls=":", lw=0.8)
            end = starts[k + 1] if k + 1 < len(starts) else n
            if ax is axes[0, 0]:
                ax.text((st + end) / 2, 1.02, runs[st], transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                        fontsize=9)
        ax.set_ylim(0, top * 1.12)
        ax.set_ylabel(tr.method, fontsize=10)
        ax.grid(alpha=0.25)
    axes[0, 0].legend(loc="upper left", fontsize=8, ncol=4, framealpha=0.85)
    axes[-1, 0].set_xlabel("frame (stream order)")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
