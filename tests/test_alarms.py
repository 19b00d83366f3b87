"""Alarms end to end: the trusted rule inside the detector (synchronous and background learning), alarm
events (grouping, and on real sockets: one event message per burst, an events-only subscriber gets only
events), old saved states under the new rule, and ``streamad watch`` / ``listen`` printing events."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from streamad import cli
from streamad.adapters.demo import DemoConfig, DemoSource
from streamad.runtime.live import run_watch
from streamad.adapters.publisher import Publisher, encode_event
from streamad.adapters.subscriber import Subscriber, decode_message, event_topic
from streamad.config import ChannelConfig, DecisionConfig, EventConfig, IndexConfig, StreamConfig
from streamad.results import AlarmEvent, FrameResult
from streamad.testing.standin import StandInDetector
from streamad.stream.detector import StreamDetector
from streamad.stream.events import AlarmEvents

ANY_PORT = "tcp://127.0.0.1:*"
GRID, P, D = (4, 4), 16, 8


class Given:
    """Enough of an extractor for ``process_descriptors``."""

    grid, image_size = GRID, (16, 16)


def scene(n: int, defects: set[int], seed: int = 0) -> list[np.ndarray]:
    """A static scene with noise; a defect frame has one patch far from anything normal."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(P, D))
    out = []
    for i in range(n):
        f = base + 0.05 * rng.normal(size=(P, D))
        if i in defects:
            f[rng.integers(P)] += 3.0
        out.append(f.astype(np.float32))
    return out


def detector(background: bool = False, **decisions) -> StreamDetector:
    cfg = StreamConfig(window=10, channels=ChannelConfig(seeds=2, min_span=2),
                       decisions=DecisionConfig(false_alarm_rate=0.1, calibration_size=200, warmup=5, drift="none",
                                                trust_patches=2, **decisions),
                       index=IndexConfig(kind="ivf"), learn_in_background=background)
    return StreamDetector(cfg, extractor=Given())


# -- the trusted rule in the detector --------------------------------------------------------------------


def test_defective_frames_do_not_calibrate_the_threshold_even_at_a_high_rate() -> None:
    rng = np.random.default_rng(1)
    n = 240
    defects = {i for i in range(n) if rng.random() < 0.3}          # 30 % of the frames
    frames = scene(n, defects)
    results, verdicts = [], []
    det = detector()
    for i, f in enumerate(frames):
        results.append(det.process_descriptors(f, (16, 16), timestamp=i / 10))
        verdicts += det.decisions.last_verdicts
    trusted_frames = {i for i, _, top in verdicts if top >= 2}
    assert len(verdicts) >= 200 and not trusted_frames & defects      # the channels keep no defect's top patches
    assert len(trusted_frames) == det.decisions.trusted >= 100
    judged = [r for r in results if r.threshold is not None]
    assert judged and judged[0].index >= 10 + 5                     # warm-up: 5 trusted scores first
    assert all(r.anomalous for r in judged if r.index in defects)    # every defect after warm-up is flagged
    false = sum(r.anomalous for r in judged if r.index not in defects)
    assert false <= 0.2 * sum(r.index not in defects for r in judged)
    assert all(r.p_value is not None and 0 < r.p_value <= 1 for r in judged)
    assert max(r.threshold for r in judged) < min(r.score for r in judged if r.index in defects)
    quantile = detector(rule="quantile")
    late = [quantile.process_descriptors(f, (16, 16)) for f in frames][120:]
    assert sum(r.anomalous for r in late if r.index in defects) < 0.5 * sum(r.index in defects for r in late)


def test_background_learning_hands_the_verdicts_to_the_scorer() -> None:
    frames = scene(120, {30, 60, 90})
    with detector(background=True) as det:
        results = []
        for i, f in enumerate(frames):
            results.append(det.process_descriptors(f, (16, 16), timestamp=i / 10))
            det.wait_learned(5.0)       # each admission done before the next frame: verdicts arrive next frame
        results.append(det.process_descriptors(frames[0], (16, 16)))
    assert det.decisions.trusted >= 60 and results[-1].threshold is not None
    assert not det._pending_trust or max(det._pending_trust) >= det._next_frame_id - 2  # nothing left behind


def test_a_state_saved_before_the_trusted_rule_loads_and_resumes_under_either_rule(tmp_path: Path) -> None:
    frames = scene(60, {40})
    det = detector(rule="quantile")
    for f in frames[:40]:
        det.process_descriptors(f, (16, 16))
    path = det.save(tmp_path / "state")
    manifest = json.loads((path / "manifest.json").read_text())   # make it look like an older streamad's
    manifest["config"]["decisions"] = {k: v for k, v in manifest["config"]["decisions"].items()
                                       if k not in ("rule", "false_alarm_rate", "trust_patches")}
    manifest["config"]["decisions"]["quantile"] = 0.9      # the same rate, as an older streamad said it
    for key in ("rule", "fed", "trusted"):
        del manifest["state"]["decisions"][key]
    for key in ("history_index", "history_time"):
        del manifest["arrays"][f"decisions.{key}"]
        (path / f"decisions.{key}.npy").unlink()
    (path / "manifest.json").write_text(json.dumps(manifest))
    old = StreamDetector.load(path, extractor=Given())
    assert old.config.decisions.rule == "quantile" and old.decisions.threshold == det.decisions.threshold
    new_cfg = replace(det.config, decisions=replace(det.config.decisions, rule="trusted"))
    new = StreamDetector.load(path, extractor=Given(), config=new_cfg)
    assert new.decisions.trusting and new.decisions.count == det.decisions.count and new.decisions.threshold is None
    assert new.process_descriptors(frames[40], (16, 16)).anomalous is False   # re-learning its calibration


@pytest.mark.parametrize("saved_rule, resumed_rule", [("auto", "quantile"), ("trusted", "quantile"),
                                                      ("quantile", "auto"), ("screened", "trusted")])
def test_a_state_resumed_under_another_rule_relearns_its_calibration(tmp_path: Path, saved_rule: str,
                                                                      resumed_rule: str) -> None:
    """The rule may change at a resume (RUNTIME_FIELDS). Resumed under the quantile rule, a state saved
    under another one kept its score count but not its scores: the threshold read an empty rolling
    quantile and the next judged frame raised TypeError (the fuzz found it: a manifest without the rule)."""
    frames = scene(80, {60})
    det = detector(rule=saved_rule)
    for f in frames[:40]:
        det.process_descriptors(f, (16, 16))
    path = det.save(tmp_path / "state")
    cfg = replace(det.config, decisions=replace(det.config.decisions, rule=resumed_rule))
    back = StreamDetector.load(path, extractor=Given(), config=cfg)
    assert back.decisions.threshold is None                       # its calibration starts over
    results = [back.process_descriptors(f, (16, 16)) for f in frames[40:]]
    assert results[-1].threshold is not None                       # ... and is learned again
    assert results[20].anomalous                                   # the defect in frame 60 is found


# -- events ----------------------------------------------------------------------------------------------


def result(i: int, score: float, threshold: float = 5.0, heat: float | None = None) -> FrameResult:
    hm = np.full((3, 4), score if heat is None else heat, np.float32)
    return FrameResult(index=i, ready=True, score=score, threshold=threshold, anomalous=score > threshold,
                       heatmap=hm, patch_scores=None, drift=False, admitted=True, timestamp=100 + i / 10,
                       p_value=0.5 if score <= threshold else 0.01)


def test_events_group_bursts_bridge_short_gaps_and_drop_short_ones() -> None:
    scores = [1, 9, 1, 1, 7, 8, 1, 6, 1, 1, 1, 1, 9, 1, 1, 1]
    events = AlarmEvents(EventConfig(max_gap=1, min_frames=2))
    got = [e for i, s in enumerate(scores) if (e := events.update(result(i, s))) is not None]
    assert events.flush() is None
    assert [(e.start, e.end, e.frames, e.peak_index, e.peak_score) for e in got] == [(4, 7, 3, 5, 8.0)]
    assert events.suppressed == 2 and events.reported == 1          # frames 1 and 12 alone: too short
    assert got[0].duration == pytest.approx(0.3) and got[0].peak_p_value == 0.01
    wide = AlarmEvents(EventConfig(max_gap=2))
    assert [(e.start, e.end) for i, s in enumerate(scores) if (e := wide.update(result(i, s)))] == [(1, 7), (12, 12)]
    open_at_end = AlarmEvents()
    for i, s in enumerate([1, 9, 9]):
        open_at_end.update(result(i, s))
    ev = open_at_end.flush()
    assert ev is not None and (ev.start, ev.end) == (1, 2)
    with pytest.raises(ValueError, match="EventConfig.min_frames must be an int >= 1"):
        EventConfig(min_frames=0)


def test_event_message_is_exact_and_round_trips() -> None:
    hm = np.arange(12, dtype=np.float32).reshape(3, 4)
    ev = AlarmEvent(3, 10, 14, 4, 101.0, 101.4, 13, 9.5, 0.002, 5.0, hm)
    parts = encode_event(ev, source="cam", seq=7, topic="line3")
    assert len(parts) == 3 and parts[0] == b"line3/event" and parts[2] == hm.astype("<f4").tobytes()
    assert json.loads(parts[1]) == {"schema": 4, "type": "event", "seq": 7, "camera": "line3", "source": "cam", "event": 3, "start": 10,
                                    "end": 14, "frames": 4, "start_time": 101.0, "end_time": 101.4,
                                    "peak_index": 13, "peak_score": 9.5, "peak_p_value": 0.002,
                                    "peak_threshold": 5.0, "heatmap_shape": [3, 4], "heatmap_dtype": "float32"}
    msg = decode_message(parts)
    assert msg.type == "event" and (msg.event, msg.start, msg.end, msg.peak_index) == (3, 10, 14, 13)
    np.testing.assert_array_equal(msg.heatmap, hm)
    assert msg.header()["heatmap_shape"] == [3, 4]
    broken = [parts[0], parts[1].replace(b'"peak_index":13', b'"peak_index":"13"'), parts[2]]
    with pytest.raises(ValueError, match="'peak_index' must be an int"):
        decode_message(broken)


class Scripted(StandInDetector):
    """Stands in for the detector: frame i scores ``scores[i]`` against a threshold of 5, heatmap = score."""

    def __init__(self, scores: list[float]) -> None:
        self.scores, self.i = scores, 0

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> FrameResult:
        r = result(self.i, self.scores[self.i])
        self.i += 1
        return r


def handshake(pub: Publisher, subs: list[Subscriber], timeout: float = 5.0) -> None:
    """Publish warm-up frames (index -1) and warm-up events (number -1) until every subscriber got one:
    ZeroMQ drops what is sent before a subscription reaches the publisher. Then drain what is queued."""
    import time

    warm_frame = FrameResult(-1, False, None, None, False, None, None, False, False, 0.0)
    warm_event = AlarmEvent(-1, -1, -1, 0, 0.0, 0.0, -1, 0.0, None, None, None)
    waiting = set(range(len(subs)))
    end = time.monotonic() + timeout
    while waiting:
        assert time.monotonic() < end, "subscribers never connected"
        pub.publish(warm_frame)
        pub.publish_event(warm_event)
        for k in list(waiting):
            if subs[k].receive(timeout=0.02) is not None:
                waiting.discard(k)
    pub.publish_event(warm_event)                          # a marker: everything before it is warm-up
    for sub in subs:
        while True:
            msg = sub.receive(timeout=5.0)
            assert msg is not None
            if msg.type == "event" and msg.event == -1 and msg.seq == pub.next_seq("event") - 1:
                break


def test_a_burst_becomes_one_event_message_and_an_events_only_subscriber_gets_only_events() -> None:
    scores = [1.0] * 10 + [6.0, 9.0, 2.0, 12.0, 7.0] + [1.0] * 10 + [8.0] + [1.0] * 4   # bursts 10-14 and 25
    with Publisher(ANY_PORT, hwm=1000) as pub, Subscriber(pub.address, topic="") as everything, \
            Subscriber(pub.address, topic=event_topic()) as events_only:
        handshake(pub, [everything, events_only])
        seen: list[AlarmEvent] = []
        summary = run_watch(DemoSource(DemoConfig(size=64, defect_rate=0.0), max_frames=len(scores)),
                            Scripted(scores), publisher=pub, events=AlarmEvents(EventConfig(max_gap=1)),
                            on_alarm=seen.append)
        assert summary.alarm_events == 2 and summary.anomalies == 5
        got_all = []
        while len([m for m in got_all if m.type == "event"]) < 2 or got_all[-1].type == "event" or \
                got_all[-1].index < len(scores) - 1:
            msg = everything.receive(timeout=5.0)
            assert msg is not None, f"only {len(got_all)} messages arrived"
            got_all.append(msg)
        got_events = [events_only.receive(timeout=5.0) for _ in range(2)]
        assert events_only.receive(timeout=0.2) is None          # nothing else came to the events-only one
    frames = [m for m in got_all if m.type == "frame"]
    assert [m.index for m in frames] == list(range(len(scores)))  # every frame, in order
    assert [m.index if m.type == "frame" else "event" for m in got_all][26:31] == [25, 26, 27, "event", 28]
    assert all(m is not None and m.type == "event" for m in got_events)
    first, second = got_events
    assert (first.start, first.end, first.frames, first.peak_index, first.peak_score) == (10, 14, 4, 13, 12.0)
    assert first.start_time == pytest.approx(101.0) and first.end_time == pytest.approx(101.4)
    np.testing.assert_array_equal(first.heatmap, np.full((3, 4), 12.0, np.float32))   # the peak frame's heatmap
    assert (second.start, second.end, second.peak_index) == (25, 25, 25) and (first.event, second.event) == (0, 1)
    assert [e.start for e in seen] == [10, 25] and first.seq + 1 == second.seq
    first_all = next(m for m in got_all if m.type == "event")
    assert first_all.header() == first.header()


def test_listen_prints_events_and_can_take_only_events(capsys) -> None:
    ev = AlarmEvent(0, 10, 14, 4, 101.0, 101.4, 13, 12.0, 0.01, 5.0, np.ones((2, 2), np.float32))
    with Publisher(ANY_PORT, hwm=100) as pub:
        stop = threading.Event()

        def pump() -> None:
            i = 0
            while not stop.is_set():
                pub.publish(result(i, 1.0))
                pub.publish_event(ev)
                i += 1
                stop.wait(0.005)

        t = threading.Thread(target=pump, daemon=True)
        t.start()
        try:
            assert cli.main(["listen", pub.address, "--events", "--count", "3", "--timeout", "5"]) == 0
            assert cli.main(["listen", pub.address, "--count", "30", "--timeout", "5"]) == 0
        finally:
            stop.set()
            t.join(5)
    out = capsys.readouterr().out.splitlines()
    line = ("event 0  frames 10-14 (4 anomalous, 0.4 s)  peak frame 13  score 12.0000  threshold 5.0000  "
            "p 0.0100")
    assert out[:3] == [line] * 3                            # --events: events only
    rest = out[3:]
    assert line in rest and any(s.startswith("frame ") and "p 0.5000" in s for s in rest)


# -- streamad eval-alarms: the table's arithmetic ------------------------------------------------------------


def test_alarm_report_rows_designs_and_targets() -> None:
    from streamad.bench.alarms import AlarmReport, AlarmSettings, AlarmTrace, replay_designs, rule_row

    rng = np.random.default_rng(7)
    n, start = 600, 50
    labels = rng.random(n) < 0.2
    scores = np.where(labels, rng.normal(30, 3, n), rng.normal(6, 0.5, n))
    tops = np.where(labels, 0, 400)                                   # the channels keep no defect's top patches
    verdicts = [(i, float(scores[i]), int(tops[i])) for i in range(start, n)]
    trace = AlarmTrace("trusted", [None] * start + scores[start:].tolist(), [None] * n, [False] * n, [None] * n,
                       verdicts)
    rows = {r["rule"]: r for r in replay_designs(trace, labels, start, DecisionConfig(), 0.2)}
    kept, everything = rows["kept top-5 patches"], rows["all scores (conformal)"]
    assert kept["detection_rate"] == 1.0 and kept["threshold_end"] < 10
    assert everything["detection_rate"] < 0.2 and everything["threshold_end"] > 20   # defects calibrate it
    normal = rng.normal(6, 0.5, n)
    r0 = rule_row(0.0, AlarmTrace("trusted", normal.tolist(), [8.0] * n, (normal > 8.0).tolist(), [None] * n, []),
                  np.zeros(n, bool), judged_from=0)
    mixed = AlarmTrace("trusted", scores.tolist(), [8.0] * n, (scores > 8.0).tolist(), [None] * n, [])
    r20 = dict(rule_row(0.2, mixed, labels, judged_from=0), threshold_end=11.0)
    report = AlarmReport(AlarmSettings(rates=(0.0, 0.2), rules=("trusted",)), [r0, r20], [])
    checks = report.checks()
    assert any("20% defects" in c and "38% off" in c and "NOT met" in c for c in checks)
    assert any("clean stream" in c and "target met" in c for c in checks)
    assert "| 20% | trusted |" in report.markdown("streamad eval-alarms")
    from streamad.bench.alarms import trust_rows

    t = {r["k"]: r for r in trust_rows(trace, labels, 0.2)}
    assert t[5]["clean_trusted"] == 1.0 and t[5]["defects_trusted"] == 0.0 and t[5]["defect_share"] == 0.0


@pytest.mark.parametrize("rule", ["auto", "trusted", "screened", "quantile"])
def test_alarms_per_hour_sets_the_rate_and_a_calibration_long_enough_for_every_rule(rule: str) -> None:
    """``--alarms-per-hour 6`` on a 25 fps video (the watch --help example): 6 / 90,000 per frame. The
    conformal rules need 1/rate - 1 calibration scores: the default rule (auto) was refused once, since
    only the trusted rule's calibration was lengthened."""
    from streamad.runtime.session import per_hour

    cfg = per_hour(StreamConfig(decisions=DecisionConfig(rule=rule)), 6, 25)
    assert cfg.decisions.false_alarm_rate == pytest.approx(6 / 90000)
    want = 1000 if rule == "quantile" else 15000  # the quantile rule has no such bound: its size stays
    assert cfg.decisions.calibration_size == want and cfg.decisions.rule == rule
