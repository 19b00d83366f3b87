"""Per-run metrics on a drifting stream: does the sliding window follow the drift?

The stream: every nominal image of the chosen acquisition runs, run by run in acquisition order, with
defective images of the same run interleaved at --defect-rate (default 5%), built from the dataset's
manifest (for mtd/magnetic_tile: mtd/manifest.csv, whose runs exp1..exp6 grow brighter). On the same
stream run:

  stream-W          the streaming engine with a W-frame window (one per --windows value): every frame is
                    scored, then admitted; threshold = the default rule, auto (learned from frames whose
                    top patches the channels kept where they trust a fair share of frames, else from every
                    score less those a robust screen puts outside normal; docs/alarms.md) at false alarm
                    rate 1 - --quantile
  stream-W+RULE     the same engine with another --rules rule (quantile: the former rolling quantile)
  static-inreach    batch InReaCh fitted on the first run only
  static-patchcore  PatchCore fitted on the first run only
  static-X+RULE     a static model's scores judged by the engine's rule (from its first frame not fitted
                    on; +auto and +trusted take the first stream-W engine's verdicts): what the window buys
                    apart from what the threshold rule buys

The static models are fitted on the first run less its last --calibration share, and their fixed
threshold is the same --quantile of their scores on that held-out part. Reported per run: frame
AUROC, pixel AUROC, false alarm rate (nominal frames above threshold) and detection rate (defective
frames above threshold). Writes a Markdown table (--out), JSON (--json: a list "runs" of objects with
keys run, method, frame_auroc, pixel_auroc, false_alarm_rate, detection_rate) and a PNG of the scores
over time (--plot). DATA_DIR is used as given when it exists, else looked up under --data-root or
$STREAMAD_DATA.

examples:
  export STREAMAD_DATA=../shared/data
  streamad eval-stream mtd/magnetic_tile --cache out/drift --out docs/drift_mtd.md \\
      --plot docs/drift_mtd.png --json out/drift_mtd.json
  streamad eval-stream mtd/magnetic_tile --windows 64 --methods stream --defect-rate 0.1
  streamad eval-stream mtd/magnetic_tile --windows 64 --methods stream --memory 60000
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys

from streamad.cli.eval import (add_data_root_argument, add_memory_arguments, add_model_arguments, config_from_args,
                               memory_from_args, refuse_batch_only)
from streamad.cli.options import add
from streamad.cli.report_files import write_report
from streamad.config import DECISION_RULES
from streamad.errors import UserError

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
    add(p, "rules")
    p.add_argument("--quantile", type=float, default=0.99,
                   help="alarm quantile of recent scores (engine) / of calibration scores (static) (default 0.99)")
    p.add_argument("--warmup", type=int, default=30, metavar="N",
                   help="scores the engine sees before it sets a threshold (default 30)")
    p.add_argument("--calibration", type=float, default=0.2, metavar="F",
                   help="share of the first run held out to set the static models' threshold (default 0.2)")
    add(p, "seed", "cache", "out", "json")
    p.add_argument("--plot", metavar="FILE.png", default=None, help="write scores over time, one panel per method")
    add(p, "quiet")
    add_memory_arguments(p.add_argument_group("the engine's long-term memory (stream methods)"))
    add_data_root_argument(p)
    add_model_arguments(p, image_score="max")  # the streaming engine's frame score (and the figures of docs/drift_mtd.md)


def _check(args: argparse.Namespace, methods: list[str]) -> None:
    bad = [m for m in methods if m not in ("stream",) + STATIC]
    if bad or not methods:
        raise UserError(f"--methods: unknown {', '.join(bad) or '(none)'}; choose from stream, {', '.join(STATIC)}")
    if not 0.0 < args.calibration < 0.9:
        raise UserError(f"--calibration must be in (0, 0.9), got {args.calibration}")
    if not 0.0 < args.quantile < 1.0:
        raise UserError(f"--quantile must be in (0, 1), got {args.quantile}")
    rules = _list(args.rules)
    if not rules or any(r not in DECISION_RULES for r in rules):
        raise UserError(f"--rules: choose from {', '.join(DECISION_RULES)}, got {args.rules!r}")
    if args.positional == "on":
        raise UserError("--positional on is not supported here: every method of eval-stream scores the plain "
                        "patch descriptors (as the streaming engine does); use auto or off")


def run(args: argparse.Namespace) -> int:
    from streamad.evaluation.datasets import resolve_data_dir
    from streamad.evaluation.drift_report import DriftSettings, build_stream, evaluate_drift

    methods = _list(args.methods)
    _check(args, methods)
    config = config_from_args(args, engine="stream")
    refuse_batch_only(config)  # the static models too keep the paper's seeds
    data_dir = resolve_data_dir(args.data_dir, args.data_root)
    settings = DriftSettings(runs=tuple(_list(args.runs)), defect_rate=args.defect_rate, methods=tuple(methods),
                             windows=tuple(args.windows), rules=tuple(_list(args.rules)), quantile=args.quantile,
                             warmup=args.warmup,
                             calibration=args.calibration, seed=args.seed, manifest=args.manifest, cache=args.cache,
                             memory=memory_from_args(args))
    stream = build_stream(data_dir, settings)
    print(f"stream: {len(stream)} frames, {sum(f.sample.label for f in stream)} defective, "
          f"runs {', '.join(settings.runs)}", file=sys.stderr)
    report = evaluate_drift(data_dir, stream, settings, config, progress=not args.quiet)

    command = "streamad " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "streamad eval-stream"
    text = report.markdown(command)
    print(text)
    write_report(text, report.payload(command), out=args.out, json_path=args.json, also=[args.plot])
    if args.plot:
        from streamad.display.drift_plot import plot_stream_traces

        plot_stream_traces(report.traces, report.labels, report.frame_runs, args.plot,
                           title=f"{os.path.basename(os.path.normpath(data_dir))}: frame scores over a drifting "
                           f"stream ({', '.join(settings.runs)})")
    return 0
