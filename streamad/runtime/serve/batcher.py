"""One backbone for every camera: where a batch pays, frames of all cameras go through it in batches.

Each camera's detector gets a :class:`BatchedExtractor` as its extractor: calling it hands the frame
to the :class:`SharedBackbone` thread and waits for the descriptors. The thread takes the first frame
waiting, then waits at most ``max_wait`` seconds for the other cameras' frames (it stops waiting as
soon as every camera that is running has one in), and runs each extractor once on all the frames
waiting for it. So a batch forms from what is ready, and a slow camera never holds the others back
longer than ``max_wait``. A camera only ever has one frame in flight (its loop waits for the answer),
so a batch holds at most one frame per camera: the newest each one read.

Batching does not change a result: the extractors compute each frame's descriptors independently of
the others in the batch (the backbone in eval mode; ``tests/test_serve.py`` checks the scores).

With a single camera there is nothing to batch with: the extractor is called on the camera's own
thread (``streamad watch``), with no hand-over. Nor where a batch does not pay: ``max_wait=None`` (serve's
choice on the CPU, where a batch costs the sum of its frames) runs every camera's frames on that camera's
own thread, side by side, as separate ``streamad watch`` processes would; the one batching thread would
instead be one runnable thread for all the cameras' backbone work, a single share of the cores
(docs/DESIGN.md, section 4). The backbone is read-only in eval mode, so cameras may call it at once.
Every call counts in ``batches`` and ``sizes``, on either path.

    >>> import numpy as np
    >>> class Means:                       # any extractor: frames -> (N, P, d), with grid and image_size
    ...     grid, image_size = (1, 1), (8, 8)
    ...     def __call__(self, frames):
    ...         return np.stack([f.reshape(1, -1, 3).mean(axis=1) for f in frames]).astype(np.float32)
    >>> with SharedBackbone(max_wait=0.005) as backbone:
    ...     a, b = backbone.client(Means()), backbone.client(Means())
    ...     a([np.full((8, 8, 3), 10, np.uint8)]).tolist(), a.grid
    ([[[10.0, 10.0, 10.0]]], (1, 1))
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from streamad.stream.detector import Extractor

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class _Request:
    extractor: Extractor
    frames: Sequence[np.ndarray]
    future: Future


class SharedBackbone:
    """The batching thread (see the module docstring). ``client(extractor)`` gives a camera's handle;
    ``batches`` counts the extractor calls, ``sizes`` how many batches had each size (frames).
    ``stop()`` (or the ``with`` block's end) lets the running batch finish, fails the waiting requests
    with a ``RuntimeError`` and joins the thread."""

    def __init__(self, max_wait: float | None = 0.005, name: str = "streamad-backbone") -> None:
        self._lock = threading.Lock()
        self.max_wait = max_wait
        self.batches = 0
        self.sizes: Counter[int] = Counter()
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._clients: list[BatchedExtractor] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def max_wait(self) -> float | None:
        """Seconds a batch waits for the other cameras' frames; None: no batches, each camera's frames run
        on its own thread (set it before the cameras start)."""
        return self._max_wait

    @max_wait.setter
    def max_wait(self, seconds: float | None) -> None:
        if seconds is not None and not (isinstance(seconds, (int, float)) and 0 <= seconds <= 1):
            raise ValueError(f"SharedBackbone.max_wait must be None (no batches) or in [0, 1] seconds, "
                             f"got {seconds!r}")
        self._max_wait = None if seconds is None else float(seconds)

    @property
    def batching(self) -> bool:
        """Whether frames of several cameras go through the batching thread (else each camera's own)."""
        return self._max_wait is not None

    # -- cameras ---------------------------------------------------------------------------------
    def client(self, extractor: Extractor) -> BatchedExtractor:
        """A camera's extractor that runs ``extractor`` through this thread, batched with the others."""
        handle = BatchedExtractor(self, extractor)
        with self._lock:
            self._clients.append(handle)
        return handle

    def leave(self, handle: BatchedExtractor) -> None:
        """The camera of ``handle`` stopped: batches no longer wait for it."""
        with self._lock:
            handle.active = False

    @property
    def active(self) -> int:
        """Cameras whose frames a batch may wait for."""
        with self._lock:
            return sum(1 for c in self._clients if c.active)

    def submit(self, extractor: Extractor, frames: Sequence[np.ndarray]) -> Future:
        """Queue ``frames`` for ``extractor``; the future holds its (N, P, d) descriptors."""
        future: Future = Future()
        if self._stopped.is_set():
            future.set_exception(RuntimeError("the shared backbone has stopped"))
            return future
        self._queue.put(_Request(extractor, frames, future))
        return future

    def count_call(self, frames: int) -> None:
        """Count one backbone call of ``frames`` frames (the batching thread's or a camera's own)."""
        with self._lock:
            self.batches += 1
            self.sizes[frames] += 1

    def mean_batch(self) -> float:
        """Frames per backbone call, on average (0 before the first)."""
        n = sum(self.sizes.values())
        return sum(size * k for size, k in self.sizes.items()) / n if n else 0.0

    # -- the thread ------------------------------------------------------------------------------
    def _collect(self, first: _Request) -> list[_Request]:
        batch = [first]
        deadline = time.monotonic() + (self.max_wait or 0.0)
        while len(batch) < max(1, self.active):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                item = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if item is None:  # stop: finish this batch, then end
                self._queue.put(None)
                break
            batch.append(item)
        return batch

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                break
            self._serve(self._collect(first))
        while True:  # stopped: fail what is still waiting, so no camera waits forever
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item.future.set_exception(RuntimeError("the shared backbone has stopped"))

    def _serve(self, batch: list[_Request]) -> None:
        groups: dict[int, list[_Request]] = {}
        for req in batch:
            groups.setdefault(id(req.extractor), []).append(req)
        for reqs in groups.values():
            frames = [f for req in reqs for f in req.frames]
            try:
                out = np.asarray(reqs[0].extractor(frames))
                if len(out) != len(frames):
                    raise ValueError(f"the extractor gave {len(out)} results for {len(frames)} frames")
            except BaseException as exc:  # noqa: BLE001 - the cameras' threads raise it, this one goes on
                for req in reqs:
                    req.future.set_exception(exc)
                continue
            self.count_call(len(frames))
            start = 0
            for req in reqs:
                req.future.set_result(out[start:start + len(req.frames)])
                start += len(req.frames)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Finish the running batch, fail the waiting requests, join the thread. Safe to call twice."""
        self._stopped.set()
        self._queue.put(None)
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> SharedBackbone:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BatchedExtractor:
    """A camera's extractor: ``extractor``'s attributes (``grid``, ``image_size``, ``dim``, ...), but
    calls go through the :class:`SharedBackbone` (directly on the caller's thread while it is the only
    camera, or when the backbone does not batch)."""

    def __init__(self, backbone: SharedBackbone, extractor: Extractor) -> None:
        self.backbone, self.extractor = backbone, extractor
        self.active = True

    def __getattr__(self, name: str) -> Any:
        if name in ("backbone", "extractor", "active"):
            raise AttributeError(name)
        return getattr(self.extractor, name)

    def __call__(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        backbone = self.backbone
        if not backbone.batching or backbone.active <= 1 or not backbone.running:
            out = np.asarray(self.extractor(frames))
            backbone.count_call(len(frames))
            return out
        return self.backbone.submit(self.extractor, list(frames)).result()
