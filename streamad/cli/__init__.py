"""The ``streamad`` command line: one subcommand per module in ``streamad.cli``.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from streamad.errors import UserError

# Subcommand modules, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = (
    "streamad.cli.eval",
    "streamad.cli.compare",
    "streamad.cli.eval_stream",
    "streamad.cli.eval_alarms",
    "streamad.cli.watch",
    "streamad.cli.serve",
    "streamad.cli.listen",
    "streamad.cli.keys",
    "streamad.cli.bench",
    "streamad.cli.bench_engine",
    "streamad.cli.bench_serve",
    "streamad.cli.soak",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamad",
        description="Streaming, unsupervised image anomaly detection: learns what normal looks like "
        "from the unlabeled stream itself (incremental InReaCh) and scores every frame.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module_name in COMMANDS:
        module = importlib.import_module(module_name)
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"streamad {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
