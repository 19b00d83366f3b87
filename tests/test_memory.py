"""The streaming engine's long-term nominal memory beyond the window (StreamConfig.memory)."""

from __future__ import annotations

import numpy as np
import pytest

from streamad.config import ChannelConfig, MemoryConfig, StreamConfig
from streamad.errors import StateError
from streamad.stream.detector import StreamDetector
from streamad.stream.memory import LongTermMemory


class Toy:
    grid, image_size = (4, 4), (32, 32)


def _scene(rng: np.random.Generator, n: int, shift: float = 0.0, p: int = 16, d: int = 8) -> np.ndarray:
    base = np.random.default_rng(99).normal(size=(1, p, d)).astype(np.float32) + shift
    return base + 0.05 * rng.normal(size=(n, p, d)).astype(np.float32)


def _config(**memory) -> StreamConfig:
    return StreamConfig(window=8, channels=ChannelConfig(seeds=2, min_span=2), memory=MemoryConfig(**memory))


@pytest.mark.parametrize("kwargs, message", [
    ({"capacity": -1}, "MemoryConfig.capacity must be an int >= 0"),
    ({"epsilon": -0.1}, "MemoryConfig.epsilon must be a finite float >= 0 (0: automatic), got -0.1"),
    ({"epsilon_ratio": 0}, "MemoryConfig.epsilon_ratio must be a finite float > 0, got 0"),
    ({"max_age": 1.5}, "MemoryConfig.max_age must be an int >= 0"),
])
def test_bad_memory_settings_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MemoryConfig(**kwargs)


def test_memory_is_on_by_default_and_off_with_capacity_0_or_the_lean_preset():
    from streamad.stream.presets import stream_config

    assert StreamConfig().memory.enabled and StreamConfig().memory.capacity == 60000
    assert not stream_config("lean").memory.enabled
    det = StreamDetector(_config(capacity=0), extractor=Toy())
    for frame in _scene(np.random.default_rng(0), 12):
        det.process_descriptors(frame, frame_shape=(32, 32))
    assert det.memory is None


def test_cover_reinforces_near_looks_and_remembers_far_ones():
    mem = LongTermMemory(MemoryConfig(capacity=10, epsilon=0.5), dim=2)
    mem.absorb(np.array([[0, 0], [0.2, 0], [5, 0], [5, 0.3]], np.float32), now=1)
    assert len(mem) == 2 and mem.counts().tolist() == [2, 2]
    mem.absorb(np.array([[0.1, 0.1], [9, 9]], np.float32), now=2)
    assert len(mem) == 3 and mem.counts().tolist() == [3, 2, 1] and mem.reinforced == 1
    d = mem.query(np.array([[9, 9.2], [0, 0]], np.float32))
    assert d[0] == pytest.approx(0.2, abs=1e-5) and d[1] == pytest.approx(0.0, abs=1e-6)
    assert np.isinf(LongTermMemory(MemoryConfig(capacity=1, epsilon=1.0), 2).query(np.zeros((1, 2)))).all()


def test_capacity_forgets_the_least_recently_reinforced_and_age_follows_drift():
    mem = LongTermMemory(MemoryConfig(capacity=3, epsilon=0.5), dim=1)
    for t, x in enumerate([0.0, 10.0, 20.0]):
        mem.absorb(np.array([[x]], np.float32), now=t)
    mem.absorb(np.array([[0.1]], np.float32), now=3)    # reinforces 0: now 10 is the stalest
    mem.absorb(np.array([[30.0]], np.float32), now=4)
    assert len(mem) == 3 and mem.forgotten == 1
    assert mem.query(np.array([[10.0]], np.float32))[0] == pytest.approx(10.0, abs=1e-4)  # 10 is gone
    aged = LongTermMemory(MemoryConfig(capacity=100, epsilon=0.5, max_age=5), dim=1)
    aged.absorb(np.array([[0.0]], np.float32), now=0)
    for t in range(1, 10):                              # the scene moved on: only new looks arrive
        aged.absorb(np.array([[100.0 + t]], np.float32), now=t)
    assert aged.query(np.array([[0.0]], np.float32))[0] > 50  # the old look was forgotten
    assert len(aged) <= 6


def test_memory_lowers_scores_of_past_looks_without_touching_the_window():
    """Scene A, then scene B fills the window: with memory, A's looks still score low; the window's nominal
    set (and so the incremental-equals-batch invariant) is the same with and without memory."""
    rng = np.random.default_rng(0)
    frames = np.concatenate([_scene(rng, 10), _scene(rng, 12, shift=3.0)])
    probe = _scene(np.random.default_rng(1), 1)[0]
    dets = {}
    for name, cfg in (("plain", _config()), ("memory", _config(capacity=200))):
        det = StreamDetector(cfg, extractor=Toy())
        for frame in frames:
            det.process_descriptors(frame, frame_shape=(32, 32))
        dets[name] = det
    plain, mem = dets["plain"], dets["memory"]
    assert np.array_equal(plain.channels.nominal_mask(), mem.channels.nominal_mask())
    assert plain.channels.window_frames() == mem.channels.window_frames() and len(plain.index) == len(mem.index)
    assert mem.memory is not None and 0 < len(mem.memory) <= 200 and mem.memory.epsilon > 0
    a_plain = plain.score_descriptors(probe, frame_shape=(32, 32)).score
    a_mem = mem.score_descriptors(probe, frame_shape=(32, 32)).score
    assert a_mem < 0.5 * a_plain                       # A is remembered
    b = _scene(np.random.default_rng(2), 1, shift=3.0)[0]
    b_plain = plain.score_descriptors(b, frame_shape=(32, 32)).score
    b_mem = mem.score_descriptors(b, frame_shape=(32, 32)).score
    assert b_plain * 0.9 <= b_mem <= b_plain  # B: the window covers it; the memory can only lower a score


def test_memory_is_bounded_on_a_long_stream():
    rng = np.random.default_rng(3)
    det = StreamDetector(_config(capacity=40, epsilon_ratio=0.1), extractor=Toy())
    for i in range(60):
        det.process_descriptors(_scene(rng, 1, shift=0.05 * i)[0], frame_shape=(32, 32))
    assert det.memory is not None and len(det.memory) <= 40 and det.memory.forgotten > 0


def _two_scenes(det: StreamDetector, rng: np.random.Generator) -> None:
    for frame in np.concatenate([_scene(rng, 10), _scene(rng, 12, shift=3.0)]):
        det.process_descriptors(frame, frame_shape=(32, 32))


def test_a_detector_with_memory_saves_and_resumes_exactly(tmp_path):
    """Saved mid-stream and loaded, the memory holds the same patches, counts and epsilon, and the resumed
    detector gives the same scores as the one that never stopped, on every later frame."""
    rng = np.random.default_rng(0)
    det = StreamDetector(_config(capacity=60, max_age=30), extractor=Toy())
    _two_scenes(det, rng)
    assert det.memory is not None and len(det.memory) > 0
    det.save(tmp_path / "state")
    back = StreamDetector.load(tmp_path / "state", extractor=Toy())
    assert back.memory is not None and len(back.memory) == len(det.memory)
    assert back.memory.epsilon == det.memory.epsilon
    assert np.array_equal(back.memory.counts(), det.memory.counts())
    assert (back.memory.absorbed, back.memory.reinforced, back.memory.forgotten) == \
        (det.memory.absorbed, det.memory.reinforced, det.memory.forgotten)
    later = np.concatenate([_scene(rng, 6), _scene(rng, 6, shift=6.0)])
    for frame in later:  # both keep learning: memories absorb and forget the same way
        a = det.process_descriptors(frame, frame_shape=(32, 32))
        b = back.process_descriptors(frame, frame_shape=(32, 32))
        assert a.score == b.score and np.array_equal(a.heatmap, b.heatmap)
    assert np.array_equal(back.memory.counts(), det.memory.counts()) and back.memory.forgotten == det.memory.forgotten


def test_a_saved_memory_is_used_after_loading(tmp_path):
    """The memory is what makes scene A score low once B filled the window: after loading it still does."""
    det = StreamDetector(_config(capacity=200), extractor=Toy())
    _two_scenes(det, np.random.default_rng(0))
    det.save(tmp_path / "state")
    back = StreamDetector.load(tmp_path / "state", extractor=Toy())
    plain = StreamDetector(_config(), extractor=Toy())
    _two_scenes(plain, np.random.default_rng(0))
    probe = _scene(np.random.default_rng(1), 1)[0]
    with_memory = back.score_descriptors(probe, frame_shape=(32, 32)).score
    assert with_memory < 0.5 * plain.score_descriptors(probe, frame_shape=(32, 32)).score


def test_a_detector_whose_memory_is_empty_saves_and_resumes(tmp_path):
    det = StreamDetector(_config(capacity=10), extractor=Toy())
    det.save(tmp_path / "state")
    back = StreamDetector.load(tmp_path / "state", extractor=Toy())
    assert back.memory is None and back.config.memory.capacity == 10


def test_a_damaged_saved_memory_is_refused_naming_the_part(tmp_path):
    det = StreamDetector(_config(capacity=200), extractor=Toy())
    _two_scenes(det, np.random.default_rng(0))
    det.save(tmp_path / "state")
    counts = tmp_path / "state" / "memory.count.npy"
    assert counts.is_file()
    np.save(counts, np.zeros(len(det.memory) + 1, np.int64))  # one count too many (the CRC catches it first)
    with pytest.raises(StateError, match="memory"):
        StreamDetector.load(tmp_path / "state", extractor=Toy())
    own, index = det.memory.state_dict()
    from streamad.state_schema import StatePart

    where, where_index = StatePart(tmp_path, "memory"), StatePart(tmp_path, "memory_index")
    bad = dict(own, labels=own["labels"][::-1].copy())
    with pytest.raises(StateError, match="not increasing"):
        LongTermMemory.check_state(bad, index, where, where_index)
    fewer = dict(own, labels=own["labels"][:-1], count=own["count"][:-1], last=own["last"][:-1])
    with pytest.raises(StateError, match="its index holds others"):
        LongTermMemory.check_state(fewer, index, where, where_index)
    with pytest.raises(StateError, match="memory.epsilon"):
        LongTermMemory.check_state(dict(own, epsilon="x"), index, where, where_index)


@pytest.mark.parametrize("argv, message", [
    (["--memory", "10"], "--memory only apply with --stream"),
    (["--stream", "--memory", "-1"], "--memory must be an int >= 0"),
    (["--stream", "--image-score", "reweight"], "--image-score reweight is for batch models"),
])
def test_eval_memory_options_are_checked_in_one_line(tiny_dataset, capsys, argv, message):
    from streamad.cli import main

    assert main(["eval", str(tiny_dataset), "--quiet", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_memory_searched_within_epsilon_remembers_what_exact_search_would():
    """Absorbing asks the index only for neighbours within epsilon (``within``): through trained IVF lists
    the memory reinforces and remembers exactly what it does with every query exact."""
    from streamad.config import IndexConfig

    rng = np.random.default_rng(5)
    centres = rng.normal(size=(60, 8)) * 3
    cfg = MemoryConfig(capacity=5000, epsilon=1.2)
    lists = LongTermMemory(cfg, dim=8, index=IndexConfig(kind="ivf", exact_below=0, nlist=24, nprobe=24))
    exact = LongTermMemory(cfg, dim=8, index=IndexConfig(kind="ivf", exact_below=10**9))
    for now in range(1, 13):
        x = (centres[rng.integers(0, 60, 300)] + rng.normal(size=(300, 8)) * 0.6).astype(np.float32)
        lists.absorb(x, now)
        exact.absorb(x, now)
    assert lists.index.trained and not exact.index.trained
    assert lists.reinforced == exact.reinforced > 500 and lists.absorbed == exact.absorbed
    np.testing.assert_array_equal(lists.counts(), exact.counts())
    q = rng.normal(size=(200, 8)).astype(np.float32) * 3
    np.testing.assert_allclose(lists.query(q), exact.query(q), rtol=1e-5)
    near = exact.query(q)
    within = near * rng.choice([0.5, 1.0, 2.0], size=len(q))
    bounded = lists.query(q, within=within)
    needed = near <= within
    np.testing.assert_allclose(bounded[needed], near[needed], rtol=1e-5)
    assert (bounded[~needed] > within[~needed]).all()


def test_the_compiled_cover_chooses_as_the_greedy_loop_does() -> None:
    """The compiled greedy epsilon-cover gives the rows and counts of the plain loop it replaced, on random
    symmetric neighbourhoods (some rows not even within of themselves, as rounding may leave them)."""
    from streamad.stream.memory import _greedy_cover

    def loop(within):
        free = np.ones(len(within), bool)
        chosen, counts = [], []
        for i in range(len(within)):
            if not free[i]:
                continue
            group = within[i] & free
            free &= ~group
            chosen.append(i)
            counts.append(int(group.sum()))
        return chosen, counts

    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 40, 300):
        for density in (0.0, 0.05, 0.3, 1.0):
            w = rng.random((n, n)) < density
            w = w | w.T
            w[np.diag_indices(n)] = rng.random(n) < 0.9
            chosen, counts = _greedy_cover(w)
            assert (chosen.tolist(), counts.tolist()) == loop(w), (n, density)
