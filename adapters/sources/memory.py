"""Frames held in memory: :class:`ArraySource` yields a list of images as a source, then ends.

For measuring without disk or decoding (``streamad bench``), for tests, and for a caller that already has
its images: ``run_watch(ArraySource(images), detector)``.

    >>> import numpy as np
    >>> source = ArraySource([np.zeros((4, 4, 3), np.uint8)] * 2, fps=10.0)
    >>> [(f.index, f.timestamp) for f in source], source.ended, source.stats.frames
    ([(0, 0.0), (1, 0.1)], True, 2)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from streamad.adapters.sources.base import EventCallback, Frame, Source


class ArraySource(Source):
    """``images`` as frames, in order, then the end. Images are handed on as given (the detector refuses
    those it cannot use). Timestamps are ``index / fps`` with ``fps``, else the wall-clock time of the read;
    ``on_read(index)``, if given, is called as each frame is handed out (a benchmark's clock)."""

    def __init__(self, images: Sequence[Any], *, name: str = "memory", fps: float | None = None,
                 on_event: EventCallback | None = None,
                 on_read: Callable[[int], None] | None = None) -> None:
        if fps is not None and not fps > 0:
            raise ValueError(f"ArraySource.fps must be > 0 or None, got {fps!r}")
        super().__init__(name, on_event)
        self.images, self.fps, self.on_read = list(images), fps, on_read
        self._next = 0

    def __len__(self) -> int:
        return len(self.images)

    def read(self, timeout: float | None = None) -> Frame | None:
        if self._ended or self._next >= len(self.images):
            self._ended = True
            return None
        i = self._next
        self._next += 1
        self._count("frames")
        if self.on_read is not None:
            self.on_read(i)
        return Frame(self.images[i], i / self.fps if self.fps else time.time(), i, self.name)
