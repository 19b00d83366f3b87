"""Compare detectors under the corruption protocol: a method x K grid of image and pixel AUROC.

For every dataset, method and K in --corrupt, the training images plus K randomly chosen anomalous
test images (unlabeled) are fitted and the whole test set is scored, as `streamad eval` does; the
results form a Markdown table in the layout of the InReaCh paper's Table 3. DATA_DIR is one dataset
in the MVTec AD layout, or a folder of such datasets (each is measured, and the mean is added).

examples:
  streamad compare ../shared/data/mvtec_ad/bottle --corrupt 0,10,40 --out docs/bottle.md
  streamad compare ../shared/data/mtd/magnetic_tile --methods patchcore,spade --json mtd.json
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from dataclasses import asdict
from typing import Any

from tqdm.auto import tqdm

from ..errors import UserError
from .eval import add_model_arguments, config_from_args

NAME = "compare"
HELP = "image/pixel AUROC of several methods with 0, 10, 40 corrupt training images, as a Markdown table"

METHODS = ("inreach", "patchcore", "spade", "pni")
METRICS = (("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"))


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
    p.add_argument("--seed", type=int, default=0, help="seed for the corruption choice, order and models (default 0)")
    p.add_argument("--out", metavar="FILE.md", help="write the Markdown table here (default: print it)")
    p.add_argument("--json", metavar="FILE", help="also write every result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_arguments(p)


def find_datasets(data_dir: str) -> list[str]:
    """``data_dir`` itself when it has ``train/``, else its sub-folders that do (sorted)."""
    if not os.path.isdir(data_dir):
        raise UserError(f"dataset folder not found: {data_dir}")
    if os.path.isdir(os.path.join(data_dir, "train")):
        return [data_dir]
    found = sorted(os.path.join(data_dir, d) for d in os.listdir(data_dir)
                   if os.path.isdir(os.path.join(data_dir, d, "train")))
    if not found:
        raise UserError(f"{data_dir} is neither a dataset (no train/ folder) nor a folder of datasets")
    return found


def _check_writable(option: str, path: str | None) -> None:
    folder = os.path.dirname(path) if path else ""
    if folder and not os.path.isdir(folder):
        raise UserError(f"cannot write {option} {path}: folder {folder} does not exist")


def _check_corrupt(datasets: list[str], corrupt: tuple[int, ...]) -> None:
    """Fail before the long run when a dataset has fewer anomalous test images than the largest K."""
    from ..data import load_dataset

    for path in datasets:
        available = sum(s.label for s in load_dataset(path).test)
        if max(corrupt) > available:
            raise UserError(f"--corrupt {max(corrupt)} is more than the {available} anomalous test images of {path}")


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_markdown(results: list[dict[str, Any]], methods: tuple[str, ...], corrupt: tuple[int, ...],
                    header: str = "") -> str:
    """A Markdown table: one row per (dataset, method), image then pixel AUROC for each K.

    With several datasets, a ``mean`` row per method averages the datasets that have every value.
    """
    datasets = list(dict.fromkeys(r["dataset"] for r in results))
    table = {(r["dataset"], r["method"], r["corrupt"]): r for r in results}
    many = len(datasets) > 1
    cols = [f"{label} K={k}" for _, label in METRICS for k in corrupt]
    head = (["dataset"] if many else []) + ["method"] + cols
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for ds in datasets:
        for m in methods:
            values = [table.get((ds, m, k), {}).get(key) for key, _ in METRICS for k in corrupt]
            lines.append("| " + " | ".join(([os.path.basename(os.path.normpath(ds))] if many else []) + [m]
                                           + [_cell(v) for v in values]) + " |")
    if many:
        for m in methods:
            means = []
            for key, _ in METRICS:
                for k in corrupt:
                    vals = [table[(ds, m, k)][key] for ds in datasets if (ds, m, k) in table]
                    means.append(sum(vals) / len(vals) if len(vals) == len(datasets) else None)
            lines.append("| " + " | ".join(["mean", m] + [_cell(v) for v in means]) + " |")
    return (header + "\n\n" if header else "") + "\n".join(lines) + "\n"


def _header(args: argparse.Namespace, datasets: list[str], config: Any) -> str:
    f = config.features
    where = datasets[0] if len(datasets) == 1 else f"{args.data_dir} ({len(datasets)} datasets)"
    return (f"# Corruption comparison: {where}\n\n"
            f"Backbone `{f.backbone}`, input {f.image_size[0]}x{f.image_size[1]}, grid {f.grid[0]}x{f.grid[1]}, "
            f"descriptor dim {f.dim}, seed {args.seed}. K = anomalous test images added to the (unlabeled) "
            f"training set; the whole test set is scored.\n\n"
            f"Grid: `streamad compare {shlex.quote(args.data_dir)} --methods {','.join(args.methods)} "
            f"--corrupt {','.join(map(str, args.corrupt))} --seed {args.seed}` (plus the feature options above).")


def run(args: argparse.Namespace) -> int:
    from .. import evaluation

    config = config_from_args(args)
    _check_writable("--out", args.out)
    _check_writable("--json", args.json)
    datasets = find_datasets(args.data_dir)
    _check_corrupt(datasets, args.corrupt)
    header = _header(args, datasets, config)

    grid = [(ds, m, k) for ds in datasets for m in args.methods for k in args.corrupt]
    results: list[dict[str, Any]] = []
    with tqdm(grid, desc="compare", unit="run", disable=args.quiet) as bar:
        for ds, method, k in bar:
            bar.set_postfix_str(f"{os.path.basename(os.path.normpath(ds))} {method} K={k}")
            results.append(evaluation.evaluate(ds, method=method, corrupt=k, seed=args.seed, config=config,
                                               progress=False))
            if args.out:  # keep the file current, so a long run interrupted still leaves its table
                _write(args.out, render_markdown(results, args.methods, args.corrupt, header))
    text = render_markdown(results, args.methods, args.corrupt, header)
    if args.out:
        _write(args.out, text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    if args.json:
        _write(args.json, json.dumps({"config": asdict(config), "results": results}, indent=2, default=str))
    return 0


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)
