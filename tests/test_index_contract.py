"""One conformance suite for every nominal index kind, checked against brute force (docs/DESIGN.md section 4).

Every kind of :data:`streamad.index.INDEX_CLASSES` (exact, HNSW, IVF, and any added later: the
registry is the one list) runs every check of :data:`CHECKS`, each a plain function that builds its
indexes through a factory, changes them, and compares every answer with a numpy brute-force oracle
over the vectors the index should hold. The checks are those of the contract
(:class:`streamad.index.base.BaseIndex`):

- queries: shapes and dtypes, distances sorted and the true L2 distance to the returned labels,
  returned labels held; recall@1 = 1 and the oracle's distances for exact kinds, recall@1 >=
  :data:`APPROX_RECALL_AT_1` and never closer than the truth for approximate ones (on a clustered
  random set, through the approximate structure: ``exact_below`` is far below the set's size and the
  searches narrower than the defaults, :data:`SUITE_CONFIG`); any ``k`` up to ``len`` is answered;
- ``apply`` with removals and additions: a removed label is never returned, a label comes back with
  a new vector, a held label is replaced only when asked, one change may remove and re-add a label;
- an unknown label to remove raises ``KeyError`` and changes nothing;
- an empty index refuses queries (``ValueError``), bad shapes and values raise ``ValueError`` naming
  them, and change nothing;
- ``len``, ``labels()``, ``vectors()`` and ``in`` after a random sequence of changes;
- ``state_dict`` -> ``check_index_state`` -> ``index_from_state`` answers exactly as the original,
  before and after the same further change; a state with a missing or mistyped array is refused;
- a reader querying while a writer applies changes sees whole versions only;
- ``query(..., within=)``: wherever the answer is within the bound it is the unbounded query's answer
  or a nearer held vector, elsewhere it is farther than the bound (or ``inf`` with label -1); bad
  bounds raise ``ValueError``;

The suite is shown to fail on deliberately wrong indexes (:func:`test_the_suite_catches_a_wrong_index`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from streamad.config import IndexConfig
from streamad.errors import StateError
from streamad.index import (INDEX_CLASSES, BaseIndex, ExactIndex, check_index_state, index_class, index_from_state,
                            make_index)

#: The kinds whose every answer is exact (the others are approximate and held to the recall bound).
EXACT_KINDS = {"exact"}
#: The recall@1 against brute force an approximate kind must reach on the clustered set of :func:`clustered`.
APPROX_RECALL_AT_1 = 0.95
#: The size below which the indexes under test search exactly: far below the sets the checks build, so
#: approximate kinds answer through their lists or graph.
EXACT_BELOW = 200
#: The indexes under test: the library's defaults but for ``exact_below`` and narrower searches (IVF: 4
#: lists probed of about 55; HNSW: ef 32), so that approximate kinds do approximate.
SUITE_CONFIG = {"nprobe": 4, "ef": 32}

DIM = 16
Factory = Callable[..., BaseIndex]  # (dim, exact_below=EXACT_BELOW) -> a new, empty index


def factory(kind: str) -> Factory:
    """New indexes of ``kind``, built as the library builds them (:func:`make_index`)."""
    def make(dim: int, exact_below: int = EXACT_BELOW) -> BaseIndex:
        return make_index(dim, IndexConfig(kind=kind, exact_below=exact_below, **SUITE_CONFIG), seed=1)
    return make


def clustered(rng: np.random.Generator, n: int, d: int = DIM, centres: int = 40) -> np.ndarray:
    c = np.random.default_rng(1234).normal(size=(centres, d)) * 1.5  # overlapping; the same for data and queries
    return (c[rng.integers(0, centres, n)] + rng.normal(size=(n, d))).astype(np.float32)


class Oracle:
    """What the index should hold (label -> vector), and brute-force answers over it (float64)."""

    def __init__(self) -> None:
        self.held: dict[int, np.ndarray] = {}

    def apply(self, added: np.ndarray, vectors: np.ndarray, removed: np.ndarray) -> None:
        for lab in np.asarray(removed).tolist():
            del self.held[lab]
        for lab, v in zip(np.asarray(added).tolist(), np.asarray(vectors, np.float32)):
            self.held[lab] = v

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        labels = np.fromiter(self.held, np.int64, len(self.held))
        return labels, np.stack([self.held[lab] for lab in labels.tolist()])

    def query(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        labels, vectors = self.arrays()
        d = np.sqrt(((q[:, None, :].astype(np.float64) - vectors[None].astype(np.float64)) ** 2).sum(-1))
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(d, order, axis=1), labels[order]

    def distance(self, q: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The true L2 distance from each query to the vector of each of its returned labels."""
        v = np.stack([np.stack([self.held[lab] for lab in row]) for row in labels.tolist()])
        return np.sqrt(((v.astype(np.float64) - q[:, None, :].astype(np.float64)) ** 2).sum(-1))


def both(make: Factory, n: int = 3000, seed: int = 0, parts: int = 6) -> tuple[np.random.Generator, BaseIndex, Oracle]:
    """An index and its oracle holding ``n`` clustered vectors under arbitrary labels, added in ``parts`` changes."""
    rng = np.random.default_rng(seed)
    data, labels = clustered(rng, n), rng.permutation(10**6)[:n]
    idx, oracle = make(DIM), Oracle()
    for part in np.array_split(np.arange(n), parts):
        idx.apply(labels[part], data[part], np.zeros(0, np.int64))
        oracle.apply(labels[part], data[part], np.zeros(0, np.int64))
    return rng, idx, oracle


def assert_answers(idx: BaseIndex, oracle: Oracle, q: np.ndarray, k: int, exact: bool) -> None:
    """``idx.query(q, k)`` against brute force: shapes, dtypes, true L2, order, recall or exactness."""
    dist, lab = idx.query(q, k)
    assert dist.shape == lab.shape == (len(q), k), (dist.shape, lab.shape)
    assert dist.dtype == np.float32 and lab.dtype == np.int64, (dist.dtype, lab.dtype)
    assert np.isin(lab, list(oracle.held)).all(), "returned a label the index does not hold"
    assert all(len(set(row)) == k for row in lab.tolist()), "returned a label twice for one query"
    assert (np.diff(dist, axis=1) >= 0).all(), "distances not sorted nearest first"
    true = oracle.distance(q, lab)
    np.testing.assert_allclose(dist, true, rtol=1e-4, atol=1e-4, err_msg="distances are not the true L2 "
                               "distances to the returned labels")
    want_d, want_l = oracle.query(q, k)
    recall = float((lab[:, 0] == want_l[:, 0]).mean())
    if exact:
        assert recall == 1.0, f"recall@1 {recall} for an exact index"
        np.testing.assert_allclose(dist, want_d, rtol=1e-5, atol=1e-5)
    else:
        assert recall >= APPROX_RECALL_AT_1, f"recall@1 {recall} < {APPROX_RECALL_AT_1}"
        assert (dist >= want_d - 1e-4).all(), "closer than the true nearest neighbours"


def unchanged(idx: BaseIndex, before: tuple[int, set[int], tuple[np.ndarray, np.ndarray]], q: np.ndarray) -> None:
    n, labels, answers = before
    assert len(idx) == n and set(idx.labels().tolist()) == labels
    for a, b in zip(idx.query(q, 3), answers):
        np.testing.assert_array_equal(a, b)


def snapshot(idx: BaseIndex, q: np.ndarray) -> tuple[int, set[int], tuple[np.ndarray, np.ndarray]]:
    return len(idx), set(idx.labels().tolist()), idx.query(q, 3)


# ---------------------------------------------------------------------------------------------- the checks
def check_builds_as_its_kind(make: Factory, kind: str, exact: bool) -> None:
    """The registry, ``make_index`` and the instance agree on the kind; ``dim`` is the one asked for."""
    idx = make(7)
    assert isinstance(idx, BaseIndex) and isinstance(idx, index_class(kind)) and idx.kind == kind
    assert idx.dim == 7 and len(idx) == 0 and idx.labels().shape == (0,) and 3 not in idx


def check_queries_match_brute_force(make: Factory, kind: str, exact: bool) -> None:
    rng, idx, oracle = both(make)
    q = clustered(rng, 300)
    for k in (1, 5):
        assert_answers(idx, oracle, q, k, exact)
    labels, vectors = oracle.arrays()
    d, lab = idx.query(vectors[:200], 1)  # a held vector is its own nearest neighbour, at distance 0
    assert (lab[:, 0] == labels[:200]).mean() >= (1.0 if exact else APPROX_RECALL_AT_1)
    d, lab = idx.query(vectors[:3].astype(np.float64).tolist(), 2)  # any array-like of numbers
    assert lab.shape == (3, 2)


def check_every_k_up_to_len(make: Factory, kind: str, exact: bool) -> None:
    """Any ``k`` in ``[1, len]`` is answered with ``k`` distinct held labels at true L2 distances, even where
    the approximate structure reaches fewer (a graph with many deleted elements, short probed lists)."""
    rng, idx, oracle = both(make, n=900, parts=3)
    held = np.fromiter(oracle.held, np.int64)
    gone = held[np.arange(len(held)) % 3 != 0]
    idx.remove(gone)  # 300 left, 600 deleted
    oracle.apply(np.zeros(0, np.int64), np.zeros((0, DIM), np.float32), gone)
    q = clustered(rng, 20)
    for k in (100, 299, 300):
        dist, lab = idx.query(q, k)
        assert np.isfinite(dist).all(), f"k={k}: infinite distances"
        assert np.isin(lab, list(oracle.held)).all() and all(len(set(row)) == k for row in lab.tolist()), \
            f"k={k}: labels not held, or one returned twice"
        np.testing.assert_allclose(dist, oracle.distance(q, lab), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dist, oracle.query(q, 300)[0], rtol=1e-5, atol=1e-5)  # k = len: all of them


def check_removals_and_additions(make: Factory, kind: str, exact: bool) -> None:
    rng, idx, oracle = both(make)
    labels, vectors = oracle.arrays()
    gone, moved = labels[::3], labels[1:600:3]
    fresh = np.arange(2 * 10**6, 2 * 10**6 + 200)
    fresh_vectors = clustered(rng, 200)
    idx.apply(fresh, fresh_vectors, gone)  # one change: additions and removals
    oracle.apply(fresh, fresh_vectors, gone)
    _, lab = idx.query(vectors[::3], 5)  # at the removed vectors' own places
    assert not np.isin(lab, gone).any(), "a removed label was returned"
    assert len(idx) == len(oracle.held) and gone[0] not in idx and fresh[0] in idx
    _, lab = idx.query(fresh_vectors, 1)
    assert (lab[:, 0] == fresh).mean() >= (1.0 if exact else APPROX_RECALL_AT_1)
    assert_answers(idx, oracle, clustered(rng, 200), 3, exact)
    back = gone[:100]  # removed labels come back, with new vectors
    back_vectors = vectors[::3][:100] + 50.0
    idx.apply(back, back_vectors, np.zeros(0, np.int64))
    oracle.apply(back, back_vectors, np.zeros(0, np.int64))
    d, lab = idx.query(back_vectors, 1)
    assert (lab[:, 0] == back).mean() >= (1.0 if exact else APPROX_RECALL_AT_1)
    new_moved = clustered(rng, len(moved))
    with pytest.raises(ValueError, match="held already"):  # a held label is replaced only when asked
        idx.apply(moved, new_moved, np.zeros(0, np.int64))
    idx.apply(moved, new_moved, np.zeros(0, np.int64), replace=True)
    oracle.apply(moved, new_moved, np.zeros(0, np.int64))
    again = labels[2:40:3]  # removed and re-added in the same change: no replace needed
    idx.apply(again, vectors[2:40:3] - 50.0, again)
    oracle.apply(again, vectors[2:40:3] - 50.0, again)
    assert len(idx) == len(oracle.held) and set(idx.labels().tolist()) == set(oracle.held)
    assert_answers(idx, oracle, np.concatenate([new_moved, vectors[2:40:3] - 50.0, clustered(rng, 200)]), 2,
                   exact)
    idx.add(fresh[:5], fresh_vectors[:5] + 1.0)  # add: replace; remove: the change's other half
    idx.remove(fresh[5:10])
    oracle.apply(fresh[:5], fresh_vectors[:5] + 1.0, fresh[5:10])
    assert len(idx) == len(oracle.held) and set(idx.labels().tolist()) == set(oracle.held)


def check_unknown_removal_changes_nothing(make: Factory, kind: str, exact: bool) -> None:
    rng, idx, oracle = both(make, n=800)
    held = np.fromiter(oracle.held, np.int64)
    q = clustered(rng, 50)
    before = snapshot(idx, q)
    with pytest.raises(KeyError, match="not in the index"):
        idx.apply(np.array([-5]), np.zeros((1, DIM), np.float32), np.array([held[0], 123456789]))
    unchanged(idx, before, q)
    assert held[0] in idx and -5 not in idx
    with pytest.raises(KeyError, match="not in the index"):
        idx.remove([123456789])
    unchanged(idx, before, q)


def check_empty_index_refuses_queries(make: Factory, kind: str, exact: bool) -> None:
    idx = make(4)
    with pytest.raises(ValueError, match="empty"):
        idx.query(np.zeros((1, 4), np.float32))
    idx.add([1, 2], np.eye(2, 4))
    idx.remove([1, 2])  # emptied again
    assert len(idx) == 0
    with pytest.raises(ValueError, match="empty"):
        idx.query(np.zeros((1, 4), np.float32))


def check_bad_input_is_refused_and_changes_nothing(make: Factory, kind: str, exact: bool) -> None:
    rng, idx, oracle = both(make, n=600)
    q = clustered(rng, 20)
    before = snapshot(idx, q)
    none = np.zeros(0, np.int64)
    refusals = [
        (lambda: idx.apply([1, 2], np.zeros((2, DIM - 1)), none), rf"shape \(2, {DIM}\).*got \(2, {DIM - 1}\)"),
        (lambda: idx.apply([1, 2], np.zeros((3, DIM)), none), rf"shape \(2, {DIM}\).*got \(3, {DIM}\)"),
        (lambda: idx.apply([1], np.zeros(DIM), none), rf"shape \(1, {DIM}\).*got \({DIM},\)"),
        (lambda: idx.apply(np.array([[1]]), np.zeros((1, DIM)), none), r"1-d array of integers, got shape \(1, 1\)"),
        (lambda: idx.apply(np.array([1.5]), np.zeros((1, DIM)), none), r"integers.*float64"),
        (lambda: idx.apply([], np.zeros((0, DIM)), np.array([[1]])), r"1-d array of integers"),
        (lambda: idx.apply([5, 5], np.zeros((2, DIM)), none), "distinct"),
        (lambda: idx.apply([5], np.full((1, DIM), np.nan), none), "NaN"),
        (lambda: idx.apply([5], np.full((1, DIM), np.inf), none), "infinite"),
        (lambda: idx.apply([5], np.array([["a"] * DIM]), none), "numbers"),
        (lambda: idx.query(np.zeros((1, DIM - 1))), rf"shape \(m, {DIM}\), got \(1, {DIM - 1}\)"),
        (lambda: idx.query(np.zeros(DIM)), rf"shape \(m, {DIM}\), got \({DIM},\)"),
        (lambda: idx.query(np.zeros((1, DIM)), k=0), r"k must be an int in \[1, 600\]"),
        (lambda: idx.query(np.zeros((1, DIM)), k=601), r"k must be an int in \[1, 600\]"),
        (lambda: idx.query(np.zeros((1, DIM)), k=1.0), r"k must be an int"),
    ]
    for call, message in refusals:
        with pytest.raises(ValueError, match=message):
            call()
    unchanged(idx, before, q)


def check_len_labels_vectors_after_changes(make: Factory, kind: str, exact: bool) -> None:
    rng = np.random.default_rng(5)
    idx, oracle = make(DIM), Oracle()
    next_label = 0
    for step in range(12):  # a sliding window: new labels in, some held ones out, now and then one back
        held = np.fromiter(oracle.held, np.int64, len(oracle.held))
        out = rng.choice(held, size=min(len(held), int(rng.integers(0, 80))), replace=False) if len(held) else held
        new = np.arange(next_label, next_label + int(rng.integers(1, 120)))
        next_label += len(new)
        if step % 4 == 3 and len(out):
            new = np.concatenate([new, out[:3]])  # removed and added in one change
        vectors = clustered(rng, len(new))
        idx.apply(new, vectors, out)
        oracle.apply(new, vectors, out)
        assert len(idx) == len(oracle.held)
        labels, held_vectors = idx.labels(), idx.vectors()
        assert labels.dtype == np.int64 and labels.shape == (len(idx),)
        assert held_vectors.dtype == np.float32 and held_vectors.shape == (len(idx), DIM)
        assert set(labels.tolist()) == set(oracle.held)
        want = np.stack([oracle.held[lab] for lab in labels.tolist()])
        np.testing.assert_array_equal(held_vectors, want, err_msg="vectors() not in the order of labels()")
        assert all(lab in idx for lab in labels[:20].tolist()) and next_label not in idx
    assert_answers(idx, oracle, clustered(rng, 100), 2, exact)


def check_state_round_trip(make: Factory, kind: str, exact: bool) -> None:
    rng, idx, oracle = both(make, n=1500)
    held = np.fromiter(oracle.held, np.int64)
    idx.remove(held[::4])  # free slots, deleted graph elements
    state = idx.state_dict()
    assert state["kind"] == kind
    assert check_index_state(state) is type(idx)
    back = index_from_state(state)
    assert type(back) is type(idx) and back.dim == idx.dim and len(back) == len(idx)
    assert set(back.labels().tolist()) == set(idx.labels().tolist())
    q = clustered(rng, 200)
    for a, b in zip(idx.query(q, 3), back.query(q, 3)):
        np.testing.assert_array_equal(a, b)
    more, more_vectors = np.arange(-300, 0), clustered(rng, 300)  # the same change to both: still the same
    for index in (idx, back):
        index.apply(more, more_vectors, held[1:200:4])
    for a, b in zip(idx.query(q, 3), back.query(q, 3)):
        np.testing.assert_array_equal(a, b)
    state = idx.state_dict()
    optional = getattr(type(idx), "STATE_OPTIONAL", frozenset())  # older states lack these: rebuilt on load
    for key in [key for key, value in state.items() if isinstance(value, np.ndarray)]:
        missing = {k: v for k, v in state.items() if k != key}
        if key in optional:
            check_index_state(missing)
            rebuilt = index_from_state(missing)
            for a, b in zip(rebuilt.query(q, 3), idx.query(q, 3)):
                np.testing.assert_array_equal(a, b)
        else:
            with pytest.raises(StateError):
                check_index_state(missing)
        with pytest.raises(StateError):
            check_index_state({**state, key: state[key].astype(np.complex64)})
    with pytest.raises(StateError, match="unknown kind"):
        check_index_state({**state, "kind": "annoy"})


def check_readers_see_whole_versions(make: Factory, kind: str, exact: bool) -> None:
    """A writer replaces a whole 'frame' of vectors with the next one in each change; a concurrent reader
    asks for as many neighbours as a frame holds and notes which frames its answer came from (or the error
    it got): every answer must come from one frame, before or after a change."""
    seen, errors = watch_changes(make)
    assert not errors, errors[:3]
    assert len(seen) >= 10, f"the reader answered only {len(seen)} times: the check saw too little"
    mixed = [s for s in seen if len(s) != 1]
    assert not mixed, f"{len(mixed)} answers mixed frames, e.g. {mixed[:3]}"


def watch_changes(make: Factory, per: int = 50, changes: int = 40,
                  timeout_s: float = 10.0) -> tuple[list[set[int]], list[BaseException]]:
    d = 8
    base = np.random.default_rng(4).normal(size=(per, d)).astype(np.float32)
    idx = make(d, exact_below=0)  # through the lists / graph from the start

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
            except (ValueError, KeyError, IndexError) as exc:
                errors.append(exc)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    deadline = time.monotonic() + timeout_s
    try:
        for f in range(1, changes):
            idx.apply(np.arange(per) + f * per, frame(f), np.arange(per) + (f - 1) * per)
            time.sleep(0.002)
            if time.monotonic() > deadline:
                break
    finally:
        stop.set()
        t.join(timeout_s)
    return seen, errors


def check_within_keeps_every_answer_it_must(make: Factory, kind: str, exact: bool) -> None:
    """``within`` may only drop answers farther than the bound: the others are the unbounded answers."""
    rng, idx, oracle = both(make)
    q = clustered(rng, 400)
    d, lab = idx.query(q, 1)
    scale = rng.choice([0.0, 0.5, 0.999, 1.0, 1.5, np.inf], size=len(q))
    within = np.where(np.isinf(scale), np.inf, d[:, 0] * np.where(np.isinf(scale), 1.0, scale))
    within[:5] = 0.0
    d2, lab2 = idx.query(q, 1, within=within)
    assert d2.shape == lab2.shape == (len(q), 1) and d2.dtype == np.float32 and lab2.dtype == np.int64
    must = d[:, 0] <= within
    assert must.sum() > 100 and (~must).sum() > 50  # both sides are tested
    assert_same_or_nearer(idx, oracle, q[must], (d[must], lab[must]), (d2[must], lab2[must]), exact)
    rest_d, rest_l = d2[~must, 0], lab2[~must, 0]
    assert (rest_d > within[~must] * (1 - 1e-6)).all(), "an answer dropped for being beyond the bound is nearer"
    found = rest_l >= 0
    assert np.isinf(rest_d[~found]).all() and np.isin(rest_l[found], list(oracle.held)).all()
    np.testing.assert_allclose(rest_d[found], oracle.distance(q[~must][found], rest_l[found][:, None])[:, 0],
                               rtol=1e-4, atol=1e-4)
    for bad in (within[:-1], np.full(len(q), np.nan), np.full(len(q), -1.0)):
        with pytest.raises(ValueError, match="within"):
            idx.query(q, 1, within=bad)
    with pytest.raises(ValueError, match="k=1"):
        idx.query(q, 2, within=within)


def assert_same_or_nearer(idx: BaseIndex, oracle: Oracle, q: np.ndarray, plain: tuple[np.ndarray, np.ndarray],
                          hinted: tuple[np.ndarray, np.ndarray], exact: bool) -> None:
    """A hinted answer is the plain one or a nearer held vector, at its true distance; an exact index's
    is the plain one; nearly all are the plain one (the hint only saves work)."""
    (d, lab), (d2, lab2) = plain, hinted
    assert d2.shape == d.shape and lab2.dtype == np.int64 and np.isin(lab2, list(oracle.held)).all()
    np.testing.assert_allclose(d2, oracle.distance(q, lab2), rtol=1e-4, atol=1e-4,
                               err_msg="a hinted answer's distance is not the true distance to its label")
    assert (d2 <= d + 1e-6).all(), "a hint made an answer worse"
    same = float((lab2 == lab).mean())
    assert same == 1.0 if exact else same >= 0.99, f"only {same:.3f} of the hinted answers are the plain ones"


CHECKS: list[Callable[[Factory, str, bool], None]] = [
    check_builds_as_its_kind, check_queries_match_brute_force, check_every_k_up_to_len, check_removals_and_additions,
    check_unknown_removal_changes_nothing, check_empty_index_refuses_queries,
    check_bad_input_is_refused_and_changes_nothing, check_len_labels_vectors_after_changes, check_state_round_trip,
    check_readers_see_whole_versions, check_within_keeps_every_answer_it_must]


def run_suite(make: Factory, kind: str, exact: bool) -> dict[str, str]:
    """Every check on ``make``'s indexes: {name of a failed check: why} (empty: the index conforms)."""
    failed = {}
    for check in CHECKS:
        try:
            check(make, kind, exact)
        except (Exception, pytest.fail.Exception) as exc:  # noqa: BLE001 - any failure is a finding
            failed[check.__name__] = f"{type(exc).__name__}: {exc}"[:300]
    return failed


# ---------------------------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("kind", sorted(INDEX_CLASSES))
def test_every_index_kind_conforms(kind: str, check: Callable[[Factory, str, bool], None]) -> None:
    check(factory(kind), kind, kind in EXACT_KINDS)


def test_every_kind_is_in_the_suite_and_known_to_the_config() -> None:
    """A kind added to the registry is run by the suite, and IndexConfig accepts it: one list."""
    from streamad.config import INDEX_KINDS

    assert sorted(INDEX_CLASSES) == sorted(INDEX_KINDS) and set(EXACT_KINDS) <= set(INDEX_CLASSES)
    for kind, cls in INDEX_CLASSES.items():
        assert cls.kind == kind and issubclass(cls, BaseIndex)
    with pytest.raises(ValueError, match="IndexConfig.kind"):
        IndexConfig(kind="faiss")


class DropsRemovals(ExactIndex):
    """Wrong: ignores the labels it is told to remove."""

    kind = "drops-removals"

    def apply(self, added, vectors, removed, replace=False):  # type: ignore[no-untyped-def]
        super().apply(added, vectors, np.zeros(0, np.int64), replace=True)


class SquaredDistances(ExactIndex):
    """Wrong: returns squared distances (hnswlib's ``l2`` space does, which is why HNSWIndex takes the root)."""

    kind = "squared-distances"

    def query(self, vectors, k=1, within=None):  # type: ignore[no-untyped-def]
        dist, labels = super().query(vectors, k, within)
        return dist ** 2, labels


class DropsWithinAnswers(ExactIndex):
    """Wrong: with a bound, drops every answer (as if nothing were nearer than it)."""

    kind = "drops-within-answers"

    def query(self, vectors, k=1, within=None):  # type: ignore[no-untyped-def]
        dist, labels = super().query(vectors, k, within)
        if within is not None:
            dist, labels = np.full_like(dist, np.inf), np.full_like(labels, -1)
        return dist, labels


class TwoStepChanges(ExactIndex):
    """Wrong: applies a change as a removal, then (after a moment) an addition: readers see the half."""

    kind = "two-step-changes"

    def apply(self, added, vectors, removed, replace=False):  # type: ignore[no-untyped-def]
        super().apply(np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32), removed)
        time.sleep(0.003)
        super().apply(added, vectors, np.zeros(0, np.int64), replace=replace)


@pytest.mark.parametrize("wrong, caught_by", [
    (DropsRemovals, {"check_removals_and_additions", "check_len_labels_vectors_after_changes"}),
    (SquaredDistances, {"check_queries_match_brute_force"}),
    (TwoStepChanges, {"check_readers_see_whole_versions"}),
    (DropsWithinAnswers, {"check_within_keeps_every_answer_it_must"}),
], ids=lambda v: v.__name__ if isinstance(v, type) else "")
def test_the_suite_catches_a_wrong_index(wrong: type[ExactIndex], caught_by: set[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite run on a deliberately wrong index (registered for this test only) fails, where it should."""
    monkeypatch.setitem(INDEX_CLASSES, wrong.kind, wrong)

    def make(dim: int, exact_below: int = EXACT_BELOW) -> BaseIndex:
        return wrong(dim)

    failed = run_suite(make, wrong.kind, exact=True)
    assert caught_by <= set(failed), f"the suite missed {wrong.__name__}: failed only {failed}"
    assert "check_builds_as_its_kind" not in failed  # the harness itself works: a check can pass
