"""Aggregate frames per second of N demo cameras: one 'streamad serve' against N separate 'streamad watch'.

For each camera count in --cameras, runs one 'streamad serve' with that many demo cameras, then the
same number of 'streamad watch demo' processes at once, all with the same settings (--preset,
--window, --learning, --device) and --frames frames per camera, and prints a table: the aggregate
rate of each (every camera's frames over the span from the first loop's start to the last loop's
end, model loading excluded), their ratio, the per-camera rates (a camera's frames over its own loop
time), the slowest camera's share of the mean and serve's mean batch. Run it on a quiet machine:
every process shares the cores.

examples:
  streamad bench-serve --cameras 1 2 4 8 --frames 300
  streamad bench-serve --cameras 1 2 4 8 --frames 300 --workers 8      # serve's detectors in worker processes
  streamad bench-serve --cameras 1 2 4 8 16 32 --frames 300 --device cuda --out docs/serve_bench.md
  streamad bench-serve --cameras 4 --frames 300 --workers 8 --admit-every 8   # both sides learning alike
  streamad bench-serve --cameras 2 --frames 10 --preset fast       # a smoke test
"""

from __future__ import annotations

import argparse
import sys

from streamad.cli.options import add
from streamad.cli.report_files import write_report
from streamad.errors import UserError

NAME = "bench-serve"
HELP = "aggregate fps of N demo cameras: one 'streamad serve' against N separate 'streamad watch' processes"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4, 8], metavar="N", help="camera counts (1 2 4 8)")
    p.add_argument("--frames", type=int, default=300, metavar="F", help="frames per camera (default 300)")
    add(p, "preset", "window", "learning", "device")
    p.add_argument("--batch-wait-ms", type=float, default=None,
                   help="serve's [serve] batch_wait_ms (default: serve's own, 5 with a GPU backbone, no batches on "
                        "the CPU)")
    p.add_argument("--workers", type=int, default=0, metavar="N",
                   help="serve's [serve] workers: detection in N worker processes (default 0: on threads)")
    add(p, "admit_every")
    p.add_argument("--modes", default="serve,watch", help="serve, watch or both (default serve,watch)")
    add(p, "out", "json")


def run(args: argparse.Namespace) -> int:
    from streamad.bench.serve import measure, table

    if args.frames < 1:
        raise UserError(f"--frames must be >= 1, got {args.frames}")
    if args.workers < 0:
        raise UserError(f"--workers must be >= 0, got {args.workers}")
    if args.admit_every is not None and args.admit_every < 1:
        raise UserError(f"--admit-every must be >= 1, got {args.admit_every}")
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    if not modes or any(m not in ("serve", "watch") for m in modes):
        raise UserError(f"--modes must list serve and/or watch, got {args.modes!r}")
    rows = measure(args.cameras, args.frames, preset=args.preset, window=args.window, learning=args.learning,
                   device=args.device, batch_wait_ms=args.batch_wait_ms, workers=args.workers, modes=modes,
                   admit_every=args.admit_every,
                   progress=lambda line: print(f"streamad bench-serve: {line}", file=sys.stderr, flush=True))
    text = table(rows)
    print(text)
    write_report(text, [{"cameras": r.cameras, "mode": r.mode, "rates": list(r.rates), "aggregate": r.aggregate,
                         "wall_s": r.wall_s, **r.extra} for r in rows], out=args.out, json_path=args.json)
    return 0
