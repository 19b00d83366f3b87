"""Sources that end: the images of a folder (natural name order) and a video file."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from streamad.adapters.sources.base import (
    IMAGE_EXTENSIONS,
    SPEC_HINT,
    Capture,
    CaptureFactory,
    EventCallback,
    Frame,
    Source,
    SourceError,
    SourceEvent,
    default_capture,
    to_rgb,
)


def _natural_key(path: Path) -> list[Any]:
    """Sort key that puts ``frame2.png`` before ``frame10.png``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _decode_file(path: Path) -> tuple[np.ndarray | None, str]:
    """(BGR image, "") or (None, why). The bytes are decoded in memory: unlike ``cv2.imread``, which
    returns the decoded part of a truncated JPEG (the rest grey), ``cv2.imdecode`` refuses it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read it: {exc.strerror or exc}"
    if not data:
        return None, "empty file, 0 bytes"
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        return None, "corrupt, truncated or wrong format"
    return image, ""


class FolderSource(Source):
    """The images of one folder (not its subfolders), in natural name order.

    png, jpg/jpeg, bmp and tif/tiff are read (extensions in any case); grayscale and 16-bit images
    become RGB ``uint8``. A file OpenCV cannot decode (corrupt, truncated, empty, not an image, deleted
    since the folder was listed) is skipped, counted in ``stats.skipped`` and reported; it never stops
    the stream.
    """

    def __init__(self, folder: str | os.PathLike[str], *, on_event: EventCallback | None = None) -> None:
        root = Path(folder)
        if not root.is_dir():
            raise SourceError(f"image folder {str(folder)!r} does not exist or is not a folder. {SPEC_HINT}")
        super().__init__(f"folder:{root}", on_event)
        self.paths = sorted((p for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
                            key=_natural_key)
        if not self.paths:
            raise SourceError(f"folder {str(root)!r} holds no images (looked for {', '.join(IMAGE_EXTENSIONS)})")
        self._next = 0

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, timeout: float | None = None) -> Frame | None:
        while not self._ended and self._next < len(self.paths):
            i, path = self._next, self.paths[self._next]
            self._next += 1
            image, why = _decode_file(path)
            if image is None:
                self._count("skipped")
                self._report(SourceEvent("skipped", self.name, f"{self.name}: skipped {path.name}: "
                                         f"not a readable image ({why})"))
                continue
            self._count("frames")
            return Frame(to_rgb(image), time.time(), i, self.name)
        self._ended = True
        return None


class VideoFileSource(Source):
    """A video file decoded by OpenCV (whatever its FFmpeg reads: mp4, avi, mkv, ...); ends at the
    last frame. ``capture_factory`` replaces ``cv2.VideoCapture`` (tests)."""

    def __init__(self, path: str | os.PathLike[str], *, capture_factory: CaptureFactory | None = None,
                 on_event: EventCallback | None = None) -> None:
        super().__init__(f"video:{path}", on_event)
        self._cap: Capture | None = (capture_factory or default_capture)(str(path))
        if not self._cap.isOpened():
            self._cap.release()
            self._cap = None
            raise SourceError(f"cannot open video {str(path)!r}: OpenCV could not decode it "
                              "(is it a video file, and complete?)")
        get = getattr(self._cap, "get", None)
        fps = float(get(cv2.CAP_PROP_FPS)) if get else 0.0
        self.fps = fps if np.isfinite(fps) and fps > 0 else 0.0
        self._index = 0

    def read(self, timeout: float | None = None) -> Frame | None:
        if self._ended or self._cap is None:
            self._ended = True
            return None
        ok, image = self._cap.read()
        if not ok or image is None:
            self.close()
            return None
        i = self._index
        self._index += 1
        self._count("frames")
        ts = i / self.fps if self.fps else time.time()
        return Frame(to_rgb(image), ts, i, self.name)

    def close(self) -> None:
        self._ended = True
        if self._cap is not None:
            self._cap.release()
            self._cap = None
