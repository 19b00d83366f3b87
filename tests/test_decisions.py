"""Decisions on the score stream: the former rule (streaming quantile of every score, judged before updating),
the trusted rule (conformal threshold and p-values over trusted scores only, honest warm-up), drift flags
and what they say changed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streamad.config import DecisionConfig
from streamad.stream.decisions import ScoreDecisions


def test_no_threshold_and_no_alarm_during_warm_up():
    dec = ScoreDecisions(DecisionConfig(rule="quantile", warmup=5, drift="none"))
    out = [dec.update(s) for s in (1.0, 100.0, 1.0, 1.0, 1.0)]
    assert all(d.threshold is None and not d.anomalous for d in out)
    assert dec.update(1.0).threshold is not None


def test_a_score_is_judged_against_the_threshold_before_it_joins_the_quantile():
    dec = ScoreDecisions(DecisionConfig(rule="quantile", quantile=0.5, calibration_size=10, warmup=3, drift="none"))
    for s in (1.0, 2.0, 3.0):
        dec.update(s)
    d = dec.update(2.5)  # median of 1, 2, 3 is 2: 2.5 is above, even though it would raise the median
    assert d.threshold == pytest.approx(2.0) and d.anomalous
    assert dec.threshold == pytest.approx(2.25)  # now it counts
    assert not dec.update(2.25).anomalous  # equal to the threshold is not above it


def test_threshold_tracks_the_recent_window_only():
    dec = ScoreDecisions(DecisionConfig(rule="quantile", quantile=0.9, calibration_size=20, warmup=5, drift="none"))
    for _ in range(50):
        dec.update(1.0)
    for _ in range(20):
        dec.update(10.0)
    assert dec.threshold == pytest.approx(10.0)  # the 1.0s have left the window


def test_peek_changes_nothing():
    dec = ScoreDecisions(DecisionConfig(rule="quantile", warmup=2, drift="adwin"))
    dec.update(1.0)
    dec.update(2.0)
    before = (dec.threshold, dec.count)
    d = dec.peek(50.0)
    assert d.anomalous and not d.drift and (dec.threshold, dec.count) == before


@pytest.mark.parametrize("name, delta", [("adwin", 0.002), ("page_hinkley", 0.005), ("kswin", 0.005)])
def test_drift_is_flagged_after_a_shift_and_not_before(name, delta):
    rng = np.random.default_rng(0)
    dec = ScoreDecisions(DecisionConfig(rule="quantile", warmup=10, drift=name, drift_delta=delta), seed=1)
    before = [dec.update(s).drift for s in 1.0 + 0.1 * rng.standard_normal(300)]
    after = [dec.update(s).drift for s in 3.0 + 0.1 * rng.standard_normal(300)]
    assert not any(before[:200])
    assert any(after[:100])
    assert dec.drifts >= 1


def test_no_drift_detector_never_flags():
    dec = ScoreDecisions(DecisionConfig(rule="quantile", drift="none"))
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
    with pytest.raises(ValueError, match="finite"):
        ScoreDecisions().trust(float("inf"), True)


# -- the trusted rule ------------------------------------------------------------------------------------


def trusted(alpha: float = 0.01, **kw) -> ScoreDecisions:
    return ScoreDecisions(DecisionConfig(rule=kw.pop("rule", "trusted"), false_alarm_rate=alpha, drift=kw.pop("drift", "none"), **kw), seed=1)


def feed(dec: ScoreDecisions, scores, trust=lambda s: True) -> list:
    """Judge each score, then report it trusted or not (the detector's order)."""
    out = []
    for i, s in enumerate(scores):
        out.append(dec.update(s, index=i, timestamp=i / 10))
        dec.trust(s, trust(s), index=i, timestamp=i / 10)
    return out


def test_trusted_threshold_is_honest_during_warm_up_and_then_the_conformal_quantile() -> None:
    rng = np.random.default_rng(0)
    normal = rng.normal(5.0, 1.0, 400)
    dec = trusted(0.01, warmup=30)
    out, bounds = [], []
    for i, s in enumerate(normal):
        out.append(dec.update(s, index=i))
        bounds.append(dec.false_alarm_bound)
        dec.trust(s, True, index=i)
    assert dec.needed == 99                               # fewer scores cannot resolve a 1-in-100 event
    assert all(d.threshold is None and not d.anomalous for d in out[:30]) and bounds[29] is None
    for n in (30, 60, 98):                                # provisional: the highest trusted score, at most 1/(n+1)
        assert out[n].threshold == pytest.approx(max(normal[:n])) and bounds[n] == pytest.approx(1 / (n + 1))
        assert out[n].anomalous == (out[n].p_value <= bounds[n] + 1e-12)
    assert out[99].threshold == pytest.approx(max(normal[:99])) and bounds[99] == pytest.approx(0.01)
    n = 400
    want = np.sort(normal)[int(np.ceil((n + 1) * 0.99)) - 1]
    assert dec.threshold == pytest.approx(want) and dec.false_alarm_bound <= 0.01
    assert out[5].p_value == pytest.approx((1 + np.sum(normal[:5] >= normal[5])) / 6)  # p-values from the start
    assert dec.p_value(1e9) == pytest.approx(1 / 401) and dec.p_value(-1e9) == 1.0


def test_trusted_rule_flags_the_configured_share_of_normal_frames() -> None:
    rng = np.random.default_rng(1)
    for alpha in (0.01, 0.05):
        dec = trusted(alpha, calibration_size=2000)
        out = feed(dec, rng.gamma(4.0, 1.0, 20_000))     # skewed, like frame scores
        judged = out[dec.needed:]                         # the configured rate holds from here
        rate = np.mean([d.anomalous for d in judged])
        assert abs(rate - alpha) < 0.3 * alpha, (alpha, rate)
        assert all(d.anomalous == (d.p_value <= alpha + 1e-12) for d in judged)  # the two readings agree


def test_untrusted_scores_never_move_the_threshold_whatever_their_share() -> None:
    rng = np.random.default_rng(2)
    normal = rng.normal(5.0, 1.0, 3000)
    clean = trusted(0.01)
    feed(clean, normal)
    dirty = trusted(0.01)
    scores = np.where(rng.random(3000) < 0.5, rng.normal(30.0, 3.0, 3000), normal)  # half of the frames defects
    out = feed(dirty, scores, trust=lambda s: s < 15)    # the verdict (here: an oracle) leaves the defects out
    assert dirty.threshold == pytest.approx(clean.threshold, rel=0.05)
    assert np.mean([d.anomalous for d, s in zip(out, scores) if s > 15 and d.threshold is not None]) == 1.0
    quantile = ScoreDecisions(DecisionConfig(rule="quantile", drift="none"))
    for s in scores:
        quantile.update(s)
    assert quantile.threshold > 25                        # the former rule: the defects' own scores


def test_the_former_name_window_still_works_and_says_the_new_one() -> None:
    """``DecisionConfig.window`` counted scores beside ``StreamConfig.window``, which counts frames: renamed
    ``calibration_size``; the old spelling builds the same config and warns with the new name."""
    with pytest.warns(DeprecationWarning, match="DecisionConfig.window is now DecisionConfig.calibration_size"):
        old = DecisionConfig(rule="quantile", window=77)
    assert old == DecisionConfig(rule="quantile", calibration_size=77)
    with pytest.warns(DeprecationWarning, match="calibration_size"):
        assert old.window == 77
    assert dataclasses.replace(old, calibration_size=78).calibration_size == 78
    with pytest.raises(TypeError, match="not also its former name"), pytest.warns(DeprecationWarning):
        DecisionConfig(window=77, calibration_size=78)
    with pytest.raises(ValueError, match=r"DecisionConfig.calibration_size must be an int >= 2"), \
            pytest.warns(DeprecationWarning):
        DecisionConfig(rule="quantile", window=1)


def test_window_too_short_for_the_rate_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"DecisionConfig.calibration_size must be >= 1/false_alarm_rate - 1 = 999"):
        DecisionConfig(false_alarm_rate=0.001, calibration_size=500)
    DecisionConfig(rule="quantile", false_alarm_rate=0.001, calibration_size=500)  # the former rule has no such bound
    with pytest.raises(ValueError, match="DecisionConfig.rule must be one of"):
        DecisionConfig(rule="median")
    with pytest.raises(ValueError, match="DecisionConfig.false_alarm_rate must be None or in"):
        DecisionConfig(false_alarm_rate=0.0)
    with pytest.raises(ValueError, match="DecisionConfig.trust_patches"):
        DecisionConfig(trust_patches=0)
    assert DecisionConfig(quantile=0.95).alpha == pytest.approx(0.05)
    assert DecisionConfig(false_alarm_rate=0.02).level == pytest.approx(0.98)


def test_drift_on_trusted_scores_says_what_changed_and_since_when() -> None:
    rng = np.random.default_rng(3)
    scores = np.concatenate([rng.normal(5.0, 0.3, 600), rng.normal(8.0, 0.3, 400)])
    dec = trusted(0.01, drift="adwin")
    changes = []
    for i, s in enumerate(scores):
        d = dec.update(s, index=1000 + i, timestamp=i / 10)
        assert not d.drift                                # the trusted rule flags drift from trusted scores only
        c = dec.trust(s, True, index=1000 + i, timestamp=i / 10)
        if c is not None:
            changes.append(c)
    assert changes and dec.drifts == len(changes)
    first = changes[0]
    assert 1000 + 590 <= first.since <= 1000 + 610 and first.since_time == pytest.approx((first.since - 1000) / 10)
    assert first.before == pytest.approx(5.0, abs=0.2) and first.after == pytest.approx(8.0, abs=0.3)
    assert "higher since frame" in first.describe() and "alarms are not raised" in first.describe()


def test_a_burst_of_untrusted_defects_is_not_drift() -> None:
    rng = np.random.default_rng(4)
    dec = trusted(0.01, drift="adwin")
    scores = np.concatenate([rng.normal(5.0, 0.3, 500), rng.normal(30.0, 2.0, 200), rng.normal(5.0, 0.3, 300)])
    out = feed(dec, scores, trust=lambda s: s < 15)
    assert dec.drifts == 0 and sum(d.anomalous for d in out[500:700]) == 200


def test_trusted_state_round_trips_exactly_and_a_former_rule_state_restarts_the_calibration() -> None:
    rng = np.random.default_rng(5)
    scores = rng.gamma(4.0, 1.0, 700).tolist()
    cfg = DecisionConfig(rule="trusted", false_alarm_rate=0.02, calibration_size=300, drift="adwin")
    ref = ScoreDecisions(cfg)
    want = feed(ref, scores)
    dec = ScoreDecisions(cfg)
    feed(dec, scores[:400])
    state = dec.state_dict()
    ScoreDecisions.check_state(state)
    back = ScoreDecisions.from_state(state, cfg)
    got = want[:400]
    for i, s in enumerate(scores[400:], start=400):
        got.append(back.update(s, index=i, timestamp=i / 10))
        back.trust(s, True, index=i, timestamp=i / 10)
    assert got == want and back.state_dict()["fed"] == ref.fed
    assert np.array_equal(back.state_dict()["history_index"], ref.state_dict()["history_index"])
    old = {"count": 50, "drifts": 1, "history": np.asarray(scores[:50])}  # saved before the trusted rule existed
    ScoreDecisions.check_state(old)
    resumed = ScoreDecisions.from_state(old, cfg)
    assert (resumed.count, resumed.drifts, resumed.fed, resumed.threshold) == (50, 1, 0, None)
    as_quantile = ScoreDecisions.from_state(old, DecisionConfig(rule="quantile", calibration_size=300))
    assert as_quantile.fed == 50 and as_quantile.threshold is not None


def test_kept_top_counts_the_kept_patches_from_the_highest_score_down() -> None:
    from streamad.stream.decisions import kept_top

    order = np.array([3, 0, 2, 1])
    assert kept_top(order, np.array([True, True, True, True])) == 4
    assert kept_top(order, np.array([True, True, False, True])) == 2
    assert kept_top(order, np.array([True, True, True, False])) == 0


def test_after_a_drift_the_calibration_restarts_at_the_change_point() -> None:
    rng = np.random.default_rng(6)
    # normal scores fall (the light got better): a fixed window keeps the old, higher threshold for a
    # thousand frames and misses what scores between the two levels; the restart follows at once
    scores = np.concatenate([rng.normal(8.0, 0.3, 1500), rng.normal(5.0, 0.3, 400)])
    following = trusted(0.01, drift="adwin", calibration_size=1000)
    fixed = trusted(0.01, drift="none", calibration_size=1000)
    out_following, out_fixed = feed(following, scores), feed(fixed, scores)
    assert following.drifts >= 1 and fixed.drifts == 0
    late = slice(1500 + 150, 1900)                        # after the flag and `needed` scores past the change
    assert all(d.threshold < 6.5 for d in out_following[late])
    assert all(d.threshold > 8.3 for d in out_fixed[late])  # the fixed window still holds the old level
    assert following.threshold == pytest.approx(np.quantile(scores[1500:], 0.99), abs=0.4)
    assert 99 <= following.calibration <= 400
    state = following.state_dict()
    assert 1490 <= state["start"] <= 1510
    back = ScoreDecisions.from_state(state, following.config)
    assert back.threshold == following.threshold and back.calibration == following.calibration
    assert back.calibration_scores().tolist() == following.calibration_scores().tolist()


def test_a_stream_that_never_trusts_is_named_once_and_a_trusting_one_is_not() -> None:
    """The trusted rule on a texture where no frame is trusted has no threshold: say so, once."""
    import warnings

    starved = ScoreDecisions(DecisionConfig(rule="trusted", warmup=3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(100):
            starved.update(1.0)
            starved.trust(1.0, False)
    assert starved.starved and starved.threshold is None
    assert [str(w.message).count("0 of 30 admitted frames") for w in caught] == [1]   # at the 30th, once
    back = ScoreDecisions.from_state(starved.state_dict(), DecisionConfig(rule="trusted", warmup=3))
    assert back.verdicts == 100 and back.starved

    fed = ScoreDecisions(DecisionConfig(rule="trusted", warmup=3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(100):
            fed.update(1.0)
            fed.trust(1.0 + i / 100, i % 5 == 0)   # 1 in 5 trusted: few, but enough to calibrate
    assert not fed.starved and caught == []


# -- the screened rule -------------------------------------------------------------------------------------


def screened(alpha: float = 0.01, **kw) -> ScoreDecisions:
    return ScoreDecisions(DecisionConfig(rule="screened", false_alarm_rate=alpha,
                                         drift=kw.pop("drift", "none"), **kw), seed=1)


def frame_scores(rng: np.random.Generator, n: int) -> np.ndarray:
    """Scores like a frame's: the maximum of many patch distances (here 200 gamma draws)."""
    return rng.gamma(4.0, 0.5, (n, 200)).max(axis=1)


def test_the_screen_bound_barely_moves_under_a_large_share_of_defects() -> None:
    from streamad.stream.decisions import screen_bound

    rng = np.random.default_rng(10)
    clean = frame_scores(rng, 1000)
    base = screen_bound(np.sort(clean), 0.999)
    assert np.quantile(clean, 0.99) < base < np.max(clean) * 1.5     # above the normal bulk, near its top
    for share in (0.05, 0.2, 0.4):
        defects = rng.normal(3 * np.median(clean), 2.0, int(share * 1000 / (1 - share)))
        mixed = np.sort(np.concatenate([clean, defects]))
        assert screen_bound(mixed, 0.999) == pytest.approx(base, rel=0.05), share
        # one fit on the lower half alone (no correction for the share screened out) is biased low
        assert screen_bound(mixed, 0.999, rounds=1) < 0.95 * base
    assert screen_bound([], 0.999) == np.inf and screen_bound([2.0, 2.0, 2.0], 0.999) == 2.0


def test_screened_rule_flags_about_the_configured_share_of_normal_frames() -> None:
    rng = np.random.default_rng(11)
    for alpha in (0.01, 0.05):
        dec = screened(alpha, calibration_size=2000)
        out = [dec.update(s) for s in frame_scores(rng, 20_000)]
        judged = [d for d in out[dec.needed:] if d.threshold is not None]
        rate = np.mean([d.anomalous for d in judged])
        assert alpha * 0.7 < rate < alpha * (1 + dec.config.screen) * 1.3, (alpha, rate)
        assert all(d.anomalous == (d.p_value <= alpha + 1e-12) for d in judged[-5000:])


def test_screened_threshold_holds_at_a_fifth_of_defects_where_the_quantile_rises_into_them() -> None:
    rng = np.random.default_rng(12)
    n = 6000
    normal = frame_scores(rng, n)
    is_defect = rng.random(n) < 0.2
    scores = np.where(is_defect, rng.normal(3 * np.median(normal), 2.0, n), normal)
    clean, dirty, quantile = screened(), screened(), ScoreDecisions(DecisionConfig(rule="quantile", drift="none"))
    for s in normal:
        clean.update(s)
    out = [dirty.update(s) for s in scores]
    for s in scores:
        quantile.update(s)
    assert dirty.threshold == pytest.approx(clean.threshold, rel=0.1)
    judged = np.array([d.threshold is not None for d in out])
    flags = np.array([d.anomalous for d in out])
    assert flags[judged & is_defect].mean() > 0.99 and flags[judged & ~is_defect].mean() < 0.02
    assert quantile.threshold > 2 * clean.threshold               # the former rule: inside the defects


def test_a_burst_of_screened_out_defects_is_not_drift_but_a_level_shift_is() -> None:
    rng = np.random.default_rng(13)
    dec = screened(drift="adwin")
    scores = np.concatenate([frame_scores(rng, 600), 30.0 + rng.normal(0, 1, 150), frame_scores(rng, 300)])
    out = [dec.update(s, index=i) for i, s in enumerate(scores)]
    assert dec.drifts == 0 and sum(d.anomalous for d in out[600:750]) == 150
    shifted = screened(drift="adwin")
    outs = [shifted.update(s, index=i) for i, s in enumerate(np.r_[frame_scores(rng, 600), 1.3 * frame_scores(rng, 600)])]
    changes = [d.change for d in outs if d.drift]
    assert changes and changes[0].since >= 550 and changes[0].after > changes[0].before


def test_screened_state_round_trips_exactly() -> None:
    rng = np.random.default_rng(14)
    scores = frame_scores(rng, 700).tolist()
    cfg = DecisionConfig(rule="screened", false_alarm_rate=0.02, calibration_size=300, drift="none")
    ref = ScoreDecisions(cfg)
    want = [ref.update(s, index=i) for i, s in enumerate(scores)]
    dec = ScoreDecisions(cfg)
    got = [dec.update(s, index=i) for i, s in enumerate(scores[:400])]
    state = dec.state_dict()
    ScoreDecisions.check_state(state)
    back = ScoreDecisions.from_state(state, cfg)
    got += [back.update(s, index=i) for i, s in enumerate(scores[400:], start=400)]
    assert got == want and back.calibration == ref.calibration and back.screen == ref.screen


# -- the auto rule (the default): trusted where the channels vouch for a fair share, screened elsewhere -----

from streamad.stream.decisions import AutoDecisions, make_decisions  # noqa: E402


def auto(alpha: float = 0.01, **kw) -> AutoDecisions:
    return AutoDecisions(DecisionConfig(rule="auto", false_alarm_rate=alpha, drift=kw.pop("drift", "none"), **kw),
                         seed=1)


def test_auto_is_the_default_rule_and_make_decisions_builds_it() -> None:
    assert DecisionConfig().rule == "auto" and isinstance(make_decisions(DecisionConfig()), AutoDecisions)
    with pytest.raises(ValueError, match="use AutoDecisions"):
        ScoreDecisions(DecisionConfig(rule="auto"))


def test_auto_on_a_texture_calibrates_by_the_screen_and_says_so_once() -> None:
    rng = np.random.default_rng(0)
    dec = auto(alpha=0.05, warmup=20)
    normal = rng.gumbel(10.0, 1.0, 2000)
    defects = rng.random(2000) < 0.2
    scores = np.where(defects, normal + 15.0, normal)
    first = None
    with pytest.warns(RuntimeWarning, match="calibrated by the screened rule") as caught:
        flagged = []
        for i, s in enumerate(scores):
            d = dec.update(float(s), index=i)
            dec.trust(float(s), False)  # the channels never keep a texture frame's top patches
            if d.threshold is not None and first is None:
                first = i
            flagged.append(d.anomalous)
    assert len([w for w in caught if "screened rule" in str(w.message)]) == 1
    assert dec.active == "screened" and 19 <= first < 40  # from its warm-up on, not after 300 verdicts
    flagged = np.asarray(flagged)[200:]
    assert flagged[~defects[200:]].mean() < 2 * 0.05 and flagged[defects[200:]].mean() > 0.9


def test_auto_hands_over_to_the_trusted_calibration_once_it_can_give_the_configured_rate() -> None:
    dec = auto(alpha=0.1, warmup=5)
    actives = []
    for i in range(40):
        s = 1.0 + 0.01 * (i % 10)
        dec.update(s, index=i)
        dec.trust(s, True)
        actives.append(dec.active)
    # screened from its warm-up (5 scores) until the trusted set holds 1/alpha - 1 = 9 scores
    assert actives[:4] == [None] * 4 and actives[4:8] == ["screened"] * 4 and actives[8:] == ["trusted"] * 32
    for i in range(400):  # 40 % defects: never trusted, never move the trusted threshold
        before = dec.threshold
        defect = i % 5 < 2
        s = 50.0 if defect else 1.0 + 0.01 * (i % 10)
        assert dec.update(s).anomalous is defect
        dec.trust(s, not defect)
        assert dec.threshold == before or not defect
        assert dec.active == "trusted"


def test_auto_does_not_calibrate_on_a_biased_few_trusted_frames() -> None:
    # a texture: the channels trust 5 % of frames, and only the lowest-scoring ones
    dec = auto(alpha=0.01)
    rng = np.random.default_rng(3)
    for i in range(3000):
        s = float(rng.normal(40.0, 3.0))
        dec.update(s, index=i)
        dec.trust(s, s < 35.0)
    assert dec.trusted >= 99 and dec.trust_share < AutoDecisions.MIN_TRUST_SHARE
    assert dec.active == "screened" and dec.threshold > 45.0  # a trusted threshold would sit near 35


def test_auto_state_round_trips_exactly_and_other_rules_restart() -> None:
    rng = np.random.default_rng(5)
    dec = auto(alpha=0.05, warmup=10, drift="adwin")
    for i in range(300):
        s = float(rng.gumbel(5.0, 1.0))
        dec.update(s, index=i)
        dec.trust(s, i % 3 == 0)
    state = dec.state_dict()
    AutoDecisions.check_state(state)
    back = AutoDecisions.from_state(state, dec.config, seed=1)
    assert (back.active, back.calibration, back.threshold, back.trust_share) == \
        (dec.active, dec.calibration, dec.threshold, dec.trust_share)
    for i in range(300, 400):
        s = float(rng.gumbel(5.3, 1.0))
        assert back.update(s, index=i) == dec.update(s, index=i)
        assert back.trust(s, i % 3 == 0) == dec.trust(s, i % 3 == 0)
    broken = dict(state, trust_share=1.5)
    from streamad.errors import StateError
    with pytest.raises(StateError, match="trusted share"):
        AutoDecisions.check_state(broken)
    fresh = AutoDecisions.from_state(ScoreDecisions(DecisionConfig(rule="quantile")).state_dict(), dec.config)
    assert fresh.active is None and fresh.calibration == 0
