"""Evaluation metrics: image AUROC, pixel AUROC, and the nominal filter's precision and recall.

Pixel AUROC needs defect pixels: :func:`pixel_auroc_if_labelled` measures it when the masks allow and
otherwise says why not (image labels only, or no defect pixel inside the scored area).

    >>> auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    0.75
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with ties counted half); labels are 0/1."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in size: {s.shape} vs {y.shape}")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUROC needs both positive and negative labels")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    ranks = rankdata(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def pixel_auroc(heatmaps: np.ndarray, masks: np.ndarray) -> float:
    """AUROC over every pixel of every image: heatmaps (N, h, w) against bool masks (N, h, w)."""
    if heatmaps.shape != masks.shape:
        raise ValueError(f"heatmaps {heatmaps.shape} and masks {masks.shape} differ in shape")
    return auroc(heatmaps, masks)


def pixel_auroc_if_labelled(heatmaps: np.ndarray, masks: np.ndarray, missing: str | None = None,
                            area: str = "the scored area") -> tuple[float | None, str | None]:
    """(pixel AUROC, None), or (None, why it is not available): ``missing`` says which masks are absent
    (image labels only); masks without a single defect pixel inside ``area`` give nothing to rank.

        >>> heat = np.zeros((2, 4, 4), np.float32); heat[1, 0, 0] = 1.0
        >>> masks = np.zeros((2, 4, 4), bool)
        >>> pixel_auroc_if_labelled(heat, masks, area="the centre crop")
        (None, 'the masks hold no defect pixel inside the centre crop')
        >>> masks[1, 0, 0] = True
        >>> pixel_auroc_if_labelled(heat, masks)
        (1.0, None)
    """
    if missing:
        return None, missing
    masks = np.asarray(masks, bool)
    if not masks.any():
        return None, f"the masks hold no defect pixel inside {area}"
    if masks.all():
        return None, f"every pixel inside {area} is marked defective: no normal pixel to rank against"
    return pixel_auroc(heatmaps, masks), None


def filter_precision_recall(predicted_nominal: np.ndarray, truly_nominal: np.ndarray) -> tuple[float, float]:
    """Precision and recall of the nominal filter on training patches (paper Table 4).

        >>> filter_precision_recall(np.array([True, True, False, False]), np.array([True, False, True, True]))
        (0.5, 0.3333333333333333)
    """
    pred = np.asarray(predicted_nominal, bool).ravel()
    true = np.asarray(truly_nominal, bool).ravel()
    hit = float((pred & true).sum())
    precision = hit / pred.sum() if pred.any() else float("nan")
    recall = hit / true.sum() if true.any() else float("nan")
    return float(precision), float(recall)
