"""Frame validation and conversion: everything the engine sees is RGB ``uint8`` (H, W, 3).

Usable but unusual frames are converted; unusable ones raise ``ValueError`` saying what was wrong.

    >>> import numpy as np
    >>> as_rgb_uint8(np.zeros((8, 10), np.uint8)).shape         # grayscale -> RGB
    (8, 10, 3)
    >>> as_rgb_uint8(np.full((8, 8, 3), 0.5)).max()              # float in [0, 1] -> uint8
    np.uint8(128)
    >>> as_rgb_uint8(None)
    Traceback (most recent call last):
    ...
    ValueError: frame is None: pass an RGB uint8 array of shape (height, width, 3)
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_SIDE = 16384
MIN_SIDE = 8
_HINT = "pass an RGB uint8 array of shape (height, width, 3)"


def as_rgb_uint8(frame: Any) -> np.ndarray:
    """Validate ``frame`` and return it as a C-contiguous RGB ``uint8`` array (H, W, 3).

    Accepted: (H, W) or (H, W, 1) grayscale, (H, W, 3) RGB, (H, W, 4) RGBA (alpha dropped),
    integer images (uint8 as is; uint16 scaled by 1/257), float images in [0, 1].
    """
    if frame is None:
        raise ValueError(f"frame is None: {_HINT}")
    if not isinstance(frame, np.ndarray):
        try:
            frame = np.asarray(frame)
        except Exception as exc:  # pragma: no cover - exotic objects
            raise ValueError(f"frame of type {type(frame).__name__} is not an array: {_HINT}") from exc
    if frame.dtype == object or frame.dtype.kind not in "uifb":
        raise ValueError(f"frame has dtype {frame.dtype}, not a number type: {_HINT}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim not in (2, 3):
        raise ValueError(f"frame has {frame.ndim} dimensions (shape {frame.shape}): {_HINT}")
    if frame.ndim == 3 and frame.shape[2] not in (3, 4):
        raise ValueError(f"frame has {frame.shape[2]} channels (shape {frame.shape}): {_HINT}")
    h, w = frame.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"frame is empty (shape {frame.shape}): {_HINT}")
    if h < MIN_SIDE or w < MIN_SIDE or h > MAX_SIDE or w > MAX_SIDE:
        raise ValueError(f"frame size {h}x{w} is outside {MIN_SIDE}..{MAX_SIDE} pixels per side")
    if frame.dtype.kind == "f":
        if not np.isfinite(frame).all():
            raise ValueError("frame contains NaN or infinite values")
        lo, hi = float(frame.min()), float(frame.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"float frame values span [{lo:.3g}, {hi:.3g}]; float frames must lie in [0, 1]")
        frame = np.round(frame * 255.0).astype(np.uint8)
    elif frame.dtype == np.uint16:
        frame = (frame // 257).astype(np.uint8)
    elif frame.dtype != np.uint8:
        lo, hi = int(frame.min()), int(frame.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"integer frame values span [{lo}, {hi}]; expected 0..255")
        frame = frame.astype(np.uint8)
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    elif frame.shape[2] == 4:
        frame = frame[:, :, :3]
    return np.ascontiguousarray(frame)
