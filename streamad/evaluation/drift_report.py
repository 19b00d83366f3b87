"""The drift benchmark end to end: a drifting stream, every method on it, per-run metrics, the report.

:func:`build_stream` builds the stream from a manifest (:mod:`~streamad.evaluation.drift_stream`);
:func:`evaluate_drift` extracts (or reads from the cache) its descriptors once, runs the streaming engine for every window and
the static models on them (:mod:`~streamad.evaluation.drift_eval`), and measures each run
(:mod:`~streamad.evaluation.stream_metrics`). The :class:`DriftReport` it returns renders the Markdown
tables (:meth:`DriftReport.markdown`) and the JSON payload (:meth:`DriftReport.payload`) of
``streamad eval-stream``; the plot is drawn by the caller (``streamad.display.drift_plot``) from
its ``traces``, ``labels`` and ``frame_runs``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamad.config import DecisionConfig, IndexConfig, InReachConfig, MemoryConfig, StreamConfig
from streamad.errors import UserError
from streamad.evaluation.datasets import read_mask
from streamad.evaluation.descriptor_cache import descriptors_of_paths
from streamad.evaluation.drift_eval import MethodTrace, apply_rule, make_static_model, trace_static, trace_stream
from streamad.evaluation.drift_stream import StreamFrame, build_drift_stream, read_manifest
from streamad.evaluation.metrics import pixel_auroc
from streamad.evaluation.stream_metrics import per_run_metrics
from streamad.vision.heatmap import heatmap_from_patch_scores

STATIC = ("static-inreach", "static-patchcore")
RULES = ("auto", "quantile")


def method_name(base: str, rule: str | None) -> str:
    """A row's name: the engine with the default rule (``auto``) is ``stream-W``, with another rule
    ``stream-W+RULE``; a static model with its own fixed threshold is its name, with an engine rule ``NAME+RULE``.

        >>> method_name("stream-64", "auto"), method_name("stream-64", "quantile")
        ('stream-64', 'stream-64+quantile')
        >>> method_name("static-inreach", None), method_name("static-inreach", "trusted")
        ('static-inreach', 'static-inreach+trusted')
    """
    if rule is None or (base.startswith("stream-") and rule == "auto"):
        return base
    return f"{base}+{rule}"


@dataclass(frozen=True)
class DriftSettings:
    """What ``streamad eval-stream`` runs: the stream (runs, defect rate, seed), the methods (``stream``
    = one engine per window, ``static-inreach``, ``static-patchcore``) and their decisions."""

    runs: tuple[str, ...] = ("exp1", "exp2", "exp3", "exp4", "exp5", "exp6")
    defect_rate: float = 0.05
    methods: tuple[str, ...] = ("stream",) + STATIC
    windows: tuple[int, ...] = (64, 128)
    rules: tuple[str, ...] = RULES  # the engine's decision rules: each window runs with each
    quantile: float = 0.99
    warmup: int = 30
    calibration: float = 0.2
    seed: int = 0
    manifest: str | None = None  # default: DATA_DIR/../manifest.csv
    cache: str | None = None
    memory: MemoryConfig = field(default_factory=lambda: StreamConfig().memory)  # the engines' long-term memory


@dataclass
class DriftReport:
    """Every method's trace on the stream and its per-run rows."""

    data_dir: str
    settings: DriftSettings
    config: InReachConfig
    stream: list[StreamFrame]
    traces: list[MethodTrace]
    rows: list[dict[str, Any]]
    fit_frames: int  # frames of the first run the static models were fitted on
    calibration_frames: int  # frames of the first run held out to set their threshold
    decisions: DecisionConfig  # the quantile rule's (its window and warm-up are the trusted rule's, too)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def labels(self) -> list[int]:
        return [f.sample.label for f in self.stream]

    @property
    def frame_runs(self) -> list[str]:
        return [f.run for f in self.stream]

    def target(self, last: int = 2) -> list[str]:
        """The target lines: see :func:`last_runs_check`."""
        return last_runs_check(self.traces, self.labels, self.frame_runs, list(self.settings.runs), last)

    def rule_check(self) -> list[str]:
        """Per window, the default (auto), trusted and screened rules against the rolling quantile, run by run: detection and false alarm
        rates, at the same configured false alarm rate; see :func:`rules_check`."""
        return rules_check(self.rows, self.settings.windows, self.settings.defect_rate)

    def notes(self) -> list[str]:
        """The paragraphs above the tables: how the stream was made and how each method decided."""
        s, runs, labels = self.settings, self.settings.runs, self.labels
        notes = [f"Stream: {len(self.stream)} frames of runs {', '.join(runs)} in acquisition order, {sum(labels)} "
                 f"defective frames interleaved (defect rate {s.defect_rate}, seed {s.seed}); backbone "
                 f"{self.config.features.backbone}.",
                 f"Static models: fitted on the first {self.fit_frames} frames of {runs[0]}, threshold = the "
                 f"{s.quantile} quantile of their scores on its last {self.calibration_frames} frames (held out). "
                 f"Their {runs[0]} row includes the frames they were fitted on.",
                 f"Streaming engine: every frame scored, then admitted; `stream-W`: the default rule, `auto` (a "
                 f"conformal threshold at false alarm rate {1 - s.quantile:.3g} over the last "
                 f"{self.decisions.calibration_size} scores of the frames whose top patches the channels kept where "
                 "they trust a fair share of frames, "
                 "else of every frame's score less those a robust screen puts outside normal; docs/alarms.md); "
                 "`stream-W+trusted` and `stream-W+screened`: one of the two calibrations alone; "
                 f"`stream-W+quantile`: the former rule, the {s.quantile} quantile of its last "
                 f"{self.decisions.calibration_size} scores (river), after {self.decisions.warmup} scores; frames "
                 "before the engine is ready count as not alarmed and are left out of its AUROCs.",
                 f"Static models with the engine's rule (`+auto`, `+quantile`, ...): their scores judged by that rule "
                 f"from the first frame they were not fitted on (their {runs[0]} row counts the fitted frames as not "
                 f"alarmed); `+auto` and `+trusted` take the channels' verdicts from the stream-"
                 f"{s.windows[0]} engine's channels. These rows separate what the window buys from what the "
                 "threshold rule buys."]
        rules = self.rule_check()
        if rules:
            notes += ["", "The engine's rules against the rolling quantile, at the same configured false alarm rate "
                      "(per run: defects found, false alarms):"] + rules
        check = self.target()
        if check:
            notes += ["", "Target, on the frames of the last two runs taken together: the streaming engine's false "
                      "alarm rate at most half of static InReaCh's, its frame AUROC at least static InReaCh's:"] + check
        return notes

    def markdown(self, command: str) -> str:
        """The per-run tables (frame AUROC, pixel AUROC, false alarm and detection rates) as Markdown."""
        return markdown(self.rows, [tr.method for tr in self.traces], command, self.notes())

    def payload(self, command: str) -> dict[str, Any]:
        """The JSON document: rows, the stream, every trace, timings and the target lines."""
        root = os.path.abspath(self.data_dir)
        return {"command": command, "runs": self.rows, "frames": len(self.stream), "defective": int(sum(self.labels)),
                "stream": [{"image": os.path.relpath(fr.sample.path, root), "run": fr.run,
                            "label": fr.sample.label} for fr in self.stream],
                "traces": {tr.method: {"scores": tr.scores, "thresholds": tr.thresholds, "drift": tr.drift,
                                       **tr.info} for tr in self.traces},
                "seconds": self.seconds, "target": self.target()}


def evaluate_drift(data_dir: str, stream: list[StreamFrame], settings: DriftSettings, config: InReachConfig,
                   progress: bool = True) -> DriftReport:
    """Run every method of ``settings`` on ``stream`` (from :func:`build_stream`) and measure each run."""
    labels = [f.sample.label for f in stream]
    desc = descriptors_of_paths([f.sample.path for f in stream], config, settings.cache, progress)
    f = config.features
    frame_runs = np.asarray([fr.run for fr in stream])
    first = np.flatnonzero(frame_runs == settings.runs[0])
    n_cal = max(1, int(round(settings.calibration * len(first))))
    fit, calibrate = first[:-n_cal], first[-n_cal:]
    try:
        decisions = DecisionConfig(rule="quantile", quantile=settings.quantile, warmup=settings.warmup)
        rules = {rule: DecisionConfig(rule=rule, quantile=settings.quantile, warmup=settings.warmup)
                 for rule in settings.rules}
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    traces: list[MethodTrace] = []
    seconds: dict[str, float] = {}
    for m in settings.methods:
        for name, run in _method_runs(m, settings, config, rules, desc, fit, calibrate, progress):
            t0 = time.perf_counter()
            traces.append(run())
            seconds[name] = time.perf_counter() - t0
    traces += _static_with_rules(traces, settings, rules, int(len(fit)))
    masks = np.stack([read_mask(fr.sample, tuple(f.image_size), f.center_crop) for fr in stream])
    rows = _rows(traces, list(frame_runs), labels, masks, tuple(f.image_size), config.heatmap.blur_sigma)
    return DriftReport(data_dir, settings, config, stream, traces, rows, len(fit), len(calibrate), decisions, seconds)


def build_stream(data_dir: str, settings: DriftSettings) -> list[StreamFrame]:
    """The drifting stream from the manifest; every image of it must lie inside ``data_dir``."""
    manifest = settings.manifest or os.path.join(os.path.dirname(os.path.abspath(data_dir)), "manifest.csv")
    runs = list(settings.runs)
    stream = build_drift_stream(read_manifest(manifest, runs), runs, settings.defect_rate, settings.seed)
    root = os.path.abspath(data_dir)
    outside = [f.sample.path for f in stream if not os.path.abspath(f.sample.path).startswith(root + os.sep)]
    if outside:
        raise UserError(f"{len(outside)} manifest image(s) lie outside DATA_DIR {data_dir}, e.g. {outside[0]}")
    return stream


def _method_runs(method: str, settings: DriftSettings, config: InReachConfig, rules: dict[str, DecisionConfig],
                 desc: np.ndarray, fit: np.ndarray, calibrate: np.ndarray, progress: bool) -> list[tuple[str, Any]]:
    """(name, a call that returns its trace) for ``method``: one per window and rule for ``stream``."""
    f = config.features
    size, grid = tuple(f.image_size), tuple(f.grid)
    decisions = DecisionConfig(rule="quantile", quantile=settings.quantile, warmup=settings.warmup)
    if method == "stream":
        out = []
        for w in settings.windows:
            for rule, dc in rules.items():
                try:
                    # the engine's own index (StreamConfig's default: the inverted file), as users run it
                    sc = StreamConfig(window=w, features=f, channels=config.channels, heatmap=config.heatmap,
                                      decisions=dc, seed=config.seed, memory=settings.memory)
                except ValueError as exc:
                    raise UserError(f"--windows: {exc}") from exc
                name = method_name(f"stream-{w}", rule)
                out.append((name, lambda sc=sc, name=name: trace_stream(name, desc, sc, grid, size, progress)))
        return out

    def static() -> MethodTrace:
        model = make_static_model(method.split("-", 1)[1], config.channels, IndexConfig(), config.seed)
        return trace_static(method, model, desc, fit, calibrate, grid, size, config.heatmap.blur_sigma,
                            settings.quantile, decisions.drift, decisions.drift_delta, config.seed, progress=progress)

    return [(method, static)]


def _static_with_rules(traces: list[MethodTrace], settings: DriftSettings, rules: dict[str, DecisionConfig],
                       start: int) -> list[MethodTrace]:
    """Every static model's scores judged by each engine rule too (:func:`~streamad.evaluation.drift_eval.apply_rule`),
    from frame ``start`` (the first not fitted on); the trusted rule takes the first trusted engine's verdicts."""
    engine = next((tr for tr in traces if tr.method.startswith("stream-") and tr.info.get("rule") in ("auto", "trusted")),
                  None)
    out = []
    for tr in [t for t in traces if t.method in STATIC]:
        for rule, dc in rules.items():
            if rule in ("auto", "trusted") and engine is None:
                continue
            out.append(apply_rule(method_name(tr.method, rule), tr, dc, start,
                                  engine.verdicts if engine is not None and rule in ("auto", "trusted") else ()))
    return out


def rules_check(rows: list[dict[str, Any]], windows: tuple[int, ...], defect_rate: float) -> list[str]:
    """For each window, the engine with each of the new rules (``stream-W``: trusted, ``stream-W+screened``)
    against ``stream-W+quantile`` run by run: defects found and false alarms; at least as many defects found
    in every run, and at a defect rate of 0.2 or more at least twice as many over the stream."""
    by = {(r["run"], r["method"]): r for r in rows}
    runs = list(dict.fromkeys(r["run"] for r in rows))
    out = []
    for w, new in ((w, m) for w in windows for m in (f"stream-{w}", f"stream-{w}+trusted", f"stream-{w}+screened")):
        old = f"stream-{w}+quantile"
        if not all((run, m) in by for run in runs for m in (new, old)):
            continue
        cells, every, found = [], True, [0, 0]
        for run in runs:
            a, b = by[(run, new)], by[(run, old)]
            hits_a = round((a["detection_rate"] or 0.0) * a["defective"])
            hits_b = round((b["detection_rate"] or 0.0) * b["defective"])
            found[0] += hits_a
            found[1] += hits_b
            every &= hits_a >= hits_b
            cells.append(f"{run} {hits_a} vs {hits_b} of {a['defective']} (false alarms {_fmt(a['false_alarm_rate'])} "
                         f"vs {_fmt(b['false_alarm_rate'])})")
        line = (f"- {new} vs {old}: " + "; ".join(cells) + f". In every run at least as many found -> "
                f"{'target met' if every else 'target NOT met'}")
        if defect_rate >= 0.2:
            line += (f"; over the stream {found[0]} vs {found[1]} (target >= 2x) -> "
                     f"{'target met' if found[0] >= 2 * found[1] else 'target NOT met'}")
        out.append(line)
    return out


def _rows(traces: list[MethodTrace], frame_runs: list[str], labels: list[int], masks: np.ndarray,
          size: tuple[int, int], blur: float) -> list[dict[str, Any]]:
    """Per-run metrics of every trace, pixel AUROC from its patch scores' heatmaps."""
    rows: list[dict[str, Any]] = []
    for tr in traces:
        def pix(frames: np.ndarray, tr: MethodTrace = tr) -> float | None:
            if not masks[frames].any():
                return None
            heat = np.stack([heatmap_from_patch_scores(tr.patch_scores[i], size, blur) for i in frames])
            return pixel_auroc(heat, masks[frames])
        rows += per_run_metrics(tr.method, frame_runs, labels, tr.scores, tr.thresholds, pix)
    return rows


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def markdown(rows: list[dict[str, Any]], methods: list[str], command: str, notes: list[str]) -> str:
    """One Markdown table per metric: a row per method, a column per run."""
    runs = list(dict.fromkeys(r["run"] for r in rows))
    by = {(r["run"], r["method"]): r for r in rows}
    lines = ["# Drifting stream: per-run results", "", f"Command: `{command}`", ""] + notes + [""]
    for key, title in (("frame_auroc", "frame AUROC"), ("pixel_auroc", "pixel AUROC"),
                       ("false_alarm_rate", "false alarm rate"), ("detection_rate", "detection rate")):
        lines += [f"**{title}**", "", "| method | " + " | ".join(runs) + " |", "|---" * (len(runs) + 1) + "|"]
        for m in methods:
            lines.append(f"| {m} | " + " | ".join(_fmt(by[(r, m)][key]) for r in runs) + " |")
        lines.append("")
    return "\n".join(lines)


def last_runs_check(traces: list[Any], labels: list[int], frame_runs: list[str], runs: list[str],
                    last: int = 2) -> list[str]:
    """The target on the last ``last`` runs taken together (their frames pooled): each streaming engine's
    false alarm rate at most half of static InReaCh's, and its frame AUROC at least static InReaCh's."""
    tail = set(runs[-last:])
    segment = ["+".join(runs[-last:]) if r in tail else r for r in frame_runs]
    pooled = {tr.method: next(r for r in per_run_metrics(tr.method, segment, labels, tr.scores, tr.thresholds)
                              if r["run"] == "+".join(runs[-last:])) for tr in traces}
    ref = pooled.get("static-inreach")
    if ref is None or ref["frame_auroc"] is None or ref["false_alarm_rate"] is None:
        return []
    out = []
    for m, row in pooled.items():
        if not m.startswith("stream-") or row["frame_auroc"] is None or row["false_alarm_rate"] is None:
            continue
        ok = row["false_alarm_rate"] <= 0.5 * ref["false_alarm_rate"] and row["frame_auroc"] >= ref["frame_auroc"]
        out.append(f"- {m} on {' + '.join(runs[-last:])} ({row['frames']} frames, {row['defective']} defective): "
                   f"false alarm rate {row['false_alarm_rate']:.3f} vs static-inreach {ref['false_alarm_rate']:.3f} "
                   f"(target <= {0.5 * ref['false_alarm_rate']:.3f}), frame AUROC {row['frame_auroc']:.3f} vs "
                   f"{ref['frame_auroc']:.3f} (target >= {ref['frame_auroc']:.3f}) -> "
                   f"{'target met' if ok else 'target NOT met'}")
    return out
