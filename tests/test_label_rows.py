"""The IVF index's label -> row map (streamad/index/label_rows.py) against a Python dict, and its kernels
running without the interpreter lock."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamad.index.label_rows import LabelRows, _build

labels_st = st.lists(st.integers(-2**40, 2**40), max_size=40, unique=True)


@settings(max_examples=150, deadline=None)
@given(start=labels_st, ops=st.lists(st.tuples(st.booleans(), labels_st), max_size=8), probe=labels_st)
def test_the_map_answers_as_a_dict_through_any_changes(start, ops, probe) -> None:
    rng = np.random.default_rng(len(start))
    rows = rng.integers(0, 10**6, len(start))
    m, ref = LabelRows(np.array(start, np.int64), rows), dict(zip(start, rows.tolist()))
    for remove, labels in ops:
        if remove:
            held = [v for v in labels if v in ref]
            m.remove(np.array(held, np.int64))
            for v in held:
                del ref[v]
        else:
            new_rows = rng.integers(0, 10**6, len(labels))
            m.put(np.array(labels, np.int64), new_rows)
            ref.update(zip(labels, new_rows.tolist()))
        assert len(m) == len(ref)
    asked = np.array(probe + list(ref), np.int64)
    assert m.contains(asked).tolist() == [v in ref for v in asked.tolist()]
    assert m.rows(np.array(list(ref), np.int64)).tolist() == list(ref.values())


def test_missing_labels_and_mismatched_lengths_are_refused() -> None:
    m = LabelRows(np.array([1, 2]), np.array([5, 6]))
    with pytest.raises(KeyError, match="label 3 is not held"):
        m.rows(np.array([1, 3]))
    with pytest.raises(KeyError, match="1 label"):
        m.remove(np.array([2, 9]))
    assert len(m) == 1 and m.contains(np.array([1, 2])).tolist() == [True, False]  # 2 went all the same
    with pytest.raises(ValueError, match="one row per label"):
        LabelRows(np.array([1, 2]), np.array([0]))
    with pytest.raises(ValueError, match="one row per label"):
        m.put(np.array([4]), np.array([0, 1]))
    assert len(LabelRows()) == 0


def test_a_rebuild_lets_other_threads_run() -> None:
    """The kernels release the interpreter lock: while another thread builds a map of two million labels,
    this thread keeps running; its longest stall is the lock's hand-over when the build returns (about two
    switch intervals), not the build. A Python dict's rebuild, one C call that holds the lock, stalls it for
    most of the build (tried: 15-23 ms of 26-34)."""
    labels = np.arange(2_000_000, dtype=np.int64) * 3
    _build(labels[:10], labels[:10])  # compiled before the race
    started, done = threading.Event(), threading.Event()

    def build() -> None:
        started.set()
        _build(labels, labels)
        done.set()

    worker = threading.Thread(target=build)
    worker.start()
    started.wait()
    stall, last = 0.0, time.perf_counter()
    t0 = last
    while not done.is_set():
        now = time.perf_counter()
        stall, last = max(stall, now - last), now
    took = time.perf_counter() - t0
    worker.join()
    assert took > 0.05, took  # long enough for a stall to show
    assert stall < 0.5 * took, (stall, took)
