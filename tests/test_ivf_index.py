"""The IVF nominal index, every feature against brute force (ExactIndex), and its snapshot guarantee."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from streamad.config import IndexConfig
from streamad.index import ExactIndex, IVFIndex, NominalIndex, make_index


def clustered(rng: np.random.Generator, n: int, d: int = 16, centres: int = 40) -> np.ndarray:
    c = rng.normal(size=(centres, d)) * 4
    return (c[rng.integers(0, centres, n)] + rng.normal(size=(n, d))).astype(np.float32)


def both(n: int = 3000, d: int = 16, seed: int = 0, **kw):
    rng = np.random.default_rng(seed)
    data = clustered(rng, n, d)
    labels = rng.permutation(10**6)[:n]
    ivf, exact = IVFIndex(d, exact_below=500, seed=1, **kw), ExactIndex(d)
    for part in np.array_split(np.arange(n), 9):  # built incrementally, through training
        ivf.add(labels[part], data[part])
        exact.add(labels[part], data[part])
    return rng, data, labels, ivf, exact


def test_answers_equal_brute_force_when_every_list_is_probed():
    rng, _, _, ivf, exact = both(nprobe=10**6)
    assert ivf.trained
    q = clustered(rng, 300)
    for k in (1, 4):
        di, li = ivf.query(q, k=k)
        de, le = exact.query(q, k=k)
        np.testing.assert_allclose(di, de, rtol=1e-5, atol=1e-5)
        assert (li == le).mean() > 0.999


def test_recall_with_few_probes_and_never_closer_than_the_truth():
    rng, _, _, ivf, exact = both(nprobe=8)
    q = clustered(rng, 500)
    di, li = ivf.query(q)
    de, le = exact.query(q)
    assert (li == le).mean() >= 0.95
    assert (di >= de - 1e-4).all()


def test_exact_below_the_training_size_and_true_l2():
    idx = IVFIndex(2, exact_below=10)
    idx.add(np.array([10, 20]), np.array([[0.0, 0.0], [30.0, 40.0]]))
    assert not idx.trained
    d, lab = idx.query(np.array([[3.0, 4.0], [30.0, 40.0]]))
    np.testing.assert_allclose(d[:, 0], [5.0, 0.0], atol=1e-5)
    assert lab[:, 0].tolist() == [10, 20]


def test_remove_replace_and_apply_match_brute_force():
    rng, data, labels, ivf, exact = both(nprobe=10**6)
    gone = labels[::3]
    ivf.remove(gone)
    exact.remove(gone)
    moved = labels[1:300:3]
    new_vectors = clustered(rng, len(moved))
    ivf.add(moved, new_vectors)  # a held label gets its new vector
    exact.add(moved, new_vectors)
    fresh = np.arange(2 * 10**6, 2 * 10**6 + 200)
    fresh_vectors = clustered(rng, 200)
    out = labels[2:600:3]
    ivf.apply(fresh, fresh_vectors, out)
    exact.add(fresh, fresh_vectors)
    exact.remove(out)
    assert len(ivf) == len(exact) and set(ivf.labels().tolist()) == set(exact.labels().tolist())
    q = clustered(rng, 200)
    np.testing.assert_allclose(ivf.query(q, 3)[0], exact.query(q, 3)[0], rtol=1e-5, atol=1e-5)
    lab = ivf.labels()
    np.testing.assert_array_equal(ivf.vectors()[np.argsort(lab)],
                                  exact._slots.vectors[[exact._slots.slot_of[x] for x in np.sort(lab).tolist()]])


def test_bad_calls_are_refused_and_change_nothing():
    _, _, labels, ivf, _ = both()
    n = len(ivf)
    with pytest.raises(KeyError, match="not in the index"):
        ivf.apply(np.array([-5]), np.zeros((1, 16), np.float32), np.array([labels[0], 123456789]))
    assert len(ivf) == n and labels[0] in ivf and -5 not in ivf
    with pytest.raises(ValueError, match="distinct"):
        ivf.add(np.array([1, 1]), np.zeros((2, 16)))
    with pytest.raises(ValueError, match="shape"):
        ivf.add(np.array([1]), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN"):
        ivf.add(np.array([1]), np.full((1, 16), np.nan))
    with pytest.raises(ValueError, match="empty"):
        IVFIndex(4).query(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="IVFIndex.nprobe"):
        IVFIndex(4, nprobe=0)


def test_retrains_when_the_set_outgrows_its_centroids():
    rng = np.random.default_rng(3)
    idx = IVFIndex(8, exact_below=100, retrain_growth=2.0)
    exact = ExactIndex(8)
    data = clustered(rng, 1000, 8)
    for part in np.array_split(np.arange(1000), 20):
        idx.add(part, data[part])
        exact.add(part, data[part])
    assert idx.retrains >= 3  # trained at 100, again past 200, 400, 800
    q = clustered(rng, 100, 8)
    assert (idx.query(q)[1] == exact.query(q)[1]).mean() >= 0.95


def test_state_dict_round_trip_answers_the_same():
    rng, _, _, ivf, _ = both(nprobe=3)
    back = IVFIndex.from_state(ivf.state_dict())
    q = clustered(rng, 100)
    for a, b in zip(ivf.query(q, 2), back.query(q, 2)):
        np.testing.assert_array_equal(a, b)
    assert back.retrains == ivf.retrains and len(back) == len(ivf)


def test_make_index_follows_the_config():
    assert isinstance(make_index(4, IndexConfig(kind="ivf", nprobe=3)), IVFIndex)
    assert isinstance(make_index(4, IndexConfig()), NominalIndex)
    with pytest.raises(ValueError, match="IndexConfig.kind"):
        IndexConfig(kind="faiss")


def watch_changes(two_steps: bool) -> tuple[list[set[int]], list[BaseException]]:
    """A writer swaps whole 'frames' of vectors in and out (one ``apply``, or a remove and an add with a
    pause between); a concurrent reader asks for as many neighbours as one frame holds and records
    which frames its answer came from (or the exception it got)."""
    d, per = 8, 50
    base = np.random.default_rng(4).normal(size=(per, d)).astype(np.float32)
    idx = IVFIndex(d, exact_below=per, nprobe=10**6)

    def frame(f: int) -> np.ndarray:  # frame f: the same points, all shifted by f along axis 0
        out = base.copy()
        out[:, 0] += 100.0 * f
        return out

    idx.add(np.arange(per), frame(0))
    stop = threading.Event()
    seen: list[set[int]] = []
    errors: list[BaseException] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                _, lab = idx.query(base[:5], k=per)
                seen.append(set((lab // per).ravel().tolist()))
            except ValueError as exc:
                errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    for f in range(1, 40):
        new, old = np.arange(per) + f * per, np.arange(per) + (f - 1) * per
        if two_steps:
            idx.remove(old[: per // 2])
            time.sleep(0.002)
            idx.apply(new, frame(f), old[per // 2:])
        else:
            idx.apply(new, frame(f), old)
        time.sleep(0.002)
    stop.set()
    t.join(10)
    return seen, errors


def test_a_reader_never_sees_a_half_applied_change():
    seen, errors = watch_changes(two_steps=False)
    assert not errors and len(seen) > 10
    assert all(len(s) == 1 for s in seen), [s for s in seen if len(s) != 1][:3]


def test_the_check_catches_a_change_applied_in_two_steps():
    seen, errors = watch_changes(two_steps=True)
    assert errors or any(len(s) != 1 for s in seen)


def test_exact_search_on_a_torch_device_equals_numpy():
    from streamad.index import exact_knn

    rng = np.random.default_rng(7)
    g, q = clustered(rng, 2000), clustered(rng, 300)
    for k in (1, 3):
        dn, iN = exact_knn(g, q, k)
        dt, it = exact_knn(g, q, k, device="cpu")
        np.testing.assert_allclose(dt, dn, rtol=1e-6)
        assert (it == iN).mean() > 0.999
    idx = IVFIndex(16, exact_below=10**6, device="cpu")  # every query exact, with torch
    idx.add(np.arange(2000), g)
    assert not idx.trained
    np.testing.assert_allclose(idx.query(q)[0], exact_knn(g, q)[0], rtol=1e-6)

