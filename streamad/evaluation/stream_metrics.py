"""Per-run metrics of a scored stream: frame AUROC, pixel AUROC, false alarm and detection rates.

A frame without a score (the streaming detector still warming up) counts as *not alarmed* and is
left out of the AUROCs; ``frames_scored`` says how many frames each row's AUROCs saw. A frame is
alarmed when its score exceeds its threshold (no threshold yet: not alarmed). Rates are over the
run's nominal frames (false alarms) and defective frames (detections). An AUROC that cannot be
computed (one class only among the scored frames) is ``None``.

    >>> runs = ["a"] * 4 + ["b"] * 4
    >>> labels = [0, 0, 1, 0, 0, 1, 0, 0]
    >>> scores = [1.0, 2.0, 9.0, None, 5.0, 4.0, 6.0, 1.0]
    >>> rows = per_run_metrics("m", runs, labels, scores, thresholds=[3.0] * 8)
    >>> [(r["run"], r["frame_auroc"], r["false_alarm_rate"], r["detection_rate"]) for r in rows]
    [('a', 1.0, 0.0, 1.0), ('b', 0.3333333333333333, 0.6666666666666666, 1.0)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from streamad.evaluation.metrics import auroc

ROW_KEYS = ("run", "method", "frame_auroc", "pixel_auroc", "false_alarm_rate", "detection_rate")


def _rate(hits: np.ndarray, where: np.ndarray) -> float | None:
    n = int(where.sum())
    return float(hits[where].sum() / n) if n else None


def per_run_metrics(method: str, runs: Sequence[str], labels: Sequence[int], scores: Sequence[float | None],
                    thresholds: Sequence[float | None],
                    pixel_auroc_of: Callable[[np.ndarray], float | None] | None = None) -> list[dict[str, Any]]:
    """One row per run (in order of first appearance) with :data:`ROW_KEYS` plus counts.

    ``scores`` / ``thresholds`` may hold None (no score / no threshold yet). ``pixel_auroc_of(frames)``,
    given the indices of a run's scored frames, returns their pixel AUROC (None: not reported).
    """
    n = len(runs)
    for name, seq in (("labels", labels), ("scores", scores), ("thresholds", thresholds)):
        if len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries for {n} frames")
    y = np.asarray(labels, dtype=int)
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (nominal) or 1 (defective)")
    scored = np.array([s is not None for s in scores])
    s = np.array([np.nan if v is None else float(v) for v in scores])
    t = np.array([np.nan if v is None else float(v) for v in thresholds])
    alarm = scored & ~np.isnan(t) & (np.nan_to_num(s, nan=-np.inf) > np.nan_to_num(t, nan=np.inf))
    run_arr = np.asarray(runs, dtype=object)
    rows = []
    for run in dict.fromkeys(runs):
        inside = run_arr == run
        use = inside & scored
        frame_auroc = None
        if len(set(y[use].tolist())) == 2:
            frame_auroc = auroc(s[use], y[use])
        pix = pixel_auroc_of(np.flatnonzero(use)) if pixel_auroc_of is not None and use.any() else None
        rows.append({
            "run": run, "method": method, "frame_auroc": frame_auroc, "pixel_auroc": pix,
            "false_alarm_rate": _rate(alarm, inside & (y == 0)), "detection_rate": _rate(alarm, inside & (y == 1)),
            "frames": int(inside.sum()), "frames_scored": int(use.sum()), "defective": int((inside & (y == 1)).sum()),
            "alarms": int((alarm & inside).sum()),
        })
    return rows
