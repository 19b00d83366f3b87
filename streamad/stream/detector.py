"""The streaming detector: score every frame, learn "normal" from the stream itself (docs/DESIGN.md section 3).

``process(frame)`` scores the frame against the current nominal patches **first**, then, when the
admission policy says so, admits it to the sliding window (a frame never vouches for itself).
Until the window has formed channels and the nominal set is non-empty, results say ``ready=False``
and carry no score. The alarm threshold learns from the scores once the window is full: while it
fills, the nominal set is still growing and scores fall with it, so they would inflate the
threshold; until then (and until enough trusted scores are in, :mod:`streamad.stream.decisions`)
``threshold`` is None. With the default ``trusted`` rule only frames whose highest-scoring patches the
channels kept as nominal at their admission calibrate the threshold (docs/alarms.md).

    >>> import numpy as np
    >>> class Toy:                        # any extractor: frames -> (N, P, d) float32, .grid, .image_size
    ...     grid, image_size = (2, 2), (32, 32)
    ...     def __call__(self, frames):
    ...         quads = [f.reshape(2, f.shape[0] // 2, 2, f.shape[1] // 2, 3).mean(axis=(1, 3, 4)) for f in frames]
    ...         return (np.stack(quads).reshape(len(frames), 4, 1) / 255.0).astype(np.float32)
    >>> cfg = StreamConfig(window=8, channels=ChannelConfig(seeds=1, min_span=2))
    >>> det = StreamDetector(cfg, extractor=Toy())
    >>> frame = np.full((40, 40, 3), 100, np.uint8)
    >>> [det.process(frame).ready for _ in range(4)]     # 3 admitted: channels of 3 > min_span
    [False, False, False, True]
    >>> r = det.process(frame); r.score, r.heatmap.shape
    (0.0, (40, 40))

``save(dir)`` writes the whole engine state (window, channels, nominal index, threshold and drift
state, counters) and ``StreamDetector.load(dir, extractor)`` resumes it exactly (docs/persistence.md):

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = det.save(f"{tmp}/state")
    ...     back = StreamDetector.load(f"{tmp}/state", extractor=Toy())
    >>> back.frames_seen, back.process(frame).score == det.process(frame).score
    (5, True)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time
import warnings
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from streamad.config import ChannelConfig, StreamConfig
from streamad.stream.decisions import AutoDecisions, decisions_from_state, kept_top, make_decisions
from streamad.vision.frames import StreamFrameSize, as_rgb_uint8
from streamad.vision.heatmap import frame_scores, heatmap_from_patch_scores
from streamad.core.incremental import IncrementalChannels
from streamad.index import BaseIndex, check_index_state, index_from_state, index_state_labels, make_index
from streamad.results import FrameResult
from streamad.stream.learner import Learner
from streamad.stream.memory import LongTermMemory
from streamad.errors import StateError
from streamad.state_schema import StatePart
from streamad.stream.persistence import read_state, write_state

__all__ = ["ChannelConfig", "Extractor", "StreamConfig", "StreamDetector"]


class Extractor(Protocol):
    """What the detector needs from a feature extractor."""

    grid: tuple[int, int]
    image_size: tuple[int, int]
    # Optional ``center_crop: float`` (default 1.0): the centred share of the frame the grid covers.

    def __call__(self, frames: list[np.ndarray]) -> np.ndarray:
        """RGB uint8 frames to (N, P, d) float32 descriptors, P = grid[0] * grid[1]."""
        ...


def _physical_memory() -> int | None:
    """This machine's memory in bytes (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


@functools.cache
def _warm_compiled() -> None:
    """Load the engine's compiled kernels (association, trimming, the IVF's scan and layout, the memory's cover) once
    per process, when the first detector is made, so that no frame waits for it (numba reads its cache on a
    process's first call: 0.3 s in all; a machine's very first run compiles them, 19.1 s)."""
    from streamad.core.mutual_kernel import warm as warm_association
    from streamad.core.trim_kernel import warm as warm_trimming
    from streamad.index.ivf import warm as warm_index
    from streamad.stream.memory import warm as warm_memory

    warm_association()
    warm_trimming()
    warm_index()
    warm_memory()


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


def extract_descriptors(extractor: Any, size: StreamFrameSize, frame: np.ndarray,
                        check: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
    """A frame through the backbone as a stream takes it: (the frame as RGB ``uint8`` fitted to the stream's
    ``size``, its (P, d) descriptors as ``check`` returns them, the extractor's milliseconds). The stream's
    size is fixed by the first frame whose descriptors ``check`` accepts (a ``ValueError`` from it fixes
    nothing). ``StreamDetector`` and serve's worker-mode ``RemoteDetector`` both describe frames so."""
    original = as_rgb_uint8(frame)
    frame = size.fit(original, stacklevel=4)  # the warning points at the caller of process / describe
    t0 = time.perf_counter()
    out = np.asarray(extractor([frame]))
    t_feat = _ms(t0)
    desc = check(out[0] if out.ndim == 3 and len(out) == 1 else out)
    size.accept(original.shape)
    return frame, desc, t_feat


def _timestamp(value: object) -> float:
    """A caller's timestamp as float seconds; a clear error for anything not a finite number."""
    try:
        t = float(value)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - TypeError, ValueError, OverflowError (10 ** 400), an odd __float__
        t = float("nan")
    if not np.isfinite(t):
        raise ValueError(f"timestamp must be a finite number of seconds, got {value!r}: pass the frame's capture "
                         "time (e.g. time.time()) or None for now")
    return t


@dataclasses.dataclass(frozen=True, eq=False)
class DescribedFrame:
    """A frame's checked (P, d) float32 ``descriptors``, its (h, w) ``frame_shape`` (the heatmap's size),
    its ``timestamp`` (seconds, None for now) and the backbone's ``features_ms``: what
    :meth:`StreamDetector.describe` hands to :meth:`StreamDetector.process_described`."""

    descriptors: np.ndarray
    frame_shape: tuple[int, int]
    timestamp: float | None
    features_ms: float


class StreamDetector:
    """Incremental InReaCh on a stream of frames, river style.

    - ``process(frame)``: score, then admit if due; returns a :class:`~streamad.results.FrameResult`;
      it is ``process_described(describe(frame))``: the backbone, then the rest (the live loop runs the
      next frame's ``describe`` on a thread of its own while the current one is scored);
    - ``score_one(frame)``: score only, changes nothing (the threshold is the current one, no drift check);
    - ``learn_one(frame)``: admit the frame now, whatever the admission policy;
    - ``process_descriptors`` / ``score_descriptors`` / ``learn_descriptors``: the same on (P, d) descriptors.

    ``extractor`` defaults to :class:`~streamad.vision.features.PatchFeatureExtractor` on ``config.features``.

    ``on_kept`` (None by default), if set to a callable, is called at every admission with the admitted
    frame's index (its ``FrameResult.index``; None for ``learn_one``) and a (P,) bool mask of the patches
    the channels kept as nominal at that admission: the channels' verdict on the frame, for measurement
    (``streamad.bench.trust_share``). It runs where the admission runs (the background learner's thread
    by default) and must not change the detector.
    """

    def __init__(self, config: StreamConfig | None = None, extractor: Extractor | None = None) -> None:
        self.config = config or StreamConfig()
        if not isinstance(self.config, StreamConfig):
            raise ValueError(f"config must be a StreamConfig, got {type(self.config).__name__}")
        _warm_compiled()
        if extractor is None:
            from streamad.vision.features import PatchFeatureExtractor

            extractor = PatchFeatureExtractor(self.config.features)
        self.extractor = extractor
        self.grid: tuple[int, int] = tuple(int(v) for v in extractor.grid)  # type: ignore[assignment]
        self.n_patches = self.grid[0] * self.grid[1]
        self._check_memory(self.config, self.n_patches, self._descriptor_dim(extractor))
        self.channels = IncrementalChannels(self.config.window, self.config.channels)
        self.decisions = make_decisions(self.config.decisions, seed=self.config.seed)
        # Trust of admitted frames (decisions rule "trusted"): the admission (learner thread in background
        # mode) appends (frame id, kept-patch mask) to _trust_notes (a deque: thread-safe appends and pops);
        # the scorer pairs them with the scores it left in _pending_trust (scorer thread only).
        self._trust_notes: deque[tuple[int, np.ndarray]] = deque(maxlen=1024)
        self._pending_trust: dict[int, tuple[int, float, float, np.ndarray]] = {}
        self.index: BaseIndex | None = None  # replaced whole, never half-built, by the learner
        self.frames_seen = 0  # frames scored by process / score_one
        self._next_frame_id = 0  # admission ids (labels in the index are id * P + patch)
        self.on_kept: Callable[[int | None, np.ndarray], None] | None = None  # see the class docstring
        self._since_admission: int | None = None  # frames processed since the last admission
        self._last_admission_time: float | None = None
        self._size = StreamFrameSize()  # the first frame's (h, w) (``frame_size``); later frames are resized to it
        self._window_full = False  # written by whoever admits; read by the scorer
        self._learner: Learner | None = None  # background learning: started by the first due frame
        self.learner_timings: dict[str, float] = {}  # the last background admission's stage timings (ms)
        self._learner_stage_ms: dict[str, float] = {}  # summed over background admissions
        self.learner_error: BaseException | None = None
        self.memory: LongTermMemory | None = None  # the long-term memory (config.memory), built at first eviction

    # ------------------------------------------------------------------ memory
    @staticmethod
    def window_bytes(window: int, n_patches: int, dim: int, seeds: int) -> int:
        """Bytes a full window of ``window`` frames holds: descriptors, mutual pairs with each seed, channel
        bookkeeping, and the nominal index's copy of the patches (all of them, at worst)."""
        per_patch = (dim * 4 + seeds * (8 + 8 + 4) + 8 + 8 + 1 + 1) + (dim * 4 + 4 + 8 + 8)
        return int(window) * int(n_patches) * per_patch

    def _descriptor_dim(self, extractor: Any) -> int | None:
        dim = getattr(extractor, "dim", None)
        return int(dim) if isinstance(dim, (int, np.integer)) else None

    @classmethod
    def _check_memory(cls, config: StreamConfig, n_patches: int, dim: int | None) -> None:
        """Refuse a window that could never fit in this machine's memory, naming what it would need.

        The window's arrays grow with the frames it holds (a window larger than a stream costs only what
        the stream fills); a live stream eventually fills any window, so a full window must fit."""
        if dim is None:
            return
        need = cls.window_bytes(config.window, n_patches, dim, config.channels.seeds)
        total = _physical_memory()
        if total is not None and need > total:
            per_frame = need / config.window
            fits = max(0, int(0.8 * total / per_frame))
            raise ValueError(f"StreamConfig.window={config.window} would need {need / 2 ** 30:.1f} GiB when full "
                             f"({per_frame / 2 ** 20:.2f} MiB per frame: {n_patches} patches of {dim}-d "
                             f"descriptors), more than this machine's {total / 2 ** 30:.1f} GiB of memory: use a "
                             f"window of at most about {fits} frames, or a smaller grid or descriptor dimension")

    # ------------------------------------------------------------------ state
    @property
    def ready(self) -> bool:
        """Whether a score can be given: the nominal set is non-empty."""
        return self.index is not None and len(self.index) > 0

    @property
    def nominal_count(self) -> int:
        return 0 if self.index is None else len(self.index)

    @property
    def window_full(self) -> bool:
        """Whether the window holds ``config.window`` frames: from then on every scored frame is judged
        (its score enters the alarm rule's calibration and the drift detector)."""
        return self._window_full

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """The stream's (height, width): the first accepted frame's; later frames are resized to it."""
        return self._size.size

    @frame_size.setter
    def frame_size(self, size: tuple[int, int] | None) -> None:
        self._size.size = None if size is None else (int(size[0]), int(size[1]))

    def adopt_frame_size(self, shape: tuple[int, ...]) -> None:
        """Take ``shape``'s (height, width) as the stream's frame size if it has none yet: for descriptors
        computed elsewhere (serve's worker processes), whose frames this detector never sees."""
        self._size.accept(shape)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the full engine state to ``directory``, atomically (the previous state there stays
        loadable until the new one is complete). See :mod:`streamad.stream.persistence`."""
        with self._learning_paused():
            index, memory = self.index, self.memory
            own_memory, memory_index = (None, None) if memory is None else memory.state_dict()
            parts = {"detector": self.state_dict(), "channels": self.channels.state_dict(),
                     "index": None if index is None else index.state_dict(), "decisions": self.decisions.state_dict(),
                     "memory": own_memory, "memory_index": memory_index}
            summary = {"frames_seen": self.frames_seen, "window_frames": len(self.channels),
                       "window": self.config.window, "nominal_patches": self.nominal_count,
                       "memory_patches": 0 if memory is None else len(memory),
                       "graph": bool(getattr(index, "uses_graph", False))}
            return write_state(directory, parts, self.config, summary)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], extractor: Extractor | None = None,
             config: StreamConfig | None = None) -> StreamDetector:
        """The detector ``save`` wrote to ``directory``, ready to continue the stream exactly where it stopped.

        ``extractor`` defaults to the one the saved ``config.features`` describes; ``config``, if given,
        must match the saved configuration but for run-time settings (device, batch size, query
        threads). A missing, corrupt or incompatible state raises
        :class:`~streamad.errors.StateError` (a ``ValueError``) that names the file or field.
        """
        saved = read_state(directory, config)
        cls.check_state(saved.parts, saved.config, extractor, saved.path)
        parts = saved.parts
        if parts["index"] is not None:
            parts["index"]["threads"] = saved.config.index.threads  # a run-time setting: the one given wins
        return cls.from_state(parts, saved.config, extractor)  # type: ignore[arg-type]

    # The parts of a saved state, and the scalars of the detector's own (streamad.state_schema kinds).
    # "memory" and "memory_index" (the long-term memory, None until it holds anything) may be absent from
    # states saved before the memory could be saved: read as None.
    STATE_PARTS = ("detector", "channels", "index", "decisions", "memory", "memory_index")
    STATE_SCALARS = {"frames_seen": "int", "next_frame_id": "int", "since_admission": "int?",
                     "last_admission_time": "num?", "frame_size": "pair?", "grid": "grid"}

    @classmethod
    def check_state(cls, parts: dict[str, Any], config: StreamConfig, extractor: Extractor | None = None,
                    directory: str | os.PathLike[str] = ".") -> None:
        """Refuse (:class:`~streamad.errors.StateError`, naming the file or field in ``directory``) saved
        ``parts`` that :meth:`from_state` cannot resume with ``config`` and ``extractor``: each part as its
        owner's ``check_state`` says, then the parts against each other and the extractor."""
        where = {name: StatePart(directory, name) for name in cls.STATE_PARTS}
        own, channels = where["detector"].require(parts), where["channels"].require(parts)
        index, decisions = where["index"].require(parts, optional=True), where["decisions"].require(parts)
        where["detector"].scalars(own, cls.STATE_SCALARS)
        for key in ("frames_seen", "next_frame_id"):  # counters: never negative, and far from overflowing
            if not 0 <= own[key] < 2 ** 53:
                raise where["detector"].inconsistent(f"detector.{key} is {own[key]}, not a count in [0, 2**53)")
        grid = tuple(own["grid"])
        want = tuple(int(v) for v in (extractor.grid if extractor is not None else config.features.grid))
        if want != grid:
            raise StateError(f"cannot resume from {directory}: it was saved with a {grid[0]}x{grid[1]} descriptor "
                             f"grid, but the extractor gives {want[0]}x{want[1]}: use the extractor (features) it "
                             "was saved with")
        dim = IncrementalChannels.check_state(channels, config.window, config.channels, grid[0] * grid[1],
                                              where["channels"])
        if index is not None:
            check_index_state(index, where["index"])
            if dim is not None and index["dim"] != dim:
                raise where["index"].inconsistent(f"the window holds {dim}-d descriptors, the nominal index "
                                                  f"{index['dim']}-d ones")
            ext_dim = getattr(extractor, "dim", None)
            if isinstance(ext_dim, (int, np.integer)) and int(ext_dim) != index["dim"]:
                raise StateError(f"cannot resume from {directory}: it holds {index['dim']}-d descriptors, but the "
                                 f"extractor gives {int(ext_dim)}-d ones: use the extractor (features) it was saved "
                                 "with")
        pending = channels.get("pending_removed")
        if isinstance(pending, np.ndarray) and len(pending):
            # removals the window owes the index: each must be a label the index holds, or the next
            # admission fails removing it
            held = np.zeros(0, np.int64) if index is None else index_state_labels(index)
            missing = np.setdiff1d(pending, held)
            if len(missing):
                raise where["channels"].inconsistent(
                    f"{len(missing)} patch(es) in channels.pending_removed.npy (e.g. label {int(missing[0])}) are "
                    "not in the nominal index it would remove them from")
        AutoDecisions.check_state(decisions, where["decisions"])  # any rule's state
        memory, memory_index = parts.get("memory"), parts.get("memory_index")
        if (memory is None) != (memory_index is None):
            raise where["memory"].inconsistent("the long-term memory's bookkeeping and its index are not saved "
                                               "together")
        if memory is not None:
            where["memory"].require(parts), where["memory_index"].require(parts)
            if not config.memory.enabled:
                raise where["memory"].inconsistent("a long-term memory is saved, but StreamConfig.memory is off")
            LongTermMemory.check_state(memory, memory_index, where["memory"], where["memory_index"])
            if dim is not None and memory["dim"] != dim:
                raise where["memory"].inconsistent(f"the window holds {dim}-d descriptors, the long-term memory "
                                                   f"{memory['dim']}-d ones")

    def state_dict(self) -> dict[str, Any]:
        """The detector's own counters (the channels, index and decisions have their own ``state_dict``;
        ``save`` writes them all as the parts ``STATE_PARTS``)."""
        size = self.frame_size
        return {"grid": list(self.grid), "frames_seen": self.frames_seen, "next_frame_id": self._next_frame_id,
                "since_admission": self._since_admission, "last_admission_time": self._last_admission_time,
                "frame_size": None if size is None else list(size)}

    @classmethod
    def from_state(cls, parts: dict[str, dict[str, Any]], config: StreamConfig,
                   extractor: Extractor | None = None) -> StreamDetector:
        """A detector from the ``state_dict`` of it (``parts["detector"]``) and of its components."""
        det = cls(config, extractor)
        own = parts["detector"]
        det.frames_seen, det._next_frame_id = int(own["frames_seen"]), int(own["next_frame_id"])
        det._since_admission, det._last_admission_time = own["since_admission"], own["last_admission_time"]
        det.frame_size = None if own.get("frame_size") is None else tuple(own["frame_size"])
        det.channels = IncrementalChannels.from_state(parts["channels"], config.window, config.channels)
        index = parts["index"]
        det.index = None if index is None else index_from_state(index)
        det._window_full = det.channels.full
        det.decisions = decisions_from_state(parts["decisions"], config.decisions, seed=config.seed)
        memory = parts.get("memory")
        det.memory = None if memory is None else LongTermMemory.from_state(memory, parts["memory_index"],
                                                                            config.memory)
        return det

    # ------------------------------------------------------------------ frames
    def process(self, frame: np.ndarray, timestamp: float | None = None) -> FrameResult:
        """Score ``frame`` (RGB uint8 H x W x 3), then admit it to the window if the policy says so."""
        return self.process_described(self.describe(frame, timestamp))

    def describe(self, frame: np.ndarray, timestamp: float | None = None) -> DescribedFrame:
        """The first half of ``process``: the frame's patch descriptors (the backbone), checked. It reads
        nothing the scoring changes, so it may run on another thread while ``process_described`` scores the
        frame before (the live loop's reader does, :mod:`streamad.runtime.reader`); calls of ``describe``
        itself must come one at a time, in the frames' order (the first frame sets the stream's size).
        A frame or timestamp it cannot use raises ``ValueError`` before anything changes."""
        timestamp = None if timestamp is None else _timestamp(timestamp)  # refused before anything changes
        frame, desc, t_feat = self._features(frame)
        return DescribedFrame(desc, (int(frame.shape[0]), int(frame.shape[1])), timestamp, t_feat)

    def process_described(self, described: DescribedFrame) -> FrameResult:
        """The second half of ``process``: score, decide and admit a frame ``describe`` returned
        (``process(f, t)`` is ``process_described(describe(f, t))``, to the bit)."""
        if not isinstance(described, DescribedFrame):
            raise TypeError(f"process_described takes what describe returned, got {type(described).__name__}")
        return self._process(described.descriptors, described.frame_shape, described.timestamp, learn=True,
                             timings={"features": described.features_ms})

    def score_one(self, frame: np.ndarray, timestamp: float | None = None) -> FrameResult:
        """Score ``frame`` without learning from it (nothing in the detector changes but the frame count)."""
        timestamp = None if timestamp is None else _timestamp(timestamp)
        frame, desc, t_feat = self._features(frame)
        return self._process(desc, frame.shape[:2], timestamp, learn=False, timings={"features": t_feat})

    def learn_one(self, frame: np.ndarray) -> None:
        """Admit ``frame`` to the window now (no score)."""
        _, desc, _ = self._features(frame)
        with self._learning_paused():
            self._learn(desc, {})

    def _features(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        return extract_descriptors(self.extractor, self._size, frame,
                                   lambda d: self._check_descriptors(d, "the extractor's output"))

    # ------------------------------------------------------------------ descriptors
    def process_descriptors(self, descriptors: np.ndarray, frame_shape: tuple[int, int] | None = None,
                            timestamp: float | None = None) -> FrameResult:
        """``process`` on a frame's (P, d) descriptors; the heatmap is ``frame_shape`` (default: the
        extractor's input size)."""
        desc = self._check_descriptors(descriptors, "descriptors")
        return self._process(desc, frame_shape or tuple(self.extractor.image_size), timestamp, learn=True, timings={})

    def score_descriptors(self, descriptors: np.ndarray, frame_shape: tuple[int, int] | None = None,
                          timestamp: float | None = None) -> FrameResult:
        """``score_one`` on a frame's (P, d) descriptors."""
        desc = self._check_descriptors(descriptors, "descriptors")
        return self._process(desc, frame_shape or tuple(self.extractor.image_size), timestamp, learn=False,
                             timings={})

    def learn_descriptors(self, descriptors: np.ndarray) -> dict[str, float]:
        """``learn_one`` on a frame's (P, d) descriptors; returns the stage timings in ms."""
        timings: dict[str, float] = {}
        with self._learning_paused():
            self._learn(self._check_descriptors(descriptors, "descriptors"), timings)
        return timings

    def _check_descriptors(self, descriptors: np.ndarray, what: str) -> np.ndarray:
        d = np.asarray(descriptors)
        if d.ndim != 2 or d.shape[0] != self.n_patches or d.shape[1] < 1:
            raise ValueError(f"{what} must have shape ({self.n_patches}, d) for the {self.grid[0]}x{self.grid[1]} "
                             f"grid, got {d.shape}")
        if self.index is not None and d.shape[1] != self.index.dim:
            raise ValueError(f"{what} have dimension {d.shape[1]}, but the detector learned {self.index.dim}-d "
                             "descriptors: use one extractor configuration per detector")
        if d.dtype.kind != "f" or not np.isfinite(d).all():
            raise ValueError(f"{what} must be finite floating-point values (got dtype {d.dtype}"
                             f"{'' if d.dtype.kind != 'f' else ' with NaN or inf'})")
        return np.ascontiguousarray(d, dtype=np.float32)

    # ------------------------------------------------------------------ the pipeline
    def _process(self, desc: np.ndarray, frame_shape: tuple[int, ...], timestamp: float | None, learn: bool,
                 timings: dict[str, float]) -> FrameResult:
        now = time.time() if timestamp is None else _timestamp(timestamp)
        index_no = self.frames_seen
        self.frames_seen += 1
        h, w = int(frame_shape[0]), int(frame_shape[1])
        score = threshold = heat = patch = p_value = change = calibration = None
        calibration_frames = 0
        anomalous = drift = judged = False
        t0 = time.perf_counter()
        patch = self._patch_scores(desc)
        ready = patch is not None
        if patch is not None:
            timings["score"] = _ms(t0)
            t0 = time.perf_counter()
            heat = self._heatmap(patch, (h, w))
            hc = self.config.heatmap
            score = float(frame_scores(heat[None], patch[None], hc.image_score, hc.top_k)[0])
            timings["heatmap"] = _ms(t0)
            judged = learn and self._window_full
            decision = self.decisions.update(score, index_no, now) if judged else self.decisions.peek(score)
            threshold, anomalous, drift, p_value, change, calibration, calibration_frames = decision
        admitted = learn and self._due(now)
        if admitted and score is not None and judged and self.decisions.trusting:
            self._await_trust(self._next_frame_id, index_no, now, score, patch)  # the id the admission gives
        learned: tuple[int, ...] = ()
        if admitted and self.config.learn_in_background:
            self._submit(index_no, desc, eligible=not anomalous, now=now)
        elif admitted:
            self._learn(desc, timings, eligible=not anomalous, now=now, index_no=index_no)
            learned = (index_no,)
        elif learn and self._since_admission is not None:
            self._since_admission += 1
        if self._learner is not None:
            learned = tuple(self._learner.completed())
        trust_change = self._apply_trust()
        if trust_change is not None:
            drift, change = True, trust_change
        return FrameResult(index=index_no, ready=ready, score=score, threshold=threshold, anomalous=bool(anomalous),
                           heatmap=heat, patch_scores=patch, drift=bool(drift), admitted=admitted, timestamp=now,
                           timings=timings, learned=learned, p_value=p_value, drift_change=change,
                           calibration=calibration, calibration_frames=calibration_frames)

    # ------------------------------------------------------------------ trust (decisions rule "trusted")
    def _await_trust(self, frame_id: int, index_no: int, now: float, score: float, patch: np.ndarray) -> None:
        """Scorer side: keep a judged frame's score and patch order until its admission says what was kept."""
        if len(self._pending_trust) >= 1024:  # verdicts that never came (learner stopped): forget the oldest
            self._pending_trust.pop(next(iter(self._pending_trust)))
        self._pending_trust[frame_id] = (index_no, now, score, np.argsort(-patch.ravel(), kind="stable"))

    def _note_kept(self, frame_id: int, index_no: int | None, added: np.ndarray) -> None:
        """Admission side (any thread): which patches of the admitted frame the channels kept as nominal,
        for the trusted calibration and ``on_kept``."""
        hook = self.on_kept
        if not self.decisions.trusting and hook is None:
            return
        added = np.asarray(added, np.int64)
        kept = np.zeros(self.n_patches, bool)
        kept[added[added // self.n_patches == frame_id] % self.n_patches] = True
        if self.decisions.trusting:
            self._trust_notes.append((frame_id, kept))
        if hook is not None:
            hook(index_no, kept.copy())

    def _apply_trust(self) -> Any:
        """Scorer side: hand the verdicts of finished admissions to the decisions (trusted frames calibrate
        the threshold); what changed if that flagged drift. ``decisions.last_verdicts`` lists them as
        (frame index, score, kept_top)."""
        change, verdicts = None, []
        while self._trust_notes:
            frame_id, kept = self._trust_notes.popleft()
            for stale in [f for f in self._pending_trust if f < frame_id]:  # skipped by the background learner
                del self._pending_trust[stale]
            entry = self._pending_trust.pop(frame_id, None)
            if entry is None:
                continue
            index_no, now, score, order = entry
            top = kept_top(order, kept)
            verdicts.append((index_no, score, top))
            change = self.decisions.trust(score, top >= self.config.decisions.trust_patches, index_no, now) or change
        self.decisions.last_verdicts = verdicts
        return change

    def _patch_scores(self, desc: np.ndarray) -> np.ndarray | None:
        """Distances to the nearest nominal patch on the grid, or None while nothing is nominal.

        Reads ``self.index`` once: the index the learner publishes is complete, and each query reads one
        consistent version of it (the contract of :class:`~streamad.index.base.BaseIndex`)."""
        index = self.index
        if index is None or len(index) == 0:
            return None
        try:
            dist, _ = index.query(desc, k=1)
        except ValueError:
            if len(index) == 0:  # emptied between the check and the query (background learning)
                return None
            raise
        scores = dist[:, 0]
        memory = self.memory
        if memory is not None and len(memory):  # the nearer of the window's nominal set and the memory
            scores = np.minimum(scores, memory.query(desc, within=scores))
        return scores.reshape(self.grid).astype(np.float32)

    def _due(self, now: float) -> bool:
        """Admission policy: at least ``admit_every`` frames and ``admit_interval_s`` seconds since the last."""
        if self._since_admission is None:
            return True
        if self._since_admission + 1 < self.config.admit_every:
            return False
        t = self.config.admit_interval_s
        return t is None or self._last_admission_time is None or now - self._last_admission_time >= t

    def _learn(self, desc: np.ndarray, timings: dict[str, float], eligible: bool = True,
               now: float | None = None, index_no: int | None = None) -> None:
        """Admit now, on the caller's thread (synchronous learning, ``learn_one``)."""
        frame_id = self._next_frame_id
        self._next_frame_id += 1
        self._admit(frame_id, desc, eligible, timings, index_no)
        self._since_admission = 0
        self._last_admission_time = time.time() if now is None else now

    def _admit(self, frame_id: int, desc: np.ndarray, eligible: bool, timings: dict[str, float],
               index_no: int | None = None) -> None:
        """The admission work: window, channels, and the nominal index's change published at once.

        Runs on the learner thread in background mode (which then owns ``channels``), else on the caller's."""
        t0 = time.perf_counter()
        leaving = self._leaving_trusted() if self.config.memory.enabled else None
        self.channels.push(frame_id, desc, eligible=eligible)
        timings["associate"] = _ms(t0)
        t0 = time.perf_counter()
        changes = self.channels.drain_changes()
        self._note_kept(frame_id, index_no, changes.added)  # what the channels kept of this frame
        timings["trim"] = _ms(t0)
        remembered = False
        if leaving is not None and len(leaving) and self.memory is not None and self.memory.epsilon > 0:
            # the memory takes the leaving frame's trusted patches BEFORE the window's index lets them go, so a
            # query between the two publications finds them in one or the other, never in neither
            t0 = time.perf_counter()
            self._remember(leaving, frame_id, self.index)
            timings["memory"] = _ms(t0)
            remembered = True
        t0 = time.perf_counter()
        index = self.index
        if index is None:
            index = make_index(desc.shape[1], self.config.index, seed=self.config.seed)
        index.apply(changes.added, changes.added_vectors, changes.removed)  # one change, whatever the kind
        self.index = index  # a new index is published only once it holds the first admission's patches
        self._window_full = self.channels.full
        timings["index"] = _ms(t0)
        if leaving is not None and len(leaving) and not remembered:  # the first eviction: it sets the memory's scale
            t0 = time.perf_counter()
            self._remember(leaving, frame_id, index)
            timings["memory"] = _ms(t0)

    # ------------------------------------------------------------------ long-term memory (config.memory)
    def _leaving_trusted(self) -> np.ndarray | None:
        """The descriptors of the patches the channels trust in the frame the next admission evicts."""
        if not self.channels.full:
            return None
        oldest = self.channels.window_frames()[0]
        return self.channels.descriptors(oldest)[self.channels.nominal_patches(oldest)]

    def _remember(self, leaving: np.ndarray, now: int, index: Any) -> None:
        """Offer the evicted frame's trusted patches to the long-term memory (built on first use)."""
        memory = self.memory
        if memory is None:
            memory = LongTermMemory(self.config.memory, leaving.shape[1], self.config.index, seed=self.config.seed)
        if memory.epsilon <= 0 and len(index):
            memory.set_scale(index.query(leaving, k=1)[0][:, 0])
        memory.absorb(leaving, now)
        self.memory = memory

    # ------------------------------------------------------------------ background learning
    def _submit(self, index_no: int, desc: np.ndarray, eligible: bool, now: float) -> None:
        """Hand a due frame to the background learner (which takes the newest one waiting)."""
        if self.learner_error is not None:
            return  # learning stopped on an error (warned once); scoring goes on with the index as it is
        if self._learner is None:
            self._learner = Learner(self._admit_job, name="streamad-learner", job_id=lambda job: job[0],
                                    duty=self.config.learner_duty, nice=self.config.learner_nice)
        frame_id = self._next_frame_id
        self._next_frame_id += 1
        try:
            self._learner.submit((index_no, frame_id, desc, eligible))
        except RuntimeError as exc:
            self.learner_error = exc.__cause__ or exc
            warnings.warn(f"the background learner stopped on {self.learner_error!r}: frames are still scored, "
                          "but nothing more is learned (see StreamDetector.learner_error)", RuntimeWarning,
                          stacklevel=4)
            return
        self._since_admission = 0
        self._last_admission_time = now

    def _admit_job(self, job: tuple[int, int, np.ndarray, bool]) -> None:
        timings: dict[str, float] = {}
        self._admit(job[1], job[2], job[3], timings, job[0])
        self.learner_timings = timings
        for k, v in timings.items():
            self._learner_stage_ms[k] = self._learner_stage_ms.get(k, 0.0) + v

    def _learning_paused(self) -> Any:
        """A context in which the background learner (if any) is idle: the channels are safe to read or change."""
        return self._learner.pause() if self._learner is not None else contextlib.nullcontext()

    def wait_learned(self, timeout: float | None = None) -> bool:
        """Block until the background learner has nothing waiting or running (True), or ``timeout`` passed."""
        return True if self._learner is None else self._learner.wait_idle(timeout)

    def learner_stats(self) -> dict[str, Any]:
        """Background learning: admissions done and skipped, admissions per second, busy share, and the
        mean milliseconds of each admission stage (``stage_ms``); empty without a learner."""
        if self._learner is None:
            return {}
        stats: dict[str, Any] = dict(self._learner.stats())
        n = max(1, int(stats["admitted"]))
        stats["stage_ms"] = {k: v / n for k, v in self._learner_stage_ms.items()}
        return stats

    def close(self) -> None:
        """Stop the background learner (the running admission finishes; a waiting one is dropped)."""
        if self._learner is not None:
            self._learner.stop()

    def __enter__(self) -> StreamDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _heatmap(self, patch: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Patch scores to a frame-sized heatmap; with a centre crop, the uncovered border is 0."""
        h, w = size
        crop = float(getattr(self.extractor, "center_crop", 1.0))
        sigma = self.config.heatmap.blur_sigma
        if crop >= 1.0:
            return heatmap_from_patch_scores(patch, (h, w), sigma)
        ch, cw = max(1, round(h * crop)), max(1, round(w * crop))
        top, left = (h - ch) // 2, (w - cw) // 2
        heat = np.zeros((h, w), np.float32)
        heat[top:top + ch, left:left + cw] = heatmap_from_patch_scores(patch, (ch, cw), sigma)
        return heat
