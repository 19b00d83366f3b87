import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamad.evaluation.metrics import auroc, filter_precision_recall, pixel_auroc


def test_auroc_perfect_inverted_and_ties():
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) == 1.0
    assert auroc(np.array([0.9, 0.8, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    assert auroc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([0, 0, 1, 1])) == 0.5


@settings(max_examples=50, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=30))
def test_auroc_equals_pairwise_definition(pairs):
    scores = np.array([p[0] for p in pairs], float)
    labels = np.array([p[1] for p in pairs])
    if labels.all() or not labels.any():
        return
    pos, neg = scores[labels], scores[~labels]
    expected = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert auroc(scores, labels) == pytest.approx(expected)


def test_auroc_rejects_bad_input():
    with pytest.raises(ValueError, match="both positive and negative"):
        auroc(np.array([0.1, 0.2]), np.array([1, 1]))
    with pytest.raises(ValueError, match="differ in size"):
        auroc(np.array([0.1, 0.2]), np.array([1, 0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        auroc(np.array([np.nan, 0.2]), np.array([1, 0]))


def test_pixel_auroc_uses_every_pixel():
    heat = np.zeros((2, 4, 4), np.float32)
    masks = np.zeros((2, 4, 4), bool)
    masks[1, :2, :2] = True
    heat[1, :2, :2] = 1.0
    assert pixel_auroc(heat, masks) == 1.0
    heat[0, 0, 0] = 2.0  # one normal pixel above every anomalous one
    assert pixel_auroc(heat, masks) == pytest.approx(1 - 1 / 28)


def test_filter_precision_recall():
    pred = np.array([[True, True, False], [True, False, False]])
    true = np.array([[True, False, True], [True, True, True]])
    precision, recall = filter_precision_recall(pred, true)
    assert precision == pytest.approx(2 / 3) and recall == pytest.approx(2 / 5)
