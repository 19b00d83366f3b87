"""The live detector contract (:class:`streamad.runtime.detector.Detector`): every detector class that
``watch`` and ``serve`` run has all of it, with the protocol's parameter names; a class that lacks a
member is refused (the check can fail); and the frame-size rule is one rule, the same in the detector of
this process and in serve's worker-mode ``RemoteDetector``."""

from __future__ import annotations

import inspect
import threading
import warnings
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from streamad.config import ChannelConfig, StreamConfig
from streamad.results import FrameResult
from streamad.runtime.detector import DescribingScorer, Detector, FrameScorer
from streamad.runtime.serve.workers import DetectorSpec, RemoteDetector
from streamad.stream.detector import StreamDetector
from streamad.testing.standin import BlockMeans, StandInDetector
from streamad.vision.frames import FrameSizeWarning

SMALL = StreamConfig(window=8, channels=ChannelConfig(seeds=2, min_span=2))


def _members(protocol: type) -> dict[str, Any]:
    """The protocol's own members (methods and properties), through its bases, by name."""
    found: dict[str, Any] = {}
    for cls in reversed(protocol.__mro__):
        if cls is object or not getattr(cls, "_is_protocol", False):
            continue
        found.update({k: v for k, v in vars(cls).items() if not k.startswith("_")})
    return found


def contract_problems(detector: object, protocol: type = Detector) -> list[str]:
    """What ``detector`` lacks of ``protocol``: missing members, members that should be methods and are
    not, methods whose parameters differ in name or order from the protocol's."""
    problems = []
    for name, member in sorted(_members(protocol).items()):
        if not hasattr(detector, name):
            problems.append(f"{type(detector).__name__} has no {name}")
            continue
        if isinstance(member, property):
            continue
        value = getattr(detector, name)
        if not callable(value):
            problems.append(f"{type(detector).__name__}.{name} is not a method")
            continue
        want = [p for p in inspect.signature(member).parameters if p != "self"]
        have = list(inspect.signature(value).parameters)
        if have[:len(want)] != want or any(inspect.signature(value).parameters[p].default is inspect.Parameter.empty
                                           for p in have[len(want):]):
            problems.append(f"{type(detector).__name__}.{name}{inspect.signature(value)} does not take ({', '.join(want)})")
    return problems


class FakeWorker:
    """A worker process stand-in for RemoteDetector: answers every request at once, remembers the shapes."""

    def __init__(self) -> None:
        self.lock, self.generation, self.dead, self.number, self.pid = threading.Lock(), 1, None, 0, None
        self.shapes: list[tuple[int, int]] = []

    def alive(self) -> bool:
        return True

    def start(self) -> None:
        raise AssertionError("the fake worker never restarts")

    def call(self, op: str, *args: Any) -> Any:
        if op == "open":
            return [], 0, None
        if op == "process":
            _, desc, shape, timestamp = args
            self.shapes.append(shape)
            return FrameResult(len(self.shapes) - 1, False, None, None, False, None, None, False, True,
                               0.0 if timestamp is None else timestamp), 0
        if op == "learner_stats":
            return {"admitted": 0}
        return None


def remote_detector() -> RemoteDetector:
    extractor = BlockMeans()
    remote = RemoteDetector(FakeWorker(), DetectorSpec.of("cam", SMALL, extractor), extractor)  # type: ignore[arg-type]
    remote.open()
    return remote


class Stand(StandInDetector):
    def process(self, frame: np.ndarray, timestamp: float | None = None) -> FrameResult:
        return FrameResult(0, False, None, None, False, None, None, False, False, 0.0)


@pytest.mark.parametrize("make", [lambda: StreamDetector(SMALL, extractor=BlockMeans()), remote_detector, Stand],
                         ids=["StreamDetector", "RemoteDetector", "StandInDetector"])
def test_every_live_detector_has_the_whole_contract(make) -> None:
    detector = make()
    assert isinstance(detector, Detector) and isinstance(detector, FrameScorer)
    assert contract_problems(detector) == []
    assert detector.frame_size is None and detector.nominal_count == 0 and isinstance(detector.learner_stats(), dict)
    detector.close()


@pytest.mark.parametrize("make", [lambda: StreamDetector(SMALL, extractor=BlockMeans()), remote_detector],
                         ids=["StreamDetector", "RemoteDetector"])
def test_both_detectors_come_in_halves_that_compose_to_process(make) -> None:
    """The live loop's reader describes one frame ahead: describe + process_described is process, and a
    first frame whose descriptors are refused sets no size in either."""
    one, two = make(), make()
    frames = [np.full((48, 64, 3), 40 + 7 * i, np.uint8) for i in range(6)]
    whole = [one.process(f, timestamp=float(i)) for i, f in enumerate(frames)]
    halves = [two.process_described(two.describe(f, float(i))) for i, f in enumerate(frames)]
    assert isinstance(one, DescribingScorer)
    assert [(r.index, r.ready, r.score, r.timestamp) for r in whole] == [
        (r.index, r.ready, r.score, r.timestamp) for r in halves]
    assert all("features" in r.timings for r in halves)
    fresh = make()
    fresh.extractor = lambda frames: np.full((1, fresh.n_patches if hasattr(fresh, "n_patches") else 64, 3), np.nan,
                                             np.float32)
    with pytest.raises(ValueError, match="finite"):
        fresh.describe(frames[0])
    assert fresh.frame_size is None
    with pytest.raises(TypeError, match="takes what describe returned"):
        one.process_described(frames[0])


def test_the_contract_names_what_watch_and_serve_use() -> None:
    assert set(_members(Detector)) == {"process", "save", "close", "nominal_count", "frame_size", "extractor",
                                       "learner_stats"}
    assert set(_members(FrameScorer)) == {"process"}


def test_a_detector_missing_a_member_is_refused() -> None:
    class NoClose(Stand):
        close = None  # type: ignore[assignment]

    class OldSave(Stand):
        def save(self, path, compress):  # type: ignore[override]
            pass

    class OnlyScores:
        def process(self, frame, timestamp=None):
            return None

    assert contract_problems(NoClose()) == ["NoClose.close is not a method"]
    assert contract_problems(OldSave()) == ["OldSave.save(path, compress) does not take (directory)"]
    assert not isinstance(OnlyScores(), Detector) and isinstance(OnlyScores(), FrameScorer)
    assert contract_problems(OnlyScores()) == [f"OnlyScores has no {name}" for name in
                                               ("close", "extractor", "frame_size", "learner_stats", "nominal_count",
                                                "save")]


def _size_warnings(detector: Any) -> list[str]:
    """The frame-size warnings of three frames: the first 48x64, then two of 96x128."""
    frames = [np.full((48, 64, 3), 90, np.uint8), np.full((96, 128, 3), 90, np.uint8),
              np.full((96, 128, 3), 90, np.uint8)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for frame in frames:
            detector.process(frame)
    return [str(w.message) for w in caught if issubclass(w.category, FrameSizeWarning)]


def test_one_frame_size_rule_in_this_process_and_in_a_worker() -> None:
    """The first frame's size is the stream's; another size is resized to it, with the same one warning."""
    local, remote = StreamDetector(SMALL, extractor=BlockMeans()), remote_detector()
    said_local, said_remote = _size_warnings(local), _size_warnings(remote)
    assert local.frame_size == remote.frame_size == (48, 64)
    assert said_local == said_remote and len(said_local) == 1
    assert said_local[0].startswith("frame size 96x128 differs from the stream's first frame (48x64)")
    assert set(remote.worker.shapes) == {(48, 64)}   # the worker only ever sees frames of the stream's size


def test_a_rejected_first_frame_sets_no_size_anywhere() -> None:
    """Only an accepted frame fixes the stream's size (it was not so in the worker-mode detector)."""
    remote = remote_detector()

    def refuse(frames):
        raise ValueError("no descriptors for this one")

    remote.extractor = refuse
    with pytest.raises(ValueError, match="no descriptors"):
        remote.process(np.zeros((48, 64, 3), np.uint8))
    assert remote.frame_size is None


def test_the_worker_adopts_the_frame_size_through_a_method() -> None:
    detector = StreamDetector(SMALL, extractor=SimpleNamespace(grid=(4, 4), image_size=(32, 32)))
    detector.adopt_frame_size((48, 64, 3))
    detector.adopt_frame_size((96, 128))
    assert detector.frame_size == (48, 64)
