"""The nominal index: HNSW recall against exact search, stable labels, slot reuse, growth, true L2."""

from __future__ import annotations

import numpy as np
import pytest

from streamad.index.hnsw import ExactIndex, NominalIndex, exact_knn


def brute(gallery: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.sqrt(((queries[:, None, :].astype(np.float64) - gallery[None].astype(np.float64)) ** 2).sum(-1))
    i = d.argmin(1)
    return d[np.arange(len(queries)), i], i


def test_exact_knn_is_exact_and_sorted():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(500, 7)).astype(np.float32)
    q = rng.normal(size=(60, 7)).astype(np.float32)
    dist, idx = exact_knn(g, q, k=3, chunk=16)
    want_d, want_i = brute(g, q)
    assert (idx[:, 0] == want_i).all()
    np.testing.assert_allclose(dist[:, 0], want_d, rtol=1e-6)
    assert (np.diff(dist, axis=1) >= 0).all()
    full = np.sqrt(((q[:, None].astype(np.float64) - g[None]) ** 2).sum(-1))
    np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :3], rtol=1e-6)


@pytest.mark.parametrize("cls", [ExactIndex, lambda dim: NominalIndex(dim, exact_below=0)])
def test_distances_are_true_l2_not_squared(cls):
    idx = cls(2)
    idx.add(np.array([10, 20]), np.array([[0.0, 0.0], [30.0, 40.0]]))
    d, lab = idx.query(np.array([[3.0, 4.0], [30.0, 40.0]]), k=1)
    np.testing.assert_allclose(d[:, 0], [5.0, 0.0], atol=1e-5)
    assert lab[:, 0].tolist() == [10, 20]


def test_hnsw_recall_against_exact_on_random_data():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(50, 24)) * 3
    data = (centres[rng.integers(0, 50, 4000)] + rng.normal(size=(4000, 24))).astype(np.float32)
    queries = (centres[rng.integers(0, 50, 300)] + rng.normal(size=(300, 24))).astype(np.float32)
    labels = rng.permutation(10**6)[:4000]  # arbitrary caller labels
    hnsw = NominalIndex(24, M=16, ef_construction=64, ef=64, exact_below=0, seed=3)
    exact = ExactIndex(24)
    for part in np.array_split(np.arange(4000), 7):  # built incrementally
        hnsw.add(labels[part], data[part])
        exact.add(labels[part], data[part])
    assert hnsw.uses_graph
    dh, lh = hnsw.query(queries, k=1)
    de, le = exact.query(queries, k=1)
    assert (lh == le).mean() >= 0.95
    assert (dh >= de - 1e-4).all()  # never closer than the true nearest
    assert np.median(dh / de) < 1.01


def test_labels_stay_stable_across_remove_and_re_add():
    rng = np.random.default_rng(2)
    vecs = rng.normal(size=(300, 8)).astype(np.float32)
    labels = np.arange(300) * 7 + 1000
    for idx in (NominalIndex(8, exact_below=0, seed=1), ExactIndex(8)):
        idx.add(labels, vecs)
        idx.remove(labels[:100])
        assert len(idx) == 200 and labels[0] not in idx and labels[150] in idx
        d, lab = idx.query(vecs[:100])
        assert not np.isin(lab, labels[:100]).any()  # removed ones are never returned
        d, lab = idx.query(vecs[150:200])
        assert (lab[:, 0] == labels[150:200]).all() and np.allclose(d, 0, atol=1e-3)
        moved = vecs[:100] + 50.0  # the same labels come back with new vectors
        idx.add(labels[:100], moved)
        d, lab = idx.query(moved)
        assert (lab[:, 0] == labels[:100]).all() and np.allclose(d, 0, atol=1e-3)
        idx.add(labels[:5], vecs[:5])  # a held label gets its vector replaced
        d, lab = idx.query(vecs[:5])
        assert (lab[:, 0] == labels[:5]).all() and len(idx) == 300
        assert sorted(idx.labels().tolist()) == sorted(labels.tolist())


def test_slot_reuse_keeps_the_graph_bounded_under_churn():
    rng = np.random.default_rng(3)
    idx = NominalIndex(6, exact_below=0, initial_capacity=64, seed=0)
    live: list[int] = []
    next_label = 0
    for step in range(60):  # a sliding window: 50 new vectors in, the oldest 50 out, 300 held at most
        new = np.arange(next_label, next_label + 50)
        next_label += 50
        idx.add(new, rng.normal(size=(50, 6)).astype(np.float32))
        live.extend(new.tolist())
        if len(live) > 300:
            idx.remove(np.asarray(live[:50]))
            live = live[50:]
        assert len(idx) == len(live)
    assert idx.capacity <= 2 * 350
    assert idx._hnsw is not None and idx._hnsw.get_current_count() <= 350  # graph elements: slots ever used
    d, lab = idx.query(idx._slots.vectors[idx._slots.live_slots()][:20])
    assert np.isin(lab, live).all()


def test_capacity_grows_geometrically_on_demand():
    rng = np.random.default_rng(4)
    idx = NominalIndex(4, exact_below=10, initial_capacity=2)
    caps = []
    for i in range(0, 1000, 25):
        idx.add(np.arange(i, i + 25), rng.normal(size=(25, 4)).astype(np.float32))
        caps.append(idx.capacity)
    assert len(idx) == 1000 and idx.capacity >= 1000 and idx.capacity < 4000
    assert len(set(caps)) < 12  # doubling, not one resize per call
    assert idx._hnsw is not None and idx._hnsw.get_max_elements() >= 1000
    vecs = idx._slots.vectors[idx._slots.live_slots()]
    d, lab = idx.query(vecs[:50])
    assert np.allclose(d[:, 0], 0, atol=1e-3)


def test_exact_fallback_below_the_threshold_and_graph_above():
    rng = np.random.default_rng(5)
    vecs = rng.normal(size=(120, 5)).astype(np.float32)
    q = rng.normal(size=(40, 5)).astype(np.float32)
    idx = NominalIndex(5, exact_below=100)
    idx.add(np.arange(99), vecs[:99])
    assert not idx.uses_graph and idx._hnsw is None
    d, lab = idx.query(q, k=2)
    want_d, want_i = brute(vecs[:99], q)
    assert (lab[:, 0] == want_i).all()
    np.testing.assert_allclose(d[:, 0], want_d, rtol=1e-6)
    idx.add(np.arange(99, 120), vecs[99:])
    assert idx.uses_graph
    idx.remove(np.arange(50))
    assert not idx.uses_graph  # small again: exact, the graph is kept up to date for later
    d, lab = idx.query(q)
    want_d, want_i = brute(vecs[50:], q)
    assert (lab[:, 0] == want_i + 50).all()


def test_empty_index_and_bad_calls_raise_clear_errors():
    idx = NominalIndex(3)
    with pytest.raises(ValueError, match="empty"):
        idx.query(np.zeros((1, 3)))
    idx.add([1, 2], np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 2\]"):
        idx.query(np.zeros((1, 3)), k=3)
    with pytest.raises(ValueError, match=r"shape \(m, 3\)"):
        idx.query(np.zeros((1, 4)))
    with pytest.raises(KeyError, match="not in the index"):
        idx.remove([7])
    with pytest.raises(ValueError, match="distinct"):
        idx.add([5, 5], np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        idx.add([5, 6], np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        idx.add([5], np.full((1, 3), np.nan))
    with pytest.raises(ValueError, match="NominalIndex.M"):
        NominalIndex(3, M=1)
    with pytest.raises(ValueError, match="empty"):
        ExactIndex(3).query(np.zeros((1, 3)))


def test_same_seed_same_operations_same_answers():
    rng = np.random.default_rng(6)
    vecs = rng.normal(size=(1500, 12)).astype(np.float32)
    q = rng.normal(size=(200, 12)).astype(np.float32)

    def run() -> tuple[np.ndarray, np.ndarray]:
        idx = NominalIndex(12, M=8, ef_construction=20, ef=10, exact_below=0, seed=11)
        idx.add(np.arange(1000), vecs[:1000])
        idx.remove(np.arange(0, 1000, 3))
        idx.add(np.arange(1000, 1500), vecs[1000:])
        return idx.query(q, k=3)

    (d1, l1), (d2, l2) = run(), run()
    assert (l1 == l2).all() and (d1 == d2).all()
