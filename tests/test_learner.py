"""Background learning: scoring never waits for admissions, never sees a half-applied one, and stops cleanly."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from streamad.config import ChannelConfig, DecisionConfig, IndexConfig, MemoryConfig, StreamConfig
from streamad.index import ExactIndex, IVFIndex
from streamad.stream.detector import StreamDetector
from streamad.stream.learner import Learner, LearnerError

P, D = 16, 6


class Grid:
    grid, image_size = (4, 4), (32, 32)


def config(background: bool = True, **kw) -> StreamConfig:
    base = dict(window=10, channels=ChannelConfig(seeds=2, min_span=2), decisions=DecisionConfig(warmup=3, drift="none"),
                index=IndexConfig(kind="ivf", exact_below=40, nprobe=1000), learn_in_background=background,
                memory=MemoryConfig(capacity=0))  # the window's index alone: the memory's order is tested below
    base.update(kw)
    return StreamConfig(**base)


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(P, D))
    return [(base + 0.05 * rng.normal(size=(P, D)) + 0.02 * i).astype(np.float32) for i in range(n)]


def slow_admissions(det: StreamDetector, seconds: float) -> None:
    admit = det._admit

    def slow(*args, **kw):
        time.sleep(seconds)
        return admit(*args, **kw)

    det._admit = slow  # type: ignore[method-assign]


def test_background_results_equal_sync_ones_once_everything_is_learned():
    data = frames(30)
    sync, bg = StreamDetector(config(False), extractor=Grid()), StreamDetector(config(True), extractor=Grid())
    with bg:
        for f in data:
            sync.process_descriptors(f)
            bg.process_descriptors(f)
            assert bg.wait_learned(10)  # one admission at a time: the same admissions as sync
        q = frames(3, seed=9)
        for f in q:
            np.testing.assert_array_equal(sync.score_descriptors(f).patch_scores, bg.score_descriptors(f).patch_scores)
    assert sync.channels.nominal_keys() == bg.channels.nominal_keys()


def test_scoring_does_not_wait_for_a_slow_learner_and_results_say_what_was_learned():
    det = StreamDetector(config(), extractor=Grid())
    data = frames(40)
    with det:
        for f in data[:8]:
            det.process_descriptors(f)
            det.wait_learned(10)
        slow_admissions(det, 0.2)
        learned: list[int] = []
        t0 = time.perf_counter()
        results = [det.process_descriptors(f) for f in data[8:]]
        elapsed = time.perf_counter() - t0
        learned += [i for r in results for i in r.learned]
        assert elapsed < 0.2 * 5, f"32 frames took {elapsed:.2f} s behind a 0.2 s learner: scoring waited"
        assert all(r.admitted for r in results)  # every frame was due (admit_every=1) and handed over
        det.wait_learned(10)
        learned += list(det.process_descriptors(data[0]).learned)
    stats = det.learner_stats()
    assert 1 <= stats["admitted"] - 8 < 32 and stats["skipped"] > 0  # the newest due frame wins
    assert learned == sorted(learned) and set(learned) <= set(range(7, 41))  # 7: completed before, reported with frame 8
    assert not det._learner.running


def nominal_sets_published(det: StreamDetector, two_steps: bool = False) -> list[ExactIndex]:
    """Record every version of the nominal set the learner publishes (optionally applied in two steps,
    with a pause between: the deliberately broken variant)."""
    versions: list[ExactIndex] = []
    original = IVFIndex.apply

    def record(index: IVFIndex) -> None:
        ex = ExactIndex(D)
        if len(index):
            ex.add(index.labels(), index.vectors())
        versions.append(ex)

    def apply(self, added, vectors, removed, replace=False):
        if two_steps and len(removed):
            original(self, np.zeros(0, np.int64), np.zeros((0, D), np.float32), removed)
            time.sleep(0.03)
        else:
            time.sleep(0.03)  # a slow learner: a query has time to run while this admission is pending
        original(self, added, vectors, np.zeros(0, np.int64) if two_steps else removed, replace)
        record(self)

    det_apply = pytest.MonkeyPatch()
    det_apply.setattr(IVFIndex, "apply", apply)
    det._undo = det_apply  # type: ignore[attr-defined]
    return versions


def score_while_learning(two_steps: bool) -> tuple[int, int]:
    """(answers checked, answers that match no published version of the nominal set)."""
    det = StreamDetector(config(window=8), extractor=Grid())
    versions = nominal_sets_published(det, two_steps)
    data, probe = frames(40), frames(1, seed=5)[0]
    answers: list[np.ndarray] = []
    stop = threading.Event()

    def scorer() -> None:
        while not stop.is_set():
            r = det.score_descriptors(probe)
            if r.ready:
                answers.append(r.patch_scores.ravel())

    try:
        for f in data[:5]:
            det.process_descriptors(f)
            det.wait_learned(10)
        t = threading.Thread(target=scorer)
        t.start()
        for f in data[5:]:
            det.process_descriptors(f)
            det.wait_learned(10)  # every frame is admitted: each version follows the previous one
        stop.set()
        t.join(10)
    finally:
        det.close()
        det._undo.undo()
    truths = [v.query(probe)[0][:, 0] for v in versions if len(v)]
    bad = sum(not any(np.allclose(a, tr, rtol=1e-5, atol=1e-6) for tr in truths) for a in answers)
    return len(answers), bad


def test_the_scorer_never_sees_a_half_applied_admission():
    checked, bad = score_while_learning(two_steps=False)
    assert checked > 20 and bad == 0


def test_the_check_catches_an_admission_published_in_two_steps():
    checked, bad = score_while_learning(two_steps=True)
    assert checked > 20 and bad > 0


def test_save_waits_for_the_running_admission_and_load_resumes(tmp_path: Path):
    det = StreamDetector(config(), extractor=Grid())
    with det:
        for f in frames(20):
            det.process_descriptors(f)
            det.wait_learned(10)
        slow_admissions(det, 0.1)
        det.process_descriptors(frames(1, seed=3)[0])
        time.sleep(0.02)  # the slow admission is running now
        det.save(tmp_path / "state")  # waits for it, and holds the next one back while writing
    back = StreamDetector.load(tmp_path / "state", extractor=Grid())
    assert isinstance(back.index, IVFIndex) and len(back.channels) == 10
    assert back.nominal_count == len(back.channels.nominal_keys()) > 0  # index and window saved at one moment
    assert set(back.index.labels().tolist()) == {back.channels.label(f, p) for f, p in back.channels.nominal_keys()}
    assert back.config.learn_in_background
    with back:
        r = back.process_descriptors(frames(1, seed=4)[0])
    assert r.ready


def test_a_failing_admission_stops_learning_not_scoring():
    det = StreamDetector(config(), extractor=Grid())
    with det:
        for f in frames(12):
            det.process_descriptors(f)
            det.wait_learned(10)

        def broken(*args, **kw):
            raise MemoryError("simulated")

        det._admit = broken  # type: ignore[method-assign]
        det.process_descriptors(frames(1, seed=7)[0])
        det.wait_learned(10)
        with pytest.warns(RuntimeWarning, match="background learner stopped"):
            r = det.process_descriptors(frames(1, seed=8)[0])
        assert r.ready and r.score is not None
        assert isinstance(det.learner_error, MemoryError)
        assert det.process_descriptors(frames(1, seed=9)[0]).ready  # warned once, still scoring


def test_learner_stops_cleanly_and_refuses_work_after_stop():
    started, release = threading.Event(), threading.Event()
    done: list[int] = []

    def admit(job: int) -> None:
        started.set()
        release.wait(5)
        done.append(job)

    learner = Learner(admit)
    learner.submit(1)
    started.wait(5)
    learner.submit(2)  # waiting behind the running job
    threading.Timer(0.1, release.set).start()
    learner.stop()
    assert not learner.running and done == [1] and learner.skipped == 1  # 1 finished, 2 dropped
    with pytest.raises(LearnerError, match="stopped"):
        learner.submit(3)


def test_background_learning_needs_the_ivf_index():
    with pytest.raises(ValueError, match="StreamConfig.learn_in_background"):
        StreamConfig(learn_in_background=True, index=IndexConfig(kind="hnsw"))


def _burn(seconds: float) -> None:
    """Use ``seconds`` of this thread's CPU time."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_the_learner_rests_so_that_it_uses_at_most_its_duty_of_a_core():
    stamps: list[float] = []

    def admit(job: int) -> None:
        stamps.append(time.perf_counter())
        _burn(0.05)

    learner = Learner(admit, duty=0.25)  # 0.05 s of CPU, then 0.15 s of rest
    for i in range(4):
        learner.submit(i)
        learner.wait_idle(5)
        time.sleep(0.005)
    t0 = time.perf_counter()
    learner.stop()
    assert time.perf_counter() - t0 < 0.1  # a resting learner stops at once
    gaps = np.diff(stamps)
    assert len(stamps) == 4 and (gaps >= 0.19).all(), gaps
    assert learner.stats()["cpu"] > 0
    with pytest.raises(ValueError, match="Learner.duty"):
        Learner(admit, duty=0)


def test_a_job_that_waited_rather_than_worked_needs_no_rest():
    """The duty is CPU time: a job that spent its time waiting (for a core, here for a sleep) used little of
    one, so the next job starts at once (a wall-clock duty of 0.25 would rest 0.15 s after each)."""
    stamps: list[float] = []

    def admit(job: int) -> None:
        stamps.append(time.perf_counter())
        time.sleep(0.05)

    learner = Learner(admit, duty=0.25)
    for i in range(4):
        learner.submit(i)
        learner.wait_idle(5)
    learner.stop()
    gaps = np.diff(stamps)
    assert len(stamps) == 4 and (gaps < 0.12).all(), gaps


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own priority is Linux's")
def test_the_learner_thread_runs_at_a_lower_priority_and_the_callers_does_not():
    tids: list[int] = []
    learner = Learner(lambda job: tids.append(threading.get_native_id()), nice=7)
    learner.submit(1)
    assert learner.wait_idle(5)
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert learner.nice_applied
    assert os.getpriority(os.PRIO_PROCESS, tids[0]) == min(19, before + 7)  # the learner's own thread
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before  # the caller's unchanged
    learner.stop()
    plain = Learner(lambda job: tids.append(threading.get_native_id()))
    plain.submit(2)
    assert plain.wait_idle(5)
    assert not plain.nice_applied and os.getpriority(os.PRIO_PROCESS, tids[1]) == before
    plain.stop()
    for bad in (-1, 20, 2.5, True):
        with pytest.raises(ValueError, match="Learner.nice"):
            Learner(lambda job: None, nice=bad)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a thread's own priority is Linux's")
def test_the_detectors_learner_takes_its_niceness_from_the_config():
    with pytest.raises(ValueError, match="StreamConfig.learner_nice"):
        StreamConfig(learner_nice=20)
    assert StreamConfig().learner_nice == 10
    caller = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    for nice in (0, 4):
        det = StreamDetector(config(learner_nice=nice), extractor=Grid())
        with det:
            det.process_descriptors(frames(1)[0])
            assert det.wait_learned(10)
            tid = det._learner._thread.native_id
            assert os.getpriority(os.PRIO_PROCESS, tid) == min(19, caller + nice)


def test_a_leaving_frame_is_remembered_before_the_window_index_lets_it_go():
    """With a long-term memory, a query between the two publications of an admission finds the leaving
    frame's trusted patches in the window or in the memory, never in neither: the memory absorbs them
    before the window's index change is published (after the first eviction, which sets its scale)."""
    det = StreamDetector(config(background=False, memory=MemoryConfig(capacity=500)), extractor=Grid())
    order: list[str] = []
    for f in frames(30):
        det.process_descriptors(f)
        if det.memory is not None and not order:  # the memory exists: watch the next admissions
            memory, index = det.memory, det.index
            absorb, apply = memory.absorb, index.apply
            memory.absorb = lambda *a, **k: (order.append("memory"), absorb(*a, **k))[1]  # type: ignore
            index.apply = lambda *a, **k: (order.append("window"), apply(*a, **k))[1]  # type: ignore
            order.append("start")
    pairs = [order[i:i + 2] for i in range(1, len(order), 2)]
    assert len(pairs) > 5 and all(p == ["memory", "window"] for p in pairs), order
