"""The IVF index's own features against brute force (ExactIndex): exact when every list is probed, through
changes and retraining, exact search below ``exact_below`` and on a torch device.

What every index must do (true L2, recall, removals and re-additions, bad input, state round trip, readers
seeing whole versions) is checked for every kind by tests/test_index_contract.py."""

from __future__ import annotations

import numpy as np
import pytest

from streamad.index import ExactIndex, IVFIndex
from streamad.index.exact import exact_knn
from streamad.index.ivf import _State


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


def test_exact_below_the_training_size_then_lists_and_a_restored_index_keeps_its_training():
    idx = IVFIndex(2, exact_below=10)
    idx.add(np.array([10, 20]), np.array([[0.0, 0.0], [30.0, 40.0]]))
    assert not idx.trained
    d, lab = idx.query(np.array([[3.0, 4.0], [30.0, 40.0]]))
    np.testing.assert_allclose(d[:, 0], [5.0, 0.0], atol=1e-5)
    assert lab[:, 0].tolist() == [10, 20]
    idx.add(np.arange(10), np.random.default_rng(0).normal(size=(10, 2)))
    assert idx.trained and idx.retrains == 1
    back = IVFIndex.from_state(idx.state_dict())
    assert back.trained and back.retrains == 1 and back.list_sizes().tolist() == idx.list_sizes().tolist()
    with pytest.raises(ValueError, match="IVFIndex.nprobe"):
        IVFIndex(4, nprobe=0)


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
    np.testing.assert_array_equal(ivf.vectors()[np.argsort(ivf.labels())], exact.vectors()[np.argsort(exact.labels())])


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



def test_kmeans_leaves_the_threads_torch_uses_as_they_were() -> None:
    """FAISS and torch share a thread's OpenMP setting: a k-means on the scoring thread once left the
    backbone on one thread for the rest of a ``watch --learning sync`` run (and serve and watch scored
    differently in the last bit)."""
    import torch

    from streamad.index.ivf import kmeans

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = np.random.default_rng(0).standard_normal((500, 8)).astype(np.float32)
        first = kmeans(x, 10, seed=3)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        assert np.array_equal(kmeans(x, 10, seed=3), first)  # same seed, same centroids, any thread count
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_scan_reads_only_the_lists_that_can_hold_a_nearer_vector() -> None:
    """k = 1 scans each query's own list, then only the probed lists whose bisector with it lies within
    the best distance found: with every list probed the answers are exact search's, and far fewer
    (query, list) pairs are scanned than probed. With ``within``, every answer within the bound is the
    unbounded one, the others farther than the bound, and fewer still are scanned."""
    rng = np.random.default_rng(3)
    x = rng.uniform(size=(6000, 4)).astype(np.float32)  # uniform: many nearest neighbours across a bisector
    idx = IVFIndex(dim=4, exact_below=0, nlist=64, nprobe=64, seed=0)
    idx.add(np.arange(len(x)), x)
    q = rng.uniform(size=(2000, 4)).astype(np.float32)
    d, lab = idx.query(q, 1)
    true_d, true_rows = exact_knn(x, q, 1)
    np.testing.assert_allclose(d, true_d, rtol=1e-5, atol=1e-6)
    assert (lab == true_rows).mean() > 0.999  # (the rest: ties at float32)
    plain_scans = int(idx.work[0])
    assert len(q) <= plain_scans < 0.25 * len(q) * 64, f"scanned {plain_scans} (query, list) pairs of {len(q) * 64}"
    within = d[:, 0] * rng.choice([0.5, 0.9, 1.0, 1.01, 2.0], size=len(q))
    d2, lab2 = idx.query(q, 1, within=within)
    must = d[:, 0] <= within
    np.testing.assert_array_equal(d2[must], d[must])
    np.testing.assert_array_equal(lab2[must], lab[must])
    assert (d2[~must, 0] > within[~must]).all()
    assert int(idx.work[0]) - plain_scans < plain_scans


def test_principal_coordinates_rule_out_most_vectors_and_no_answer() -> None:
    """A list's vectors are first bounded below by their distance in the leading principal coordinates;
    only those whose bound is below the best distance found get a full distance. On vectors whose variance
    lies in a few directions (as patch descriptors'), few full distances are computed, and every answer
    is still exact search's (a bound that is not a lower bound, or a cut too tight, fails this)."""
    rng = np.random.default_rng(5)
    mix = rng.normal(size=(8, 64))
    x = (rng.normal(size=(5000, 8)) @ mix + 0.05 * rng.normal(size=(5000, 64))).astype(np.float32)
    idx = IVFIndex(dim=64, exact_below=0, nlist=32, nprobe=32, seed=0)
    idx.add(np.arange(len(x)), x)
    q = (rng.normal(size=(500, 8)) @ mix + 0.05 * rng.normal(size=(500, 64))).astype(np.float32)
    true_d, true_rows = exact_knn(x, q, 1)
    idx.product_from = 10 ** 9  # every list bounded first
    d, lab = idx.query(q, 1)
    np.testing.assert_allclose(d, true_d, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(lab, true_rows)
    scans, bounded, fulls, products = idx.work.tolist()
    assert fulls < 0.1 * bounded and products == 0, f"{fulls} full distances for {bounded} vectors bounded"
    idx.work[:] = 0
    idx.product_from = 1  # every list by one matrix product: the same answers
    d2, lab2 = idx.query(q, 1)
    np.testing.assert_allclose(d2, true_d, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(lab2, true_rows)
    scans, bounded, fulls, products = idx.work.tolist()
    assert bounded == fulls == 0 and products > 0


def test_the_nearest_lists_are_chosen_as_a_stable_sort_would() -> None:
    """Of the lists whose bisector passes, the scan keeps a query's ``nprobe - 1`` nearest by one partition;
    the set must be a stable sort's first ``count``, ties (frequent: equal centroid distances) to the
    earlier list, so that the answers stay those of the scan of the ``nprobe`` nearest lists."""
    from streamad.index.ivf_scan import _nearest_first

    rng = np.random.default_rng(3)
    for trial in range(300):
        nlist = int(rng.integers(2, 60))
        dc2 = rng.integers(0, 6, nlist).astype(np.float32)  # few distinct values: many ties
        lists = np.sort(rng.choice(nlist, int(rng.integers(1, nlist + 1)), replace=False)).astype(np.int64)
        count = int(rng.integers(1, len(lists) + 1))
        want = lists[np.argsort(dc2[lists], kind="stable")[:count]]
        got = _nearest_first(lists, dc2, count)
        assert sorted(got.tolist()) == sorted(want.tolist()), (trial, dc2[lists], count)


def test_the_scans_matrix_products_run_on_one_blas_thread() -> None:
    """numba's matrix product calls scipy's own copy of BLAS; the scan sets it to one thread when it loads
    (an idle OpenBLAS pool spins beside numpy's and takes its cores), and leaves numpy's BLAS alone."""
    import threadpoolctl

    from streamad.index.ivf_scan import one_thread_scan_blas

    scipy_blas = one_thread_scan_blas()
    assert scipy_blas, "scipy ships its own BLAS in its wheels: the scan's products must find it"
    info = {lib["filepath"]: lib for lib in threadpoolctl.threadpool_info()}
    assert all(info[f]["num_threads"] == 1 for f in scipy_blas)
    numpy_blas = [f for f, lib in info.items() if lib["user_api"] == "blas" and "numpy" in f]
    assert numpy_blas and not set(numpy_blas) & set(scipy_blas)


def test_a_state_saved_before_the_principal_basis_loads_with_one_computed() -> None:
    """States saved before the compiled scan hold no ``basis``: the index computes one from its vectors
    (any orthonormal basis gives true lower bounds) and answers as exact search does; a basis of the wrong
    shape is still refused."""
    from streamad.errors import StateError

    rng, data, labels, ivf, exact = both(n=2500, seed=4)
    state = ivf.state_dict()
    old = {k: v for k, v in state.items() if k != "basis"}
    IVFIndex.check_state(old)
    back = IVFIndex.from_state(old)
    assert back._state.basis is not None and back._state.basis.shape == state["basis"].shape
    q = clustered(rng, 300)
    d, lab = back.query(q, 1)
    back.nprobe = back.nlist or len(back._state.centroids)  # every list probed: exact search's answers
    d_all, lab_all = back.query(q, 1)
    true_d, true_lab = exact.query(q, 1)
    np.testing.assert_allclose(d_all, true_d, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(lab_all, true_lab)
    np.testing.assert_array_equal(lab, ivf.query(q, 1)[1])  # the same answers as the index that saved it
    with pytest.raises(StateError, match="principal basis"):
        IVFIndex.check_state({**state, "basis": np.zeros((0, state["dim"]), np.float32)})


# -- changes written into the room after each list ------------------------------------------------------


def sliding(seed: int = 5, d: int = 16, per: int = 60, frames: int = 40, **kw):
    """An IVF index (every list probed: exact answers) and brute force fed a sliding window of ``frames``
    frames of ``per`` clustered vectors, one frame in and the oldest out per change."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, d)).astype(np.float32) * 4
    ivf, exact = IVFIndex(d, exact_below=300, seed=1, nprobe=10**6, **kw), ExactIndex(d)

    def frame(f: int) -> tuple[np.ndarray, np.ndarray]:
        r = np.random.default_rng(1000 + f)
        return (np.arange(per) + f * per,
                (centres[r.integers(0, 30, per)] + r.normal(size=(per, d))).astype(np.float32))
    return rng, frame, ivf, exact, frames


def test_a_sliding_window_of_changes_written_in_place_answers_as_brute_force_at_every_step() -> None:
    """Each change either writes into the lists' room (the arrays stay, nothing held is copied) or lays the
    index out afresh; after every one of 120 changes the answers (k = 1 compiled, k = 3 by products), the
    labels, vectors and sizes equal brute force's, and a saved and loaded index answers the same."""
    rng, frame, ivf, exact, window = sliding()
    in_place = fresh = 0
    q = np.random.default_rng(9).normal(size=(80, 16)).astype(np.float32) * 4
    for f in range(120):
        labels, vectors = frame(f)
        out = frame(f - window)[0] if f >= window else np.zeros(0, np.int64)
        before = ivf._state
        ivf.apply(labels, vectors, out)
        exact.apply(labels, vectors, out)
        if before.centroids is not None and ivf._state.centroids is before.centroids:
            shared = ivf._state.vectors is before.vectors
            in_place += shared
            fresh += not shared
            if shared:  # nothing a published version reads was written: its ends and mask are its own
                assert ivf._state.alive is not before.alive and (ivf._state.ends >= before.ends).all()
        assert len(ivf) == len(exact) and int(ivf.list_sizes().sum()) == len(exact)
        order_i, order_e = np.argsort(ivf.labels()), np.argsort(exact.labels())
        np.testing.assert_array_equal(ivf.labels()[order_i], exact.labels()[order_e])
        np.testing.assert_array_equal(ivf.vectors()[order_i], exact.vectors()[order_e])
        if f % 7 == 0 or f > 110:
            for k in (1, 3):
                di, li = ivf.query(q, k=k)
                de, le = exact.query(q, k=k)
                np.testing.assert_allclose(di, de, rtol=1e-5, atol=1e-5)
                assert (li[:, 0] == le[:, 0]).all()
    assert in_place > 50 and fresh >= 2, (in_place, fresh)  # both paths taken, the cheap one mostly
    state = ivf._state
    assert state.dead > 0 and len(state.labels) <= 1.25 * (state.size + state.dead) + 8 * len(state.ends) + 1
    back = IVFIndex.from_state(ivf.state_dict())
    assert back._state.dead == 0
    for a, b in zip(ivf.query(q, k=1), back.query(q, k=1)):
        np.testing.assert_array_equal(a, b)


def test_a_list_whose_room_runs_out_or_too_many_dead_rows_lay_the_index_out_afresh() -> None:
    from streamad.index.ivf import DEAD_SHARE

    rng = np.random.default_rng(2)
    d = 8
    ivf = IVFIndex(d, exact_below=0, nlist=4, nprobe=4, seed=0)
    ivf.add(np.arange(400), clustered(rng, 400, d, centres=4))
    state = ivf._state
    li = int(np.argmax(state.live))
    room = int(state.region[li + 1] - state.ends[li])
    near = state.centroids[li] + 0.01 * rng.normal(size=(room + 1, d)).astype(np.float32)
    ivf.add(np.arange(1000, 1000 + room), near[:room])          # fills the room exactly: written in place
    assert ivf._state.vectors is state.vectors and ivf._state.ends[li] == state.region[li + 1]
    ivf.add(np.array([5000]), near[room:])                        # one more: laid out afresh, with new room
    assert ivf._state.vectors is not state.vectors and ivf._state.dead == 0
    assert ivf._state.region[li + 1] - ivf._state.ends[li] >= 8
    state = ivf._state
    n = len(ivf)
    ivf.remove(ivf.labels()[: int(DEAD_SHARE * n) - 20])          # dead rows within the share: marked only
    assert ivf._state.vectors is state.vectors and ivf._state.dead > 0
    ivf.remove(ivf.labels()[:40])                                 # beyond it: dropped
    assert ivf._state.vectors is not state.vectors and ivf._state.dead == 0
    exact = ExactIndex(d)
    exact.add(ivf.labels(), ivf.vectors())
    q = clustered(rng, 50, d, centres=4)
    np.testing.assert_allclose(ivf.query(q)[0], exact.query(q)[0], rtol=1e-5, atol=1e-5)


def test_a_reader_never_sees_a_row_a_concurrent_change_is_writing() -> None:
    """The compiled k = 1 scan in one thread while another applies small changes (most written into the
    room after the lists, the rows a reader of an older version never reads): every answer is a label the
    index held at some time, at its true distance; never a row half-written, dead or unwritten (label -1,
    or a distance that is not the label's)."""
    import threading

    _, frame, ivf, _, window = sliding(per=40, frames=30)
    vectors_of: dict[int, np.ndarray] = {}
    for f in range(window):
        labels, vectors = frame(f)
        ivf.add(labels, vectors)
        vectors_of.update(zip(labels.tolist(), vectors))
    ivf.nprobe = 4
    stop, bad, answered = threading.Event(), [], [0]
    q = np.random.default_rng(3).normal(size=(200, 16)).astype(np.float32) * 4

    def reader() -> None:
        while not stop.is_set():
            d, lab = ivf.query(q)
            for dist, label, qi in zip(d[:, 0], lab[:, 0].tolist(), q):
                v = vectors_of.get(label)
                if v is None or abs(float(np.linalg.norm(v - qi)) - float(dist)) > 1e-3:
                    bad.append((label, float(dist)))
            answered[0] += 1

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        for f in range(window, window + 150):
            labels, vectors = frame(f)
            vectors_of.update(zip(labels.tolist(), vectors))  # known before any reader can see them
            ivf.apply(labels, vectors, frame(f - window)[0])
    finally:
        stop.set()
        t.join(10.0)
    assert not t.is_alive() and answered[0] >= 5, answered
    assert not bad, bad[:5]


def test_dead_rows_are_written_again_only_once_no_reader_holds_a_version_that_held_them() -> None:
    """Without readers a change's added vectors take the rows earlier changes freed (dead rows stay few,
    the lists' ends hardly move); while a reader holds a version, no row that version holds is written,
    however many changes come (its vectors and labels stay as they were), so dead rows pile up; once it
    lets go, its rows are taken again. Answers equal brute force's at the end."""
    _, frame, ivf, exact, window = sliding(per=40, frames=20, nlist=8)
    per = 40

    def step(f: int) -> tuple[_State, _State]:
        before = ivf._state
        labels, vectors = frame(f)
        ivf.apply(labels, vectors, frame(f - window)[0] if f >= window else np.zeros(0, np.int64))
        return before, ivf._state

    for f in range(window + 5):
        step(f)
    reused = 0
    for f in range(window + 5, window + 25):                    # no reader: freed rows are taken again
        before, after = step(f)
        if after.vectors is before.vectors:
            reused += int((after.ends - before.ends).sum()) < per
            assert after.dead <= 3 * per, after.dead
    assert reused >= 10, reused
    with ivf._reading() as held:
        rows = held.held_rows()
        vectors, labels = held.vectors[rows].copy(), held.labels[rows].copy()
        grew = []
        for f in range(window + 25, window + 35):
            before, after = step(f)
            np.testing.assert_array_equal(held.vectors[rows], vectors)   # not one row it holds written
            np.testing.assert_array_equal(held.labels[rows], labels)
            if after.vectors is before.vectors is held.vectors:
                grew.append(len(ivf._pending))
    assert grew and grew == list(range(grew[0], grew[0] + len(grew))), grew  # each change's freed rows wait
    for f in range(window + 35, window + 60):
        _, after = step(f)
    assert after.dead <= 3 * per and len(ivf._pending) <= 1, (after.dead, ivf._pending)  # let go: taken again
    for f in range(window + 60 - window, window + 60):
        exact.add(*frame(f))
    q = np.random.default_rng(8).normal(size=(60, 16)).astype(np.float32) * 4
    np.testing.assert_allclose(ivf.query(q)[0], exact.query(q)[0], rtol=1e-5, atol=1e-5)
