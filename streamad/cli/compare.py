"""Compare detectors under the corruption protocol: a method x K grid of image and pixel AUROC.

For every dataset, method and K in --corrupt, the training images plus K randomly chosen anomalous
test images (unlabeled) are fitted and the whole test set is scored, as `streamad eval` does; the
results form a Markdown table in the layout of the InReaCh paper's Table 3. DATA_DIR is one dataset
in the MVTec AD layout, or a folder of such datasets (each is measured, and the mean is added); it is
used as given when it exists, else looked up under --data-root or $STREAMAD_DATA.

examples:
  streamad compare mvtec_ad/bottle --data-root ../shared/data --corrupt 0,10,40 --out docs/bottle.md
  STREAMAD_DATA=../shared/data streamad compare mtd/magnetic_tile --methods patchcore,spade --json mtd.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from dataclasses import asdict
from typing import Any

from streamad.cli.eval import add_data_root_argument, add_model_arguments, config_from_args
from streamad.cli.options import add
from streamad.errors import UserError

NAME = "compare"
HELP = "image/pixel AUROC of several methods with 0, 10, 40 corrupt training images, as a Markdown table"

METHODS = ("inreach", "patchcore", "spade", "pni")


def _names(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(t.strip().lower() for t in text.split(",") if t.strip()))
    if not names:
        raise argparse.ArgumentTypeError("expected comma-separated method names, e.g. inreach,patchcore")
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    return names


def _counts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(dict.fromkeys(int(t) for t in text.split(",") if t.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 0,10,40, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0, got {text!r}")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_dir", metavar="DATA_DIR",
                   help="a dataset in the MVTec AD layout, or a folder of such datasets")
    p.add_argument("--methods", type=_names, default=METHODS, metavar="M1,M2",
                   help=f"methods to compare (default {','.join(METHODS)})")
    p.add_argument("--corrupt", type=_counts, default=(0, 10, 40), metavar="K1,K2",
                   help="numbers of anomalous test images added to the training set (default 0,10,40)")
    add(p, "seed", "out", "json", "cache", "quiet")
    add_data_root_argument(p)
    add_model_arguments(p)


def _check_writable(option: str, path: str | None) -> None:
    folder = os.path.dirname(path) if path else ""
    if folder and not os.path.isdir(folder):
        raise UserError(f"cannot write {option} {path}: folder {folder} does not exist")


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def run(args: argparse.Namespace) -> int:
    from streamad.evaluation import comparison
    from streamad.evaluation.datasets import resolve_data_dir

    config = config_from_args(args)
    _check_writable("--out", args.out)
    _check_writable("--json", args.json)
    data_dir = resolve_data_dir(args.data_dir, args.data_root)
    datasets = comparison.find_datasets(data_dir)
    comparison.check_corrupt(datasets, args.corrupt)
    where = datasets[0] if len(datasets) == 1 else f"{data_dir} ({len(datasets)} datasets)"
    command = (f"streamad compare {shlex.quote(args.data_dir)} --methods {','.join(args.methods)} "
               f"--corrupt {','.join(map(str, args.corrupt))} --seed {args.seed}")
    header = comparison.render_header(where, config, command)

    def table(results: list[dict[str, Any]]) -> str:
        return comparison.render_markdown(results, args.methods, args.corrupt, header)

    # With --out, keep the file current, so a long run interrupted still leaves its table.
    keep = (lambda results: _write(args.out, table(results))) if args.out else None
    results = comparison.compare(datasets, args.methods, args.corrupt, args.seed, config, cache=args.cache,
                                 progress=not args.quiet, on_result=keep)
    if args.out:
        _write(args.out, table(results))
        print(f"wrote {args.out}")
    else:
        print(table(results), end="")
    if args.json:
        _write(args.json, json.dumps({"config": asdict(config), "results": results}, indent=2, default=str))
    return 0
