"""Validation shared by the baseline patch models: config fields, descriptor arrays, grids."""

from __future__ import annotations

import numpy as np


def check(cls: str, name: str, ok: bool, value: object, need: str) -> None:
    """Raise ``ValueError("<cls>.<name> must be <need>, got <value>")`` unless ``ok``.

        >>> check("PatchCoreConfig", "coreset_fraction", False, 0, "in (0, 1]")
        Traceback (most recent call last):
        ...
        ValueError: PatchCoreConfig.coreset_fraction must be in (0, 1], got 0
    """
    if not ok:
        raise ValueError(f"{cls}.{name} must be {need}, got {value!r}")


def check_device(cls: str, device: str) -> None:
    """A torch device name for the nearest-neighbour searches (and PNI's MLP)."""
    check(cls, "device", isinstance(device, str) and (device in ("cpu", "cuda") or device.startswith("cuda:")),
          device, "'cpu', 'cuda' or 'cuda:N'")


def check_descriptors(descriptors: np.ndarray, dim: int | None = None) -> np.ndarray:
    """``descriptors`` as float32 (N, P, d); a clear error for any other shape or a dimension mismatch."""
    x = np.asarray(descriptors, np.float32)
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(f"descriptors must be a non-empty (N, P, d) array, got shape {x.shape}")
    if dim is not None and x.shape[2] != dim:
        raise ValueError(f"descriptors have d={x.shape[2]} but the model was fitted on d={dim}")
    return x


def check_grid(descriptors: np.ndarray, grid: tuple[int, int]) -> tuple[int, int]:
    """``grid`` as (H, W) ints; an error unless H * W is the descriptors' patch count."""
    grid = (int(grid[0]), int(grid[1]))
    if grid[0] < 1 or grid[1] < 1 or grid[0] * grid[1] != descriptors.shape[1]:
        raise ValueError(f"grid {grid} does not match P={descriptors.shape[1]} patches per image")
    return grid
