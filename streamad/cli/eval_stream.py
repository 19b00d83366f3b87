"""Per-run metrics on a drifting stream: does the sliding window follow the drift?

The stream: every nominal image of the chosen acquisition runs, run by run in acquisition order, with
defective images of the same run interleaved at --defect-rate (default 5%), built from the dataset's
manifest (for ../shared/data/mtd/magnetic_tile: ../shared/data/mtd/manifest.csv, whose runs exp1..exp6
grow brighter). On the same stream run:

  stream-W          the streaming engine with a W-frame window (one per --windows value): every frame is
                    scored, then admitted; threshold = its river quantile of recent scores
  static-inreach    batch InReaCh fitted on the first run only
  static-patchcore  PatchCore fitted on the first run only

The static models are fitted on the first run less its last --calibration share, and their fixed
threshold is the same --quantile of their scores on that held-out part. Reported per run: frame
AUROC, pixel AUROC, false alarm rate (nominal frames above threshold) and detection rate (defective
frames above threshold). Writes a Markdown table (--out), JSON (--json: a list "runs" of objects with
keys run, method, frame_auroc, pixel_auroc, false_alarm_rate, detection_rate) and a PNG of the scores
over time (--plot).

examples:
  streamad eval-stream ../shared/data/mtd/magnetic_tile --cache out/drift --out docs/drift_mtd.md \\
      --plot docs/drift_mtd.png --json out/drift_mtd.json
  streamad eval-stream ../shared/data/mtd/magnetic_tile --windows 64 --methods stream --defect-rate 0.1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import sys
import time
from dataclasses import asdict
from typing import Any

import numpy as np

from streamad.errors import UserError
from streamad.cli.eval import add_model_arguments, config_from_args

NAME = "eval-stream"
HELP = "per-run AUROC, false alarm and detection rates on a drifting stream: streaming engine vs static models"

STATIC = ("static-inreach", "static-patchcore")


def _list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _windows(text: str) -> list[int]:
    try:
        values = [int(t) for t in _list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--windows takes comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("--windows needs at least one value")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_dir", metavar="DATA_DIR", help="dataset folder (images referenced by the manifest)")
    p.add_argument("--manifest", metavar="CSV", default=None,
                   help="manifest with columns image,label,mask,run (default: DATA_DIR/../manifest.csv)")
    p.add_argument("--runs", default="exp1,exp2,exp3,exp4,exp5,exp6",
                   help="acquisition runs in stream order (default exp1..exp6)")
    p.add_argument("--defect-rate", type=float, default=0.05, metavar="R",
                   help="share of defective frames interleaved in each run (default 0.05)")
    p.add_argument("--methods", default="stream," + ",".join(STATIC),
                   help="comma-separated: stream (one per --windows), static-inreach, static-patchcore (default all)")
    p.add_argument("--windows", type=_windows, default=[64, 128], metavar="W,W",
                   help="window sizes of the streaming engine (default 64,128)")
    p.add_argument("--quantile", type=float, default=0.99,
                   help="alarm quantile of recent scores (engine) / of calibration scores (static) (default 0.99)")
    p.add_argument("--warmup", type=int, default=30, metavar="N",
                   help="scores the engine sees before it sets a threshold (default 30)")
    p.add_argument("--calibration", type=float, default=0.2, metavar="F",
                   help="share of the first run held out to set the static models' threshold (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed for the defect choice and positions (default 0)")
    p.add_argument("--cache", metavar="DIR", default=None, help="keep the stream's descriptors in DIR and reuse them")
    p.add_argument("--out", metavar="FILE.md", default=None, help="write the per-run table as Markdown")
    p.add_argument("--json", metavar="FILE", default=None, help="write the results as JSON")
    p.add_argument("--plot", metavar="FILE.png", default=None, help="write scores over time, one panel per method")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_model_arguments(p)


def _descriptors(paths: list[str], config: Any, cache: str | None, progress: bool) -> np.ndarray:
    """(N, P, d) float32 descriptors of ``paths``, reusing ``cache`` when it holds them."""
    from streamad.evaluation.datasets import descriptors_of_files
    from streamad.vision.features import PatchFeatureExtractor

    blob = json.dumps({"paths": [os.path.realpath(p) for p in paths], "features": asdict(config.features)},
                      sort_keys=True, default=str)
    key = "drift-" + hashlib.sha256(blob.encode()).hexdigest()[:16]
    path = os.path.join(cache, key + ".npy") if cache else ""
    if path and os.path.isfile(path):
        return np.load(path, mmap_mode="r", allow_pickle=False)
    extractor = PatchFeatureExtractor(config.features)
    desc = descriptors_of_files(paths, extractor, "features", progress).astype(np.float32, copy=False)
    if path:
        os.makedirs(cache, exist_ok=True)  # type: ignore[arg-type]
        tmp = path + ".tmp.npy"
        np.save(tmp, desc)
        os.replace(tmp, path)
    return desc


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def markdown(rows: list[dict[str, Any]], methods: list[str], command: str, notes: list[str]) -> str:
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
    from streamad.evaluation.stream_metrics import per_run_metrics

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


def run(args: argparse.Namespace) -> int:
    from streamad.config import DecisionConfig, IndexConfig, StreamConfig
    from streamad.evaluation.datasets import read_mask
    from streamad.evaluation.drift_eval import make_static_model, trace_static, trace_stream
    from streamad.evaluation.drift_stream import build_drift_stream, read_manifest
    from streamad.vision.heatmap import heatmap_from_patch_scores
    from streamad.evaluation.metrics import pixel_auroc
    from streamad.evaluation.stream_metrics import per_run_metrics

    progress = not args.quiet
    methods = _list(args.methods)
    bad = [m for m in methods if m not in ("stream",) + STATIC]
    if bad or not methods:
        raise UserError(f"--methods: unknown {', '.join(bad) or '(none)'}; choose from stream, {', '.join(STATIC)}")
    if not 0.0 < args.calibration < 0.9:
        raise UserError(f"--calibration must be in (0, 0.9), got {args.calibration}")
    if not 0.0 < args.quantile < 1.0:
        raise UserError(f"--quantile must be in (0, 1), got {args.quantile}")
    if args.positional == "on":
        raise UserError("--positional on is not supported here: every method of eval-stream scores the plain "
                        "patch descriptors (as the streaming engine does); use auto or off")
    config = config_from_args(args)
    manifest = args.manifest or os.path.join(os.path.dirname(os.path.abspath(args.data_dir)), "manifest.csv")
    runs = _list(args.runs)
    stream = build_drift_stream(read_manifest(manifest, runs), runs, args.defect_rate, args.seed)
    data_root = os.path.abspath(args.data_dir)
    outside = [f.sample.path for f in stream if not os.path.abspath(f.sample.path).startswith(data_root + os.sep)]
    if outside:
        raise UserError(f"{len(outside)} manifest image(s) lie outside DATA_DIR {args.data_dir}, e.g. {outside[0]}")
    labels = [f.sample.label for f in stream]
    frame_runs = [f.run for f in stream]
    print(f"stream: {len(stream)} frames, {sum(labels)} defective, runs {', '.join(runs)}", file=sys.stderr)

    desc = _descriptors([f.sample.path for f in stream], config, args.cache, progress)
    f = config.features
    size, grid, blur = tuple(f.image_size), tuple(f.grid), config.heatmap.blur_sigma
    masks = np.stack([read_mask(fr.sample, size, f.center_crop) for fr in stream])

    first = np.flatnonzero(np.asarray(frame_runs) == runs[0])
    n_cal = max(1, int(round(args.calibration * len(first))))
    fit, calibrate = first[:-n_cal], first[-n_cal:]
    try:
        decisions = DecisionConfig(quantile=args.quantile, warmup=args.warmup)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    traces = []
    timings: dict[str, float] = {}
    for m in methods:
        if m == "stream":
            for w in args.windows:
                try:
                    sc = StreamConfig(window=w, features=f, channels=config.channels, heatmap=config.heatmap,
                                      index=IndexConfig(), decisions=decisions, seed=config.seed)
                except ValueError as exc:
                    raise UserError(f"--windows: {exc}") from exc
                t0 = time.perf_counter()
                traces.append(trace_stream(f"stream-{w}", desc, sc, grid, size, progress))
                timings[f"stream-{w}"] = time.perf_counter() - t0
        else:
            kind = m.split("-", 1)[1]
            t0 = time.perf_counter()
            model = make_static_model(kind, config.channels, IndexConfig(), config.seed)
            traces.append(trace_static(m, model, desc, fit, calibrate, grid, size, blur, args.quantile,
                                       decisions.drift, decisions.drift_delta, config.seed, progress=progress))
            timings[m] = time.perf_counter() - t0

    rows: list[dict[str, Any]] = []
    for tr in traces:
        def pix(frames: np.ndarray, tr: Any = tr) -> float | None:
            if not masks[frames].any():
                return None
            heat = np.stack([heatmap_from_patch_scores(tr.patch_scores[i], size, blur) for i in frames])
            return pixel_auroc(heat, masks[frames])
        rows += per_run_metrics(tr.method, frame_runs, labels, tr.scores, tr.thresholds, pix)

    names = [tr.method for tr in traces]
    check = last_runs_check(traces, labels, frame_runs, runs)
    command = "streamad " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "streamad eval-stream"
    notes = [f"Stream: {len(stream)} frames of runs {', '.join(runs)} in acquisition order, {sum(labels)} defective "
             f"frames interleaved (defect rate {args.defect_rate}, seed {args.seed}); backbone {f.backbone}.",
             f"Static models: fitted on the first {len(fit)} frames of {runs[0]}, threshold = the {args.quantile} "
             f"quantile of their scores on its last {len(calibrate)} frames (held out). Their {runs[0]} row "
             f"includes the frames they were fitted on.",
             f"Streaming engine: every frame scored, then admitted; threshold = the {args.quantile} quantile of "
             f"its last {decisions.window} scores (river), after {decisions.warmup} scores; frames before the "
             "engine is ready count as not alarmed and are left out of its AUROCs."]
    if check:
        notes += ["", "Target, on the frames of the last two runs taken together: the streaming engine's false alarm "
                  "rate at most half of static InReaCh's, its frame AUROC at least static InReaCh's:"] + check
    text = markdown(rows, names, command, notes)
    print(text)
    for path in (args.out, args.json, args.plot):
        if path and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")
    if args.json:
        payload = {"command": command, "runs": rows, "frames": len(stream), "defective": int(sum(labels)),
                   "stream": [{"image": os.path.relpath(fr.sample.path, data_root), "run": fr.run,
                               "label": fr.sample.label} for fr in stream],
                   "traces": {tr.method: {"scores": tr.scores, "thresholds": tr.thresholds, "drift": tr.drift,
                                          **tr.info} for tr in traces},
                   "seconds": timings, "target": check}
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=1)
    if args.plot:
        from streamad.adapters.drift_plot import plot_stream_traces

        plot_stream_traces(traces, labels, frame_runs, args.plot,
                           title=f"{os.path.basename(os.path.normpath(args.data_dir))}: frame scores over a drifting "
                           f"stream ({', '.join(runs)})")
    return 0
