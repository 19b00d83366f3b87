"""Frame validation and conversion: everything the engine sees is RGB ``uint8`` (H, W, 3).

Usable but unusual frames are converted; unusable ones raise ``ValueError`` saying what was wrong
and what to do. Arrays are taken as **RGB(A)**: an OpenCV image (BGR or BGRA) must be converted
first (``cv2.cvtColor(img, cv2.COLOR_BGR2RGB)``); the sources in ``streamad.adapters.sources`` do
that at the edge, for 3- and 4-channel and grayscale captures alike.

    >>> import numpy as np
    >>> as_rgb_uint8(np.zeros((8, 10), np.uint8)).shape         # grayscale -> RGB
    (8, 10, 3)
    >>> as_rgb_uint8(np.full((8, 8, 3), 0.5)).max()              # float in [0, 1] -> uint8
    np.uint8(128)
    >>> as_rgb_uint8(None)
    Traceback (most recent call last):
    ...
    ValueError: frame is None: pass an RGB uint8 array of shape (height, width, 3)
    >>> as_rgb_uint8(np.zeros((3, 32, 32), np.uint8))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: frame has 32 channels (shape (3, 32, 32)); it looks channels-first ...: pass frame.transpose(1, 2, 0)

A stream whose frames change size is brought back to the first size by :class:`StreamFrameSize`
(the streaming detector and serve's worker-mode detector both keep one), with one
:class:`FrameSizeWarning`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_SIDE = 16384
MIN_SIDE = 8
_HINT = "pass an RGB uint8 array of shape (height, width, 3)"


class FrameSizeWarning(UserWarning):
    """A stream's frame changed size; later frames are resized to the first frame's size."""


def as_rgb_uint8(frame: Any) -> np.ndarray:
    """Validate ``frame`` and return it as a C-contiguous RGB ``uint8`` array (H, W, 3).

    Accepted: (H, W) or (H, W, 1) grayscale, (H, W, 3) RGB, (H, W, 4) RGBA (alpha dropped),
    integer images (uint8 as is; uint16 scaled by 1/257; other integer types when their values lie
    in 0..255), bool images (False 0, True 255), float images in [0, 1]. Sides must be 8..16384
    pixels. Channels are taken in RGB(A) order: BGR(A) arrays from OpenCV must be converted first.
    """
    if frame is None:
        raise ValueError(f"frame is None: {_HINT}")
    if not isinstance(frame, np.ndarray):
        try:
            frame = np.asarray(frame)
        except Exception as exc:  # ragged lists, exotic objects
            raise ValueError(f"frame of type {type(frame).__name__} is not an array: {_HINT}") from exc
    if frame.dtype == object or frame.dtype.kind not in "uifb":
        raise ValueError(f"frame has dtype {frame.dtype}, not a number type: {_HINT}")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 4 and frame.shape[0] == 1:
        raise ValueError(f"frame has 4 dimensions (shape {frame.shape}): a batch of one? pass frame[0], "
                         "one (height, width, 3) frame per call")
    if frame.ndim not in (2, 3):
        raise ValueError(f"frame has {frame.ndim} dimensions (shape {frame.shape}): {_HINT}")
    if frame.ndim == 3 and frame.shape[2] not in (3, 4):
        if frame.shape[0] in (1, 3, 4):
            raise ValueError(f"frame has {frame.shape[2]} channels (shape {frame.shape}); it looks channels-first "
                             "(C, H, W): pass frame.transpose(1, 2, 0)")
        raise ValueError(f"frame has {frame.shape[2]} channels (shape {frame.shape}): {_HINT} "
                         "(or (height, width) grayscale, or (height, width, 4) RGBA)")
    h, w = frame.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"frame is empty (shape {frame.shape}): {_HINT}")
    if h < MIN_SIDE or w < MIN_SIDE or h > MAX_SIDE or w > MAX_SIDE:
        raise ValueError(f"frame size {h}x{w} is outside {MIN_SIDE}..{MAX_SIDE} pixels per side: check the "
                         "source's resolution, or resize the frame (e.g. cv2.resize) before passing it")
    if frame.dtype.kind == "f":
        if not np.isfinite(frame).all():
            raise ValueError("frame contains NaN or infinite values: drop the frame, or repair it first "
                             "(e.g. np.nan_to_num(frame, nan=0.0, posinf=1.0, neginf=0.0))")
        lo, hi = float(frame.min()), float(frame.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"float frame values span [{lo:.3g}, {hi:.3g}]; float frames must lie in [0, 1]: "
                             "divide 0..255 data by 255, or pass uint8")
        frame = np.round(frame * 255.0).astype(np.uint8)
    elif frame.dtype == np.uint16:
        frame = (frame // 257).astype(np.uint8)
    elif frame.dtype.kind == "b":
        frame = frame.astype(np.uint8) * np.uint8(255)
    elif frame.dtype != np.uint8:
        lo, hi = int(frame.min()), int(frame.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"{frame.dtype} frame values span [{lo}, {hi}]; expected 0..255: scale the data to "
                             "0..255 and pass uint8 (uint16 frames are scaled automatically)")
        frame = frame.astype(np.uint8)
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    elif frame.shape[2] == 4:
        frame = frame[:, :, :3]
    return np.ascontiguousarray(frame)


def resize_to(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``frame`` (RGB ``uint8``) resized to ``size`` = (height, width): area interpolation when
    shrinking, bilinear when enlarging.

    >>> resize_to(np.zeros((480, 640, 3), np.uint8), (240, 320)).shape
    (240, 320, 3)
    """
    import cv2

    h, w = int(size[0]), int(size[1])
    if frame.shape[:2] == (h, w):
        return frame
    shrink = frame.shape[0] * frame.shape[1] > h * w
    out = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.ascontiguousarray(out)


class StreamFrameSize:
    """The frame-size rule of one stream: the first accepted frame's (height, width) is the stream's
    ``size``; a frame of another size is resized to it (:func:`resize_to`) and heatmaps keep that size.
    The first such frame raises one :class:`FrameSizeWarning` per stream.

    >>> rule = StreamFrameSize()
    >>> frame = rule.fit(np.zeros((48, 64, 3), np.uint8))   # no size yet: as it is
    >>> rule.accept(frame.shape), rule.size                 # kept once the frame was accepted
    (None, (48, 64))
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     rule.fit(np.zeros((96, 128, 3), np.uint8)).shape, rule.fit(np.zeros((96, 128, 3), np.uint8)).shape
    ((48, 64, 3), (48, 64, 3))
    >>> [w.category.__name__ for w in caught]                  # warned once
    ['FrameSizeWarning']
    """

    def __init__(self, size: tuple[int, int] | None = None) -> None:
        self.size: tuple[int, int] | None = None if size is None else (int(size[0]), int(size[1]))
        self.warned = False

    def fit(self, frame: np.ndarray, stacklevel: int = 2) -> np.ndarray:
        """``frame`` (RGB ``uint8``) at the stream's size (as it is while the stream has none);
        ``stacklevel`` as :func:`warnings.warn` counts it from the caller of this method."""
        size = (int(frame.shape[0]), int(frame.shape[1]))
        if self.size is None or size == self.size:
            return frame
        if not self.warned:
            import warnings

            self.warned = True
            h, w = self.size
            warnings.warn(f"frame size {size[0]}x{size[1]} differs from the stream's first frame ({h}x{w}): frames "
                          f"of another size are resized to {h}x{w} and heatmaps stay {h}x{w} (warned once per "
                          "detector; use one detector per camera and resolution)", FrameSizeWarning,
                          stacklevel=stacklevel + 1)
        return resize_to(frame, self.size)

    def accept(self, shape: tuple[int, ...]) -> None:
        """A frame of ``shape`` (height, width, ...) was accepted: the stream's size, if it has none yet."""
        if self.size is None:
            self.size = (int(shape[0]), int(shape[1]))


def as_rgb_images(images: Any, what: str = "images") -> list[np.ndarray]:
    """Validate a batch of images (a list, tuple or (N, H, W[, C]) array) with :func:`as_rgb_uint8`;
    an error names the image by position.

    >>> [im.shape for im in as_rgb_images([np.zeros((8, 8)), np.ones((9, 9, 4), np.uint8)])]
    [(8, 8, 3), (9, 9, 3)]
    >>> as_rgb_images([np.zeros((8, 8)), None])
    Traceback (most recent call last):
    ...
    ValueError: images[1]: frame is None: pass an RGB uint8 array of shape (height, width, 3)
    >>> as_rgb_images(np.zeros((32, 32, 3), np.uint8))
    Traceback (most recent call last):
    ...
    ValueError: images is one (height, width, 3) image, not a batch: pass [image] (or an (N, height, width, 3) array)
    """
    if images is None or isinstance(images, (str, bytes)):
        raise ValueError(f"{what} must be a list of images (RGB uint8 arrays), got {type(images).__name__}")
    if isinstance(images, np.ndarray):
        if images.ndim == 3 and images.shape[2] in (3, 4):
            raise ValueError(f"{what} is one (height, width, {images.shape[2]}) image, not a batch: pass [image] "
                             f"(or an (N, height, width, {images.shape[2]}) array)")
        if images.ndim not in (3, 4):
            raise ValueError(f"{what} array has shape {images.shape}: expected (N, height, width, 3) or a list of "
                             "images")
    try:
        items = list(images)
    except TypeError:
        raise ValueError(f"{what} must be a list of images (RGB uint8 arrays), got {type(images).__name__}") from None
    out = []
    for i, image in enumerate(items):
        try:
            out.append(as_rgb_uint8(image))
        except ValueError as exc:
            raise ValueError(f"{what}[{i}]: {exc}") from None
    return out
