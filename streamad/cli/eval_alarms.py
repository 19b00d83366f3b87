"""Alarm rules on the demo stream: threshold, detection and false alarm rates at several defect rates.

For each --rates value the built-in demo stream (--frames frames of --size pixels, --seed) is
rendered and its descriptors extracted once; the streaming engine (--preset, synchronous learning, so
the run is deterministic) then processes them once per rule: "auto" (the default: the threshold
learned from frames whose top patches the channels kept where they trust a fair share of frames,
else from every score less those a robust screen puts outside normal) and "quantile" (the former
rolling quantile of every score), both at --false-alarm-rate; "trusted" and "screened" on request. Reported per rate and rule: clean and defect score levels, the
threshold at the end, the first frame with a threshold, detection and false alarm rates over the
frames judged, and alarm events; then the targets of docs/alarms.md, and other calibration designs
replayed on the first auto or trusted run's records. Writes Markdown (--out) and JSON (--json).

examples:
  streamad eval-alarms --out docs/alarms_demo.md --json out/alarms_demo.json
  streamad eval-alarms --rates 0,0.2 --frames 600 --rules trusted
"""

from __future__ import annotations

import argparse
import shlex
import sys

from streamad.cli.options import add
from streamad.cli.report_files import write_report
from streamad.config import DECISION_RULES
from streamad.errors import UserError
from streamad.stream.presets import PRESETS

NAME = "eval-alarms"
HELP = "alarm rules on the demo stream at several defect rates: threshold, detection and false alarm rates"


def _floats(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rates", type=_floats, default=[0.0, 0.01, 0.05, 0.2], metavar="R,R",
                   help="demo defect rates (default 0,0.01,0.05,0.2)")
    p.add_argument("--frames", type=int, default=2000, metavar="N", help="frames per rate (default 2000)")
    p.add_argument("--size", type=int, default=256, metavar="PX", help="demo frame size (default 256)")
    add(p, "seed")
    p.add_argument("--preset", choices=tuple(PRESETS), default="fast", help="engine preset (default fast)")
    add(p, "false_alarm_rate", "rules", "cache", "out", "json", "quiet")


def run(args: argparse.Namespace) -> int:
    from streamad.bench.alarms import AlarmSettings, evaluate_alarms

    rules = tuple(r.strip() for r in args.rules.split(",") if r.strip())
    if not rules or any(r not in DECISION_RULES for r in rules):
        raise UserError(f"--rules: choose from {', '.join(DECISION_RULES)}, got {args.rules!r}")
    if not args.rates or any(not 0.0 <= r < 1.0 for r in args.rates):
        raise UserError(f"--rates must be defect rates in [0, 1), got {args.rates}")
    if args.frames < 100:
        raise UserError(f"--frames must be >= 100, got {args.frames}")
    try:
        rate = {} if args.false_alarm_rate is None else {"false_alarm_rate": args.false_alarm_rate}
        settings = AlarmSettings(rates=tuple(args.rates), frames=args.frames, size=args.size, preset=args.preset,
                                 seed=args.seed, rules=rules, **rate)
        from streamad.adapters.sources.demo import DemoConfig

        DemoConfig(size=args.size, seed=args.seed)
        from streamad.bench.alarms import engine_config

        for rule in rules:
            engine_config(settings, rule)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    report = evaluate_alarms(settings, progress=not args.quiet, cache=args.cache)
    command = "streamad " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "streamad eval-alarms"
    text = report.markdown(command)
    print(text)
    write_report(text, report.payload(command), out=args.out, json_path=args.json)
    return 0
