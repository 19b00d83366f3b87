"""Threshold (streaming quantile, judged before updating) and drift flags on the score stream."""

from __future__ import annotations

import numpy as np
import pytest

from streamad.config import DecisionConfig
from streamad.stream.decisions import ScoreDecisions


def test_no_threshold_and_no_alarm_during_warm_up():
    dec = ScoreDecisions(DecisionConfig(warmup=5, drift="none"))
    out = [dec.update(s) for s in (1.0, 100.0, 1.0, 1.0, 1.0)]
    assert all(d.threshold is None and not d.anomalous for d in out)
    assert dec.update(1.0).threshold is not None


def test_a_score_is_judged_against_the_threshold_before_it_joins_the_quantile():
    dec = ScoreDecisions(DecisionConfig(quantile=0.5, window=10, warmup=3, drift="none"))
    for s in (1.0, 2.0, 3.0):
        dec.update(s)
    d = dec.update(2.5)  # median of 1, 2, 3 is 2: 2.5 is above, even though it would raise the median
    assert d.threshold == pytest.approx(2.0) and d.anomalous
    assert dec.threshold == pytest.approx(2.25)  # now it counts
    assert not dec.update(2.25).anomalous  # equal to the threshold is not above it


def test_threshold_tracks_the_recent_window_only():
    dec = ScoreDecisions(DecisionConfig(quantile=0.9, window=20, warmup=5, drift="none"))
    for _ in range(50):
        dec.update(1.0)
    for _ in range(20):
        dec.update(10.0)
    assert dec.threshold == pytest.approx(10.0)  # the 1.0s have left the window


def test_peek_changes_nothing():
    dec = ScoreDecisions(DecisionConfig(warmup=2, drift="adwin"))
    dec.update(1.0)
    dec.update(2.0)
    before = (dec.threshold, dec.count)
    d = dec.peek(50.0)
    assert d.anomalous and not d.drift and (dec.threshold, dec.count) == before


@pytest.mark.parametrize("name, delta", [("adwin", 0.002), ("page_hinkley", 0.005), ("kswin", 0.005)])
def test_drift_is_flagged_after_a_shift_and_not_before(name, delta):
    rng = np.random.default_rng(0)
    dec = ScoreDecisions(DecisionConfig(warmup=10, drift=name, drift_delta=delta), seed=1)
    before = [dec.update(s).drift for s in 1.0 + 0.1 * rng.standard_normal(300)]
    after = [dec.update(s).drift for s in 3.0 + 0.1 * rng.standard_normal(300)]
    assert not any(before[:200])
    assert any(after[:100])
    assert dec.drifts >= 1


def test_no_drift_detector_never_flags():
    dec = ScoreDecisions(DecisionConfig(drift="none"))
    assert not any(dec.update(s).drift for s in [1.0] * 100 + [50.0] * 100)


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="DecisionConfig.quantile must be in \\(0, 1\\), got 1.5"):
        DecisionConfig(quantile=1.5)
    with pytest.raises(ValueError, match="DecisionConfig.drift must be one of"):
        DecisionConfig(drift="cusum")
    with pytest.raises(ValueError, match="DecisionConfig.warmup"):
        DecisionConfig(warmup=0)
    with pytest.raises(ValueError, match="finite"):
        ScoreDecisions().update(float("nan"))
