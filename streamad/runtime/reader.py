"""Reading and describing frames one ahead of the scorer, on a thread of its own.

A live frame is two halves: its features (the backbone, torch, which leaves the interpreter lock) and the
rest (search, heatmap, decisions: the detector's state). The features depend on the frame alone, so while
the live loop scores frame t, a :class:`FrameReader` reads frame t + 1 from the source and describes it
(``describe``, :class:`~streamad.runtime.detector.DescribingScorer`). On two cores the backbone and the
search then run side by side instead of one after the other.

Who owns what: the reader's thread (``streamad-reader``) owns the source's reads and the calls to
``describe``, one at a time, in the source's order; the loop's thread owns everything else and takes the
reader's items with :meth:`FrameReader.next`, in order. The reader reads a frame only once the loop took
the one before, so one frame is in flight at a time and nothing is read that the loop will not see. It
reads just in time: when the loop's own time a frame (from taking an item to asking for the next, the
median of the last few) is longer than reading and describing one, the reader waits out the difference
before it reads, so a live camera's frame is taken as late as the loop allows (a scorer slower than the
backbone, as with every frame admitted, would otherwise leave each frame a whole scoring old). It stops reading when ``stop`` is set, when
``max_frames`` frames were read, or when the source ends, and then hands a :class:`ReadEnd` with the
reason; what it read before still comes first (a stop finishes the frames in flight, it drops none).
:meth:`FrameReader.close` (the loop's thread, any time) ends the thread and joins it; safe to call twice.

    >>> import numpy as np
    >>> from streamad.adapters.sources import ArraySource
    >>> frames = [np.full((8, 8, 3), v, np.uint8) for v in (10, 20, 30)]
    >>> with FrameReader(ArraySource(frames), describe=lambda image, t: int(image[0, 0, 0])) as reader:
    ...     items = [reader.next(timeout=5.0) for _ in range(4)]
    >>> [i.described for i in items[:3]], items[3]
    ([10, 20, 30], ReadEnd(reason='end', error=None))
"""

from __future__ import annotations

import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamad.adapters.sources import Frame, Source


#: frames over which the reader takes the medians of its just-in-time wait
JUST_IN_TIME_FRAMES = 9


@dataclass(frozen=True, eq=False)
class ReadItem:
    """A frame the reader read: ``described`` is what ``describe`` returned for it, or None with ``error``
    (a ``ValueError``: the frame is bad, the loop skips and counts it; anything else: the loop raises it);
    ``read_s`` the wait for the source, ``describe_s`` the time ``describe`` took."""

    frame: Frame
    described: Any
    error: Exception | None
    read_s: float
    describe_s: float


@dataclass(frozen=True)
class ReadEnd:
    """The reader read its last frame: ``reason`` is ``"end"`` (the source ended), ``"max_frames"``, the stop
    flag's reason, or ``"failed"`` with the ``error`` the source's ``read`` raised (the loop raises it)."""

    reason: str
    error: BaseException | None = None


class FrameReader:
    """Reads ``source`` and calls ``describe(image, timestamp)`` on each frame on a thread of its own, one frame
    ahead of the caller (see the module's docstring). ``stop`` is anything whose truth asks it to stop (a
    :class:`~streamad.runtime.live.StopFlag`, with its ``reason``); ``max_frames`` caps the frames read;
    ``poll`` is the longest a read waits before the reader looks at ``stop`` again."""

    def __init__(self, source: Source, describe: Callable[[Any, float | None], Any], *, stop: Any = None,
                 max_frames: int | None = None, poll: float = 0.25) -> None:
        if max_frames is not None and max_frames < 0:
            raise ValueError(f"FrameReader.max_frames must be >= 0 or None, got {max_frames!r}")
        if not poll > 0:
            raise ValueError(f"FrameReader.poll must be > 0 seconds, got {poll!r}")
        self.source, self.describe, self.stop_flag = source, describe, stop
        self.max_frames, self.poll = max_frames, float(poll)
        self.read_count = 0  # frames read (reader thread writes; read it after close)
        self._items: queue.SimpleQueue[ReadItem | ReadEnd] = queue.SimpleQueue()
        self._slot = threading.Semaphore(1)  # the reader reads only when the loop took the frame before
        self._closing = threading.Event()
        self._reason: str | None = None  # a stop asked by the loop (finish_reading)
        # just in time: the loop's own time a frame (take -> next call) against the reader's (read + describe);
        # the loop's thread appends to _busy, the reader's to _own; deques: appends and copies are atomic
        self._busy: deque[float] = deque(maxlen=JUST_IN_TIME_FRAMES)
        self._own: deque[float] = deque(maxlen=JUST_IN_TIME_FRAMES)
        self._taken_at: float | None = None
        self._thread = threading.Thread(target=self._run, name="streamad-reader", daemon=True)

    def start(self) -> FrameReader:
        self._thread.start()
        return self

    def __enter__(self) -> FrameReader:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def next(self, timeout: float | None = None) -> ReadItem | ReadEnd | None:
        """The next item in the source's order (the reader then reads the frame after it), or None when
        nothing came within ``timeout`` seconds. After a :class:`ReadEnd` nothing more comes."""
        if self._taken_at is not None:  # the loop's own time on the item it took last
            self._busy.append(time.perf_counter() - self._taken_at)
            self._taken_at = None
        try:
            item = self._items.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, ReadItem):
            self._taken_at = time.perf_counter()
            self._slot.release()
        return item

    def lead(self) -> float:
        """Seconds the reader waits before its next read: the loop's median time a frame less the reader's
        median read and describe, less a margin (a tenth, and 2 ms); 0 until each has three frames."""
        busy, own = list(self._busy), list(self._own)
        if len(busy) < 3 or len(own) < 3:
            return 0.0
        return max(0.0, 0.9 * statistics.median(busy) - statistics.median(own) - 0.002)

    def finish_reading(self, reason: str) -> None:
        """Read no more frames: the frames read already come first, then ``ReadEnd(reason)``."""
        if self._reason is None:
            self._reason = reason
        self._slot.release()  # a reader waiting for its slot looks at the reason now

    def close(self, timeout: float = 10.0) -> bool:
        """End the reader's thread (a read or ``describe`` in progress finishes first) and join it; whether it
        ended within ``timeout`` seconds. Items not taken are dropped: call it once the loop is done."""
        self._closing.set()
        self._slot.release()
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the reader's thread ------------------------------------------------------------------------------
    def _why_stop(self) -> str | None:
        if self._reason is not None:
            return self._reason
        if self.stop_flag:
            return getattr(self.stop_flag, "reason", None) or "stop requested"
        if self.max_frames is not None and self.read_count >= self.max_frames:
            return "max_frames"
        return None

    def _run(self) -> None:
        try:
            while True:
                while not self._slot.acquire(timeout=self.poll):  # the loop still holds the frame before
                    if self._closing.is_set():
                        return
                    if self.stop_flag:
                        break  # a stop: say so now, the frame in flight comes first anyway
                if self._closing.is_set():
                    return
                wait_until = time.perf_counter() + self.lead()
                while (left := wait_until - time.perf_counter()) > 0 and self._why_stop() is None:
                    if self._closing.wait(min(left, self.poll)):
                        return
                why = self._why_stop()
                if why is not None:
                    self._items.put(ReadEnd(why))
                    return
                t0 = time.perf_counter()
                frame = self.source.read(timeout=self.poll)
                if frame is None:
                    self._slot.release()  # nothing read: the slot stays ours
                    if self.source.ended:
                        self._items.put(ReadEnd("end"))
                        return
                    continue
                self.read_count += 1
                t1 = time.perf_counter()
                try:
                    described, error = self.describe(frame.image, frame.timestamp), None
                except Exception as exc:  # noqa: BLE001 - handed to the loop, which counts or raises it
                    described, error = None, exc
                t2 = time.perf_counter()
                self._own.append(t2 - t0)
                self._items.put(ReadItem(frame, described, error, t1 - t0, t2 - t1))
        except BaseException as exc:  # noqa: BLE001 - the source's read failed: the loop raises it
            self._items.put(ReadEnd("failed", exc))
