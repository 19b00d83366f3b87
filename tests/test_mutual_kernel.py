"""The compiled mutual-pairs pass (``streamad.core.mutual_kernel``) equals the numpy path it replaces bit
for bit: the squared-distance matrix, ``argmin`` down the columns and along the rows (ties to the lowest
index), square roots of the chosen entries; on grids with many ties, duplicated patches, both float
dtypes, one-row and one-column shapes, and a NaN (which takes the numpy path)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamad.core.association import mutual_pairs, mutual_pairs_from_squared, squared_distances
from streamad.core.mutual_kernel import mutual_from_products


def reference(a: np.ndarray, b: np.ndarray):
    return mutual_pairs_from_squared(squared_distances(a, b))


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    want, got = reference(a, b), mutual_pairs(a, b)
    assert got.seed_patch.dtype == want.seed_patch.dtype and got.distance.dtype == want.distance.dtype
    np.testing.assert_array_equal(got.seed_patch, want.seed_patch)
    np.testing.assert_array_equal(got.distance, want.distance)   # bit for bit, inf where no pair


@settings(max_examples=300, deadline=None, derandomize=True)
@given(m=st.integers(1, 12), n=st.integers(1, 12), d=st.integers(1, 4), levels=st.integers(1, 4),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2 ** 31 - 1),
       copies=st.integers(0, 3))
def test_the_compiled_pass_equals_the_numpy_path_on_grids_with_ties(m, n, d, levels, dtype, seed, copies) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, levels, size=(m, d)).astype(dtype)   # few levels: equal distances everywhere
    b = rng.integers(0, levels, size=(n, d)).astype(dtype)
    for _ in range(copies):                                   # patches shared by both frames
        b[rng.integers(n)] = a[rng.integers(m)]
    assert_same(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_compiled_pass_equals_the_numpy_path_on_descriptor_sized_frames(dtype) -> None:
    rng = np.random.default_rng(3)
    places = rng.normal(size=(784, 152)) * 2.0
    a = (places + rng.normal(scale=0.5, size=places.shape)).astype(dtype)
    b = (places[rng.permutation(784)] + rng.normal(scale=0.5, size=places.shape)).astype(dtype)
    b[:50] = a[100:150]                                       # exact matches: distance 0 after the clip
    assert_same(a, b)
    assert (mutual_pairs(a, b).seed_patch >= 0).sum() > 100


def test_a_nan_takes_the_numpy_path_and_is_reported() -> None:
    a = np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]], np.float32)
    b = np.array([[1.0, 1.0], [np.nan, 0.0], [0.0, 0.1]], np.float32)
    _, _, nan = mutual_from_products(a @ b.T, (a * a).sum(1), (b * b).sum(1))
    assert nan
    assert_same(a, b)                                         # argmin's NaN rule, as before


def test_empty_frames_give_no_pairs() -> None:
    a, b = np.zeros((0, 3), np.float32), np.ones((4, 3), np.float32)
    got = mutual_pairs(a, b)
    assert got.seed_patch.tolist() == [-1] * 4 and np.isinf(got.distance).all()


def test_the_pairs_of_a_stack_shared_among_threads_equal_one_threads_and_the_threads_stop() -> None:
    """Two association threads give the pairs of one thread bit for bit (each pair computed as alone); they
    run only during the call (joined before it returns: no thread outlives it)."""
    from streamad.core import association
    from streamad.core.association import mutual_pairs_stack, set_workers

    def workers_alive() -> list[str]:                             # the association threads running now
        return [t.name for t in threading.enumerate() if t.name.startswith("streamad-associate") and t.is_alive()]

    rng = np.random.default_rng(7)
    seeds = rng.integers(0, 3, size=(6, 60, 5)).astype(np.float32)    # ties in every pair
    frame = rng.integers(0, 3, size=(60, 5)).astype(np.float32)
    before = association.workers()
    try:
        set_workers(1)
        alone = mutual_pairs_stack(seeds, frame)
        assert workers_alive() == []
        set_workers(2)
        seen: list[list[str]] = []
        real = association.mutual_pairs

        def spy(a, b):                                            # which threads compute the pairs
            seen.append(workers_alive())
            return real(a, b)
        association.mutual_pairs = spy
        try:
            shared = mutual_pairs_stack(seeds, frame)
        finally:
            association.mutual_pairs = real
        assert max(len(s) for s in seen) >= 1 and all(len(s) <= 2 for s in seen), seen
        for a, b in zip(alone, shared):
            np.testing.assert_array_equal(a, b)
        assert workers_alive() == []                              # joined before the call returned
        with pytest.raises(ValueError, match="association workers must be an int >= 1, got 0"):
            set_workers(0)
    finally:
        set_workers(before)


def test_the_thread_budget_sets_the_association_threads() -> None:
    from streamad.config import ThreadConfig
    from streamad.core.association import set_workers, workers
    from streamad.stream.threads import apply_threads

    try:
        assert apply_threads(ThreadConfig(), background=False, cores=2)["associate"] == 2 == workers()
        assert apply_threads(ThreadConfig(), background=True, cores=2)["associate"] == 1 == workers()
        assert apply_threads(ThreadConfig(associate=3), background=True, cores=2)["associate"] == 3
    finally:
        apply_threads(ThreadConfig(), background=False)           # as the bench leaves it
        set_workers(1)
