"""Patch scores to pixel heatmaps: bilinear upsampling, then a Gaussian blur.

    >>> import numpy as np
    >>> h = heatmap_from_patch_scores(np.array([[0.0, 1.0], [0.0, 0.0]]), (8, 8), blur_sigma=0)
    >>> h.shape, h.dtype, float(h.max()) <= 1.0
    ((8, 8), dtype('float32'), True)
"""

from __future__ import annotations

import cv2
import numpy as np


def heatmap_from_patch_scores(patch_scores: np.ndarray, size: tuple[int, int], blur_sigma: float) -> np.ndarray:
    """Upsample a (H, W) patch score grid to ``size`` = (height, width) and blur it (sigma in pixels).

    The blur is OpenCV's separable Gaussian with scipy's ``gaussian_filter`` kernel (radius
    ``int(4 * sigma + 0.5)``, edges repeated): the same picture to float rounding (a difference below
    1e-5 on scores of order 10), at a half to a tenth of the time.

        >>> from scipy.ndimage import gaussian_filter
        >>> grid = np.random.default_rng(0).random((28, 28)).astype(np.float32)
        >>> up = cv2.resize(grid, (384, 384), interpolation=cv2.INTER_LINEAR)
        >>> ref = gaussian_filter(up, sigma=4.0, mode="nearest")
        >>> bool(np.abs(heatmap_from_patch_scores(grid, (384, 384), 4.0) - ref).max() < 1e-5)
        True
    """
    grid = np.asarray(patch_scores, dtype=np.float32)
    height, width = int(size[0]), int(size[1])
    up = cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR)
    if blur_sigma > 0:
        radius = int(4.0 * float(blur_sigma) + 0.5)
        up = cv2.GaussianBlur(up, (2 * radius + 1, 2 * radius + 1), sigmaX=float(blur_sigma),
                              sigmaY=float(blur_sigma), borderType=cv2.BORDER_REPLICATE)
    return up.astype(np.float32, copy=False)


def image_score(heatmaps: np.ndarray) -> float | np.ndarray:
    """The image score: the heatmap maximum (one (H, W) heatmap gives a float, a stack (N, H, W) an (N,) array).

    Every model and the streaming engine score frames with this function.

        >>> image_score(np.array([[0.0, 2.5], [1.0, 0.5]], np.float32))
        2.5
        >>> image_score(np.zeros((3, 2, 2), np.float32)).tolist()
        [0.0, 0.0, 0.0]
    """
    heat = np.asarray(heatmaps)
    if heat.ndim == 2:
        return float(heat.max())
    if heat.ndim != 3:
        raise ValueError(f"heatmaps must be (H, W) or (N, H, W), got shape {heat.shape}")
    return heat.reshape(len(heat), -1).max(1)


def frame_scores(heatmaps: np.ndarray, patch_scores: np.ndarray, rule: str = "max", top_k: int = 10) -> np.ndarray:
    """Image scores (N,) of heatmaps (N, h, w) and their patch scores (N, H, W) by ``rule``
    (``HeatmapConfig.image_score``): ``"max"`` the heatmap maximum (:func:`image_score`), ``"top_mean"`` the
    mean of the ``top_k`` highest patch scores. ``"reweight"`` needs the nominal set: a model computes it.

        >>> patch = np.array([[[0.0, 4.0], [2.0, 1.0]]], np.float32)
        >>> frame_scores(patch, patch, "top_mean", top_k=2).tolist()
        [3.0]
        >>> frame_scores(patch, patch, "max").tolist()
        [4.0]
    """
    heat = np.asarray(heatmaps)
    if rule == "max":
        return np.asarray(image_score(heat if heat.ndim == 3 else heat[None]), np.float32).reshape(-1)
    if rule == "top_mean":
        flat = np.asarray(patch_scores, np.float32)
        flat = flat.reshape(len(flat), -1) if heat.ndim == 3 else flat.reshape(1, -1)
        k = min(int(top_k), flat.shape[1])
        return np.partition(flat, flat.shape[1] - k, axis=1)[:, -k:].mean(axis=1).astype(np.float32)
    raise ValueError(f"image score rule {rule!r} is not computed from the heatmap alone: 'max' or 'top_mean' "
                     "here; 'reweight' needs the nominal set (a batch model's image_scores)")
