"""Alarm rules measured on the demo stream at several defect rates (``streamad eval-alarms``, docs/alarms.md).

For each defect rate the demo stream (:class:`~streamad.adapters.sources.demo.DemoStream`, seeded) is
rendered and its descriptors extracted once; then a fresh :class:`~streamad.stream.detector.StreamDetector`
(a preset, synchronous learning: deterministic) processes them once per decision rule (``trusted``,
``quantile``). A frame counts once the engine judges it (its window is full and the rule has a
threshold): the detection rate is over the defective frames judged, the false alarm rate over the
clean frames judged.

Besides the rules the engine runs, :func:`replay_designs` replays other trust designs on the trusted
run's own record (every judged frame's score and, for admitted frames, how many of its top patches
the channels kept): the same scores and channel verdicts, only the calibration set differs. That is
how the kept-patch count (``DecisionConfig.trust_patches``) was chosen (docs/alarms.md).

    >>> import numpy as np
    >>> t = AlarmTrace("trusted", scores=[None, 1.0, 2.0, 9.0, 1.5], thresholds=[None, None, 3.0, 3.0, 3.0],
    ...                anomalous=[False, False, False, True, False], p_values=[None] * 5, verdicts=[])
    >>> row = rule_row(0.2, t, np.array([0, 0, 0, 1, 0], bool), judged_from=2)
    >>> row["detection_rate"], row["false_alarm_rate"], row["threshold_end"], row["first_threshold"]
    (1.0, 0.0, 3.0, 2)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from streamad.config import DecisionConfig, EventConfig, StreamConfig
from streamad.results import FrameResult
from streamad.stream.decisions import ScoreDecisions
from streamad.stream.detector import StreamDetector
from streamad.stream.events import AlarmEvents

RULES = ("auto", "quantile")  # the default of --rules (DECISION_RULES: every rule)


@dataclass(frozen=True)
class AlarmSettings:
    """What ``streamad eval-alarms`` runs: the demo stream (``frames`` frames of ``size`` pixels, ``seed``)
    at each of ``rates``, the engine of ``preset`` with each of ``rules`` at ``false_alarm_rate``."""

    rates: tuple[float, ...] = (0.0, 0.01, 0.05, 0.2)
    frames: int = 2000
    size: int = 256
    preset: str = "fast"
    seed: int = 0
    false_alarm_rate: float = 0.01
    rules: tuple[str, ...] = RULES


@dataclass
class AlarmTrace:
    """One engine run: per frame its score (None: not ready), threshold, verdict and p-value, and the trust
    verdicts (frame index, score, patches kept from the top down) of the admitted frames it judged."""

    rule: str
    scores: list[float | None]
    thresholds: list[float | None]
    anomalous: list[bool]
    p_values: list[float | None]
    verdicts: list[tuple[int, float, int]]
    events: int = 0
    info: dict[str, Any] = field(default_factory=dict)


def demo_descriptors(rate: float, settings: AlarmSettings, extractor: Any, batch: int = 16,
                     progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors (N, P, d) float32 and defect labels (N,) of the demo stream at defect ``rate``."""
    from streamad.adapters.sources.demo import DemoConfig, DemoStream

    stream = DemoStream(DemoConfig(size=settings.size, defect_rate=rate, seed=settings.seed))
    desc: np.ndarray | None = None
    labels = np.zeros(settings.frames, bool)
    for start in tqdm(range(0, settings.frames, batch), desc=f"demo {rate:g}: features", unit="batch",
                      disable=not progress, leave=False):
        samples = [stream.sample(i) for i in range(start, min(settings.frames, start + batch))]
        out = np.asarray(extractor([s.image for s in samples]), np.float32)
        if desc is None:
            desc = np.empty((settings.frames,) + out.shape[1:], np.float32)
        desc[start:start + len(samples)] = out
        labels[start:start + len(samples)] = [s.defect is not None for s in samples]
    assert desc is not None
    return desc, labels


def engine_config(settings: AlarmSettings, rule: str) -> StreamConfig:
    """The preset's StreamConfig with synchronous learning and the decision ``rule`` at the settings' rate."""
    from streamad.stream.presets import stream_config

    base = stream_config(settings.preset)
    return replace(base, learn_in_background=False,
                   decisions=replace(base.decisions, rule=rule, false_alarm_rate=settings.false_alarm_rate))


def run_rule(descriptors: np.ndarray, config: StreamConfig, grid: tuple[int, int], size: tuple[int, int],
             frame_shape: tuple[int, int], progress: bool = False, label: str = "") -> AlarmTrace:
    """A fresh detector with ``config`` over ``descriptors`` (``process_descriptors``, frame ``i`` at
    time ``i / 10`` s), alarm events grouped with the default :class:`~streamad.config.EventConfig`."""
    class Given:  # the descriptors are precomputed
        def __init__(self) -> None:
            self.grid, self.image_size = grid, size

        def __call__(self, frames: Any) -> np.ndarray:
            raise RuntimeError("descriptors are precomputed")

    det = StreamDetector(config, extractor=Given())
    events = AlarmEvents(EventConfig())
    trace = AlarmTrace(config.decisions.rule, [], [], [], [], [])
    ready_from: int | None = None
    for i in tqdm(range(len(descriptors)), desc=label or config.decisions.rule, unit="frame", disable=not progress,
                  leave=False):
        r: FrameResult = det.process_descriptors(descriptors[i], frame_shape=frame_shape, timestamp=i / 10.0)
        if r.ready and ready_from is None:
            ready_from = i
        trace.scores.append(r.score)
        trace.thresholds.append(r.threshold)
        trace.anomalous.append(bool(r.anomalous))
        trace.p_values.append(r.p_value)
        trace.verdicts.extend(det.decisions.last_verdicts)
        trace.events += events.update(r) is not None
    trace.events += events.flush() is not None
    trace.info = {"ready_from": ready_from, "judged_from": det.frames_seen - det.decisions.count,
                  "trusted": det.decisions.trusted, "drifts": det.decisions.drifts}
    return trace


def _median(values: np.ndarray) -> float | None:
    return float(np.median(values)) if len(values) else None


def rule_row(rate: float, trace: AlarmTrace, labels: np.ndarray, judged_from: int) -> dict[str, Any]:
    """The metrics of one run: score levels, threshold at the end, warm-up, detection and false alarm rates
    over the frames judged with a threshold (from ``judged_from`` on, the window full)."""
    n = len(labels)
    scored = np.array([s is not None for s in trace.scores]) & (np.arange(n) >= judged_from)
    s = np.array([np.nan if v is None else v for v in trace.scores])
    has_thr = np.array([t is not None for t in trace.thresholds]) & scored
    alarm = np.asarray(trace.anomalous, bool) & has_thr
    clean, bad = has_thr & ~labels, has_thr & labels
    first = np.flatnonzero(has_thr)
    return {
        "rate": rate, "rule": trace.rule, "frames": n, "defective": int(labels.sum()),
        "clean_median": _median(s[scored & ~labels]),
        "clean_p99": float(np.percentile(s[scored & ~labels], 99)) if (scored & ~labels).any() else None,
        "defect_median": _median(s[scored & labels]),
        "threshold_end": next((t for t in reversed(trace.thresholds) if t is not None), None),
        "first_threshold": int(first[0]) if len(first) else None,
        "judged_clean": int(clean.sum()), "false_alarms": int(alarm[clean].sum()),
        "false_alarm_rate": float(alarm[clean].mean()) if clean.any() else None,
        "judged_defective": int(bad.sum()), "detected": int(alarm[bad].sum()),
        "detection_rate": float(alarm[bad].mean()) if bad.any() else None,
        "events": trace.events, "trusted": trace.info.get("trusted"),
    }


# ------------------------------------------------------------------------------------------------ designs
Trust = Callable[[float, int, ScoreDecisions], bool]


def _screen(c: float) -> Trust:
    """Score only: trusted when the score is within ``c`` robust deviations (1.4826 MAD) of the calibration
    median (everything while fewer than 20 calibration scores exist)."""
    def trust(score: float, top: int, dec: ScoreDecisions) -> bool:
        cal = dec.calibration_scores()
        if len(cal) < 20:
            return True
        med = float(np.median(cal))
        return score <= med + c * 1.4826 * float(np.median(np.abs(cal - med)))
    return trust


def designs(k_values: tuple[int, ...] = (1, 3, 5, 10)) -> dict[str, Trust]:
    """The calibration designs :func:`replay_designs` compares: every judged score (conformal, no trust),
    a score-only robust screen, and the channels' verdict with ``k`` top patches kept."""
    out: dict[str, Trust] = {"all scores (conformal)": lambda s, top, dec: True,
                             "score screen (median + 6 MAD)": _screen(6.0)}
    for k in k_values:
        out[f"kept top-{k} patches"] = (lambda k: lambda s, top, dec: top >= k)(k)
    return out


def replay_designs(trace: AlarmTrace, labels: np.ndarray, judged_from: int, decisions: DecisionConfig,
                   rate: float) -> list[dict[str, Any]]:
    """Replay each of :func:`designs` on ``trace`` (a ``trusted`` run): frames are judged in order from
    ``judged_from`` against a conformal threshold over the design's calibration set, then each admitted
    frame's verdict (kept top patches) is applied. Rows as :func:`rule_row`'s."""
    by_frame: dict[int, tuple[float, int]] = {i: (s, top) for i, s, top in trace.verdicts}
    rows = []
    for name, trust in designs().items():
        dec = ScoreDecisions(replace(decisions, rule="trusted", drift="none"))
        thresholds: list[float | None] = []
        anomalous: list[bool] = []
        for i, score in enumerate(trace.scores):
            if score is None or i < judged_from:
                thresholds.append(None)
                anomalous.append(False)
                continue
            d = dec.update(score)
            thresholds.append(d.threshold)
            anomalous.append(d.anomalous)
            if i in by_frame:
                s, top = by_frame[i]
                dec.trust(s, trust(s, top, dec))
        replayed = AlarmTrace(name, trace.scores, thresholds, anomalous, [None] * len(thresholds), [])
        rows.append(rule_row(rate, replayed, labels, judged_from))
    return rows


def trust_rows(trace: AlarmTrace, labels: np.ndarray, rate: float, k_values: tuple[int, ...] = (1, 3, 5, 10)
               ) -> list[dict[str, Any]]:
    """How the channels' verdict sorts the admitted frames judged (a ``trusted`` run's record), for each ``k``
    (the frame's ``k`` top patches kept): the share of clean frames trusted, of the highest-scoring 5 % of
    clean frames (a verdict that followed the score would trust these less), of defective frames, and
    the defects' share of the calibration set it feeds."""
    idx = np.array([i for i, _, _ in trace.verdicts], int)
    if not len(idx):
        return []
    score = np.array([s for _, s, _ in trace.verdicts])
    top = np.array([t for _, _, t in trace.verdicts])
    bad = labels[idx]
    high = ~bad & (score >= np.percentile(score[~bad], 95)) if (~bad).any() else np.zeros(len(idx), bool)
    rows = []
    for k in k_values:
        ok = top >= k
        rows.append({"rate": rate, "k": k, "clean_trusted": float(ok[~bad].mean()) if (~bad).any() else None,
                     "top5pct_clean_trusted": float(ok[high].mean()) if high.any() else None,
                     "defects_trusted": float(ok[bad].mean()) if bad.any() else None,
                     "defect_share": float((ok & bad).sum() / max(1, ok.sum()))})
    return rows


# ------------------------------------------------------------------------------------------------ report
@dataclass
class AlarmReport:
    """Every run's row, the replayed designs, and the issue's targets checked."""

    settings: AlarmSettings
    rows: list[dict[str, Any]]
    design_rows: list[dict[str, Any]]
    seconds: dict[str, float] = field(default_factory=dict)
    trust: list[dict[str, Any]] = field(default_factory=list)

    def row(self, rate: float, rule: str) -> dict[str, Any] | None:
        return next((r for r in self.rows if r["rate"] == rate and r["rule"] == rule), None)

    def checks(self, rule: str | None = None) -> list[str]:
        """The targets: the end threshold at every rate within 25 % of the clean stream's; detection at the
        highest rate at least 0.8 x that at the lowest non-zero rate; false alarms on the clean stream at
        most twice the configured rate. ``rule`` defaults to the first rule measured."""
        rule = rule or self.settings.rules[0]
        out = []
        rates = sorted(self.settings.rates)
        base = self.row(0.0, rule) if 0.0 in rates else None
        alpha = self.settings.false_alarm_rate
        if base is not None and base["threshold_end"] is not None:
            t0 = base["threshold_end"]
            for r in rates[1:]:
                row = self.row(r, rule)
                if row is None or row["threshold_end"] is None:
                    continue
                dev = abs(row["threshold_end"] - t0) / t0
                out.append(f"- {rule}, {r:.0%} defects: threshold at the end {row['threshold_end']:.2f} vs {t0:.2f} on "
                           f"the clean stream ({dev:.0%} off; target <= 25 %) -> {_met(dev <= 0.25)}")
            if base["false_alarm_rate"] is not None:
                far = base["false_alarm_rate"]
                out.append(f"- {rule}, clean stream: false alarm rate {far:.4f} vs configured {alpha:g} (target <= "
                           f"{2 * alpha:g}) -> {_met(far <= 2 * alpha)}")
        nonzero = [r for r in rates if r > 0]
        if len(nonzero) >= 2:
            lo, hi = self.row(nonzero[0], rule), self.row(nonzero[-1], rule)
            if lo and hi and lo["detection_rate"] is not None and hi["detection_rate"] is not None:
                ok = hi["detection_rate"] >= 0.8 * lo["detection_rate"]
                out.append(f"- {rule}: detection rate at {nonzero[-1]:.0%} defects {hi['detection_rate']:.3f} vs "
                           f"{lo['detection_rate']:.3f} at {nonzero[0]:.0%} (target >= "
                           f"{0.8 * lo['detection_rate']:.3f}) -> {_met(ok)}")
        return out

    def markdown(self, command: str) -> str:
        s = self.settings
        lines = ["# Alarm rules on the demo stream", "", f"Command: `{command}`", "",
                 f"Demo stream: {s.frames} frames of {s.size} x {s.size} px per defect rate (seed {s.seed}); engine: "
                 f"preset `{s.preset}`, synchronous learning; configured false alarm rate {s.false_alarm_rate:g} per "
                 "frame (quantile rule: the {:g} quantile). Rates are over the frames judged with a threshold (the "
                 "window full, the rule warmed up).".format(1 - s.false_alarm_rate), "",
                 "| defect rate | rule | clean median / p99 score | defect median score | threshold at the end | "
                 "first threshold (frame) | detected | false alarms | alarm events |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(_table_row(r))
        for rule in dict.fromkeys(r["rule"] for r in self.rows):
            what = "the former rule" if rule == "quantile" else f"the {rule} rule"
            lines += ["", f"Targets ({what}):"] + self.checks(rule)
        if self.design_rows:
            lines += ["", "## Calibration designs, replayed on the trusted runs' records", "",
                      "Each design judges the same scores with a conformal threshold over its own calibration set; "
                      "the channels' verdicts (top patches kept at admission) come from the trusted run.", "",
                      "| defect rate | design | threshold at the end | first threshold (frame) | detected | "
                      "false alarms |", "|---|---|---|---|---|---|"]
            for r in self.design_rows:
                lines.append(f"| {r['rate']:.0%} | {r['rule']} | {_num(r['threshold_end'])} | "
                             f"{r['first_threshold'] if r['first_threshold'] is not None else '-'} | "
                             f"{_ratio(r['detected'], r['judged_defective'])} | "
                             f"{_ratio(r['false_alarms'], r['judged_clean'], 4)} |")
        if self.trust:
            lines += ["", "## What the channels' verdict trusts", "",
                      "Admitted frames judged by the trusted run: the share trusted when the frame's k highest-scoring "
                      "patches must have been kept as nominal at its admission.", "",
                      "| defect rate | k | clean frames trusted | of the top-scoring 5 % of clean frames | defective "
                      "frames trusted | defects in the calibration set |", "|---|---|---|---|---|---|"]
            for r in self.trust:
                lines.append(f"| {r['rate']:.0%} | {r['k']} | {_num(r['clean_trusted'], 3)} | "
                             f"{_num(r['top5pct_clean_trusted'], 3)} | {_num(r['defects_trusted'], 4)} | "
                             f"{_num(r['defect_share'], 4)} |")
        return "\n".join(lines)

    def payload(self, command: str) -> dict[str, Any]:
        return {"command": command, "settings": self.settings.__dict__, "rows": self.rows,
                "designs": self.design_rows, "trust": self.trust, "checks": self.checks(self.settings.rules[0]),
                "seconds": self.seconds}


def _met(ok: bool) -> str:
    return "target met" if ok else "target NOT met"


def _num(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _ratio(hits: int, total: int, digits: int = 3) -> str:
    return "-" if not total else f"{hits / total:.{digits}f} ({hits} of {total})"


def _table_row(r: dict[str, Any]) -> str:
    return (f"| {r['rate']:.0%} | {r['rule']} | {_num(r['clean_median'])} / {_num(r['clean_p99'])} | "
            f"{_num(r['defect_median'])} | {_num(r['threshold_end'])} | "
            f"{r['first_threshold'] if r['first_threshold'] is not None else '-'} | "
            f"{_ratio(r['detected'], r['judged_defective'])} | {_ratio(r['false_alarms'], r['judged_clean'], 4)} | "
            f"{r['events']} |")


def evaluate_alarms(settings: AlarmSettings, progress: bool = True, cache: str | None = None) -> AlarmReport:
    """Every rate of ``settings``: descriptors once, then one engine run per rule, and the designs replayed
    on the trusted run. ``cache``: a folder where each rate's descriptors are kept and reused."""
    import os
    import time

    from streamad.vision.features import PatchFeatureExtractor

    configs = {rule: engine_config(settings, rule) for rule in settings.rules}
    trusting = next((r for r in configs if r in ("auto", "trusted")), None)  # its verdicts replay the designs
    features = next(iter(configs.values())).features
    extractor = None
    rows: list[dict[str, Any]] = []
    design_rows: list[dict[str, Any]] = []
    trust: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    for rate in settings.rates:
        t0 = time.perf_counter()
        path = None if cache is None else os.path.join(
            cache, f"demo_{settings.preset}_{settings.size}_{settings.seed}_{rate:g}_{settings.frames}.npz")
        if path is not None and os.path.exists(path):
            with np.load(path, allow_pickle=False) as z:
                desc, labels = z["desc"], z["labels"]
        else:
            extractor = extractor or PatchFeatureExtractor(features)
            desc, labels = demo_descriptors(rate, settings, extractor, progress=progress)
            if path is not None:
                os.makedirs(cache, exist_ok=True)  # type: ignore[arg-type]
                np.savez(path, desc=desc, labels=labels)
        seconds[f"{rate:g} features"] = time.perf_counter() - t0
        grid, size = tuple(features.grid), tuple(features.image_size)
        for rule, cfg in configs.items():
            t0 = time.perf_counter()
            trace = run_rule(desc, cfg, grid, size, (settings.size, settings.size), progress,
                             label=f"demo {rate:g}: {rule}")
            seconds[f"{rate:g} {rule}"] = time.perf_counter() - t0
            judged_from = int(trace.info["judged_from"])
            rows.append(rule_row(rate, trace, labels, judged_from))
            if rule == trusting:
                design_rows += replay_designs(trace, labels, judged_from, cfg.decisions, rate)
                trust += trust_rows(trace, labels, rate)
    return AlarmReport(settings, rows, design_rows, seconds, trust)


__all__ = ["AlarmReport", "AlarmSettings", "AlarmTrace", "demo_descriptors", "designs", "engine_config",
           "evaluate_alarms", "replay_designs", "rule_row", "run_rule", "trust_rows"]
