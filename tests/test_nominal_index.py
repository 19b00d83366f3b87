"""The HNSW index's own features: slot reuse, growth, the exact fallback, determinism, the deprecated name.

What every index must do (true L2, recall against brute force, removals and re-additions, bad input,
state round trip, concurrent readers) is checked for every kind by tests/test_index_contract.py."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from streamad.index.hnsw import HNSWIndex, exact_knn


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


def test_slot_reuse_keeps_the_graph_bounded_under_churn():
    rng = np.random.default_rng(3)
    idx = HNSWIndex(6, exact_below=0, initial_capacity=64, seed=0)
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
    idx = HNSWIndex(4, exact_below=10, initial_capacity=2)
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
    idx = HNSWIndex(5, exact_below=100)
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


def test_bad_parameters_name_themselves():
    with pytest.raises(ValueError, match="HNSWIndex.M"):
        HNSWIndex(3, M=1)
    with pytest.raises(ValueError, match="HNSWIndex.ef"):
        HNSWIndex(3, ef=0)


def test_the_former_name_still_imports_with_a_warning():
    import streamad.index
    import streamad.index.hnsw

    for module in (streamad.index, streamad.index.hnsw):
        with pytest.warns(DeprecationWarning, match="HNSWIndex"):
            assert module.NominalIndex is HNSWIndex
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from streamad.index import HNSWIndex as again  # the new name: no warning
    assert again is HNSWIndex
    with pytest.raises(AttributeError):
        streamad.index.NoSuchIndex  # noqa: B018


def test_same_seed_same_operations_same_answers():
    rng = np.random.default_rng(6)
    vecs = rng.normal(size=(1500, 12)).astype(np.float32)
    q = rng.normal(size=(200, 12)).astype(np.float32)

    def run() -> tuple[np.ndarray, np.ndarray]:
        idx = HNSWIndex(12, M=8, ef_construction=20, ef=10, exact_below=0, seed=11)
        idx.add(np.arange(1000), vecs[:1000])
        idx.remove(np.arange(0, 1000, 3))
        idx.add(np.arange(1000, 1500), vecs[1000:])
        return idx.query(q, k=3)

    (d1, l1), (d2, l2) = run(), run()
    assert (l1 == l2).all() and (d1 == d2).all()


def test_a_state_saved_before_index_kinds_existed_is_read_as_hnsw():
    from streamad.index import check_index_state, index_from_state

    idx = HNSWIndex(3, exact_below=0)
    idx.add(np.arange(20), np.random.default_rng(0).normal(size=(20, 3)))
    state = idx.state_dict()
    del state["kind"]  # as format version 1 states were written
    assert check_index_state(state) is HNSWIndex
    back = index_from_state(state)
    q = np.random.default_rng(1).normal(size=(5, 3))
    for a, b in zip(back.query(q, 2), idx.query(q, 2)):
        np.testing.assert_array_equal(a, b)
