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
import hashlib
import json
import os
import shlex
import time
from dataclasses import asdict
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from streamad.errors import UserError
from streamad.cli.eval import add_model_arguments, config_from_args

NAME = "compare"
HELP = "image/pixel AUROC of several methods with 0, 10, 40 corrupt training images, as a Markdown table"

METHODS = ("inreach", "patchcore", "spade", "pni")
# Part of every --cache key: bump it when a scorer's code changes what it computes.
CACHE_VERSION = 1
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
    p.add_argument("--cache", metavar="DIR", default=None,
                   help="keep descriptors and per-run results in DIR (e.g. out/compare) and reuse them when the "
                   "data and every setting that determines them are unchanged")
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
    from streamad.evaluation.datasets import load_dataset

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
            f"Backbone `{f.backbone}`, input {f.image_size[0]}x{f.image_size[1]} (centre crop {f.center_crop:g} of the "
            f"resized image), grid {f.grid[0]}x{f.grid[1]}, descriptor dim at most {f.dim}, seed {args.seed}. K = anomalous test images added to the (unlabeled) "
            f"training set; the whole test set is scored.\n\n"
            f"Grid: `streamad compare {shlex.quote(args.data_dir)} --methods {','.join(args.methods)} "
            f"--corrupt {','.join(map(str, args.corrupt))} --seed {args.seed}` (plus the feature options above).")


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    _check_writable("--out", args.out)
    _check_writable("--json", args.json)
    datasets = find_datasets(args.data_dir)
    _check_corrupt(datasets, args.corrupt)
    header = _header(args, datasets, config)

    results: list[dict[str, Any]] = []
    total = len(datasets) * len(args.methods) * len(args.corrupt)
    with tqdm(total=total, desc="compare", unit="run", disable=args.quiet) as bar:
        for ds in datasets:
            shared = SharedDescriptors(ds, config, cache=args.cache, progress=not args.quiet)
            for k in args.corrupt:
                for method in args.methods:
                    bar.set_postfix_str(f"{os.path.basename(os.path.normpath(ds))} {method} K={k}")
                    results.append(shared.evaluate(method, k, args.seed))
                    bar.update()
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


class SharedDescriptors:
    """One dataset's descriptors, extracted once and shared by every (method, K) of the grid.

    The training stream for K is a reordering of the training images plus K test images, so the
    descriptors of every training and every test image are computed once (the extractor's output for an
    image does not depend on the batch it is in) and gathered per K. Each method is then fitted with
    ``fit_descriptors`` and scored with ``predict_descriptors``, as ``streamad eval --method M`` does
    after its own extraction: the results are the same. InReaCh's positional test runs on the training
    images as in ``InReaCh.fit``; if it chooses rotation alignment (the descriptors of rotated images),
    that run falls back to ``evaluation.evaluate``.

    With ``cache`` (a folder), descriptors and per-run results are kept there, keyed by a hash of the
    data, the stream and every setting that determines them, and reused by later runs.
    """

    def __init__(self, data_dir: str, config: Any, cache: str | None = None, progress: bool = False) -> None:
        from streamad.evaluation.datasets import load_dataset, read_mask
        from streamad.vision.features import PatchFeatureExtractor

        self.data_dir, self.config, self.cache, self.progress = data_dir, config, cache, progress
        self.dataset = load_dataset(data_dir)
        self._extractor: Any = None
        self._extractor_cls = PatchFeatureExtractor
        f = config.features
        self.size = f.image_size
        self.labels = np.array([s.label for s in self.dataset.test])
        self.masks = np.stack([read_mask(s, f.image_size, f.center_crop) for s in self.dataset.test])
        self._train: np.ndarray | None = None
        self._test: np.ndarray | None = None

    # ------------------------------------------------------------------ descriptors
    @property
    def extractor(self) -> Any:
        if self._extractor is None:
            self._extractor = self._extractor_cls(self.config.features)
        return self._extractor

    def _key(self, what: dict[str, Any]) -> str:
        blob = json.dumps({"version": CACHE_VERSION, "root": os.path.realpath(self.dataset.root), "train": [s.path for s in self.dataset.train],
                           "test": [s.path for s in self.dataset.test], "features": asdict(self.config.features),
                           **what}, sort_keys=True, default=str)
        name = os.path.basename(os.path.normpath(self.dataset.root)) or "data"
        return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"

    def _extract(self, samples: list, desc: str) -> np.ndarray:
        from streamad.evaluation.datasets import descriptors_of_files

        return descriptors_of_files([s.path for s in samples], self.extractor, desc, self.progress)

    def descriptors(self) -> tuple[np.ndarray, np.ndarray]:
        """(train (N, P, d), test (M, P, d)) of the dataset's own training and test images, in order."""
        if self._train is None or self._test is None:
            path = os.path.join(self.cache, self._key({"what": "descriptors"})) if self.cache else ""
            if path and os.path.isfile(path + ".test.npy"):
                self._train, self._test = (np.load(path + ".train.npy", allow_pickle=False),
                                           np.load(path + ".test.npy", allow_pickle=False))
            else:
                self._train = self._extract(list(self.dataset.train), "train features")
                self._test = self._extract(list(self.dataset.test), "test features")
                if path:
                    os.makedirs(self.cache, exist_ok=True)  # type: ignore[arg-type]
                    np.save(path + ".train.npy", self._train)
                    np.save(path + ".test.npy", self._test)
        return self._train, self._test

    def stream(self, corrupt: int, seed: int) -> tuple[list, np.ndarray]:
        """The training stream of ``evaluate`` for K = ``corrupt`` and its descriptors (N + K, P, d)."""
        from streamad.evaluation.datasets import training_stream

        order, _ = training_stream(self.dataset, corrupt, seed)
        train, test = self.descriptors()
        row = {s.path: ("train", i) for i, s in enumerate(self.dataset.train)}
        row.update({s.path: ("test", i) for i, s in enumerate(self.dataset.test)})
        where = [row[s.path] for s in order]
        return order, np.stack([(train if part == "train" else test)[i] for part, i in where])

    # ------------------------------------------------------------------ one run
    def evaluate(self, method: str, corrupt: int, seed: int) -> dict[str, Any]:
        """The result ``evaluation.evaluate(data_dir, method, corrupt, seed, config)`` gives."""
        settings = self._settings(method)
        path = os.path.join(self.cache, self._key({"what": "result", "method": method, "corrupt": corrupt,
                                                   "seed": seed, "settings": settings}) + ".json") \
            if self.cache else ""
        if path and os.path.isfile(path):
            with open(path) as fh:
                result = json.load(fh)
            result["dataset"] = self.data_dir
            return result
        result = self._run(method, corrupt, seed)
        if path:
            os.makedirs(self.cache, exist_ok=True)  # type: ignore[arg-type]
            _write(path, json.dumps(result, indent=2, default=str))
        return result

    def _settings(self, method: str) -> dict[str, Any]:
        c = self.config
        if method == "inreach":
            return {"channels": asdict(c.channels), "positional": asdict(c.positional), "heatmap": asdict(c.heatmap),
                    "index": asdict(c.index), "seed": c.seed}
        from streamad.batch.baselines import make_patch_model

        return {"model": asdict(make_patch_model(method, seed=c.seed).config), "heatmap": asdict(c.heatmap)}

    def _run(self, method: str, corrupt: int, seed: int) -> dict[str, Any]:
        from streamad.evaluation import batch_eval
        from streamad.evaluation.datasets import patch_truth, read_image, read_mask
        from streamad.batch.inreach import InReaCh
        from streamad.evaluation.metrics import auroc, filter_precision_recall, pixel_auroc
        from streamad.batch.image_detector import ImageAnomalyDetector

        order, train = self.stream(corrupt, seed)
        _, test = self.descriptors()
        config = self.config
        extra: dict[str, Any] = {}
        if method == "inreach":
            detector: Any = InReaCh(config, extractor=self.extractor)
            detector.decide_positions([read_image(s.path) for s in order])
            if detector.aligned_:  # descriptors of rotated images: not the shared ones
                result = evaluation.evaluate(self.data_dir, method=method, corrupt=corrupt, seed=seed,
                                             config=config, progress=False)
                result["descriptors_shared"] = False
                return result
            extra = dict(uses_positions=detector.uses_positions_, aligned=False,
                         transpose_score=detector.transpose_score_)
        else:
            from streamad.batch.baselines import make_patch_model

            detector = ImageAnomalyDetector(make_patch_model(method, seed=config.seed), self.extractor,
                                            config.heatmap)
            if method == "pni":
                extra["refinement_network"] = False
        start = time.perf_counter()
        detector.fit_descriptors(train)
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        prediction = detector.predict_descriptors(test)
        predict_seconds = (time.perf_counter() - start) / len(test)
        result: dict[str, Any] = {
            "dataset": self.data_dir, "method": method, "mode": "batch", "corrupt": corrupt, "seed": seed,
            "backbone": config.features.backbone, "train_images": len(order), "test_images": len(test),
            "image_auroc": auroc(prediction.scores, self.labels),
            "pixel_auroc": pixel_auroc(prediction.heatmaps, self.masks),
            "fit_seconds_on_descriptors": fit_seconds, "predict_seconds_per_image_on_descriptors": predict_seconds,
            "descriptors_shared": True,
        }
        nominal = getattr(detector.model, "nominal_mask_", None)
        if nominal is not None:
            f = config.features
            truth = patch_truth(np.stack([read_mask(s, f.image_size, f.center_crop) for s in order]), detector.grid)
            precision, recall = filter_precision_recall(nominal, truth)
            result.update(filter_precision=precision, filter_recall=recall, nominal_patches=int(nominal.sum()),
                          train_patches=int(nominal.size))
        result.update(extra)
        return result


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)
