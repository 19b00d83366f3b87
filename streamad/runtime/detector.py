"""The contract of a live detector: what the live loop, the state saver, ``watch``, ``serve`` and the CLI
use of one, and nothing else. Two classes have it: :class:`streamad.StreamDetector` and serve's
worker-mode :class:`~streamad.runtime.serve.workers.RemoteDetector` (the detector in a worker process).
``ImageAnomalyDetector`` (batch ``fit`` / ``predict``) is no live detector and does not have it.

:func:`~streamad.runtime.live.run_watch` needs less, a :class:`FrameScorer` (``process`` only), so any
stand-in runs in the loop; a ``watch`` or ``serve`` run needs the whole :class:`Detector`. A scorer that
is also a :class:`DescribingScorer` (``process`` split into ``describe``, the backbone, and
``process_described``, the rest) lets the loop describe the next frame on its reader thread while it
scores the current one (:mod:`streamad.runtime.reader`); ``StreamDetector`` and serve's ``RemoteDetector``
(the backbone in serve's process, the rest in its worker) are.

    >>> from streamad.stream.detector import StreamDetector
    >>> from streamad.testing.standin import BlockMeans
    >>> isinstance(StreamDetector(extractor=BlockMeans()), Detector)
    True
    >>> class OnlyScores:
    ...     def process(self, frame, timestamp=None): ...
    >>> isinstance(OnlyScores(), FrameScorer), isinstance(OnlyScores(), Detector)
    (True, False)
    >>> isinstance(StreamDetector(extractor=BlockMeans()), DescribingScorer), isinstance(OnlyScores(), DescribingScorer)
    (True, False)
"""

from __future__ import annotations

import os
from typing import Any, Protocol, runtime_checkable

import numpy as np

from streamad.results import FrameResult


@runtime_checkable
class FrameScorer(Protocol):
    """What the live loop needs: score one frame (RGB ``uint8``), taken at ``timestamp``; a frame it
    cannot use raises ``ValueError`` (the loop skips and counts it)."""

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> FrameResult: ...


@runtime_checkable
class DescribingScorer(FrameScorer, Protocol):
    """A scorer whose ``process(frame, timestamp)`` is ``process_described(describe(frame, timestamp))``:
    ``describe`` depends on the frame alone (it may run on another thread while ``process_described``
    scores the frame before; its calls come one at a time, in order) and raises ``ValueError`` for a
    frame it cannot use."""

    def describe(self, frame: np.ndarray, timestamp: float | None = None) -> Any: ...

    def process_described(self, described: Any) -> FrameResult: ...


@runtime_checkable
class Detector(FrameScorer, Protocol):
    """A live detector, as ``watch``, ``serve`` and the state saver use it.

    - ``process(frame, timestamp)``: the frame's :class:`~streamad.results.FrameResult`;
    - ``save(directory)``: its whole state, atomically (:mod:`streamad.stream.persistence`);
    - ``close()``: stop its background learner (after the final save);
    - ``nominal_count``: nominal patches now (the status messages and the page show it);
    - ``frame_size``: the stream's (height, width), None before the first frame;
    - ``extractor``: where its descriptors come from (serve's shared backbone hands each camera one);
    - ``learner_stats()``: the background learner's counters (empty without one; ``watch --stats``).
    """

    @property
    def nominal_count(self) -> int: ...

    @property
    def frame_size(self) -> tuple[int, int] | None: ...

    @property
    def extractor(self) -> Any: ...

    def save(self, directory: str | os.PathLike[str]) -> object: ...

    def close(self) -> None: ...

    def learner_stats(self) -> dict[str, Any]: ...
