"""Methods compared under the corruption protocol: a method x K grid of image and pixel AUROC.

For every dataset, method and K, the training images plus K randomly chosen anomalous test images
(unlabeled) are fitted and the whole test set is scored, as :func:`~streamad.evaluation.batch_eval.evaluate`
does, but on descriptors extracted once per dataset
(:class:`~streamad.evaluation.descriptor_cache.SharedDescriptors`): each method is fitted with
``fit_descriptors`` and scored with ``predict_descriptors``, which gives the results of ``evaluate``.
:func:`render_markdown` lays the grid out as the InReaCh paper's Table 3 (``streamad compare``).

    >>> rows = [{"dataset": "d", "method": "spade", "corrupt": 0, "image_auroc": 0.5, "pixel_auroc": 0.75}]
    >>> print(render_markdown(rows, ("spade",), (0,)), end="")
    | method | image AUROC K=0 | pixel AUROC K=0 |
    |---|---|---|
    | spade | 0.500 | 0.750 |
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from tqdm.auto import tqdm

from streamad.batch.image_detector import ImageAnomalyDetector
from streamad.batch.inreach import InReaCh
from streamad.config import InReachConfig
from streamad.errors import UserError
from streamad.evaluation import batch_eval
from streamad.evaluation.datasets import load_dataset, read_images
from streamad.evaluation.descriptor_cache import SharedDescriptors

METHODS = batch_eval.METHODS
METRICS = (("image_auroc", "image AUROC"), ("pixel_auroc", "pixel AUROC"))


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


def check_corrupt(datasets: Sequence[str], corrupt: Sequence[int]) -> None:
    """Fail before the long run when a dataset has fewer anomalous test images than the largest K."""
    for path in datasets:
        available = sum(s.label for s in load_dataset(path).test)
        if max(corrupt) > available:
            raise UserError(f"--corrupt {max(corrupt)} is more than the {available} anomalous test images of {path}")


def compare(datasets: Sequence[str], methods: Sequence[str], corrupt: Sequence[int], seed: int,
            config: InReachConfig, cache: str | None = None, progress: bool = True,
            on_result: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
    """Every (dataset, K, method) of the grid, in that order; ``on_result(results so far)`` after each."""
    results: list[dict[str, Any]] = []
    with tqdm(total=len(datasets) * len(methods) * len(corrupt), desc="compare", unit="run",
              disable=not progress) as bar:
        for ds in datasets:
            shared = SharedDescriptors(ds, config, cache=cache, progress=progress)
            for k in corrupt:
                for method in methods:
                    bar.set_postfix_str(f"{os.path.basename(os.path.normpath(ds))} {method} K={k}")
                    results.append(evaluate_shared(shared, method, k, seed))
                    bar.update()
                    if on_result is not None:
                        on_result(results)
    return results


def evaluate_shared(shared: SharedDescriptors, method: str, corrupt: int, seed: int) -> dict[str, Any]:
    """The result ``batch_eval.evaluate(data_dir, method, corrupt, seed, config)`` gives, on the shared
    descriptors (and read from the cache folder when this run was measured before)."""
    what = {"what": "result", "method": method, "corrupt": corrupt, "seed": seed,
            "settings": _settings(shared.config, method)}
    result = shared.cached_json(what, lambda: _run(shared, method, corrupt, seed))
    result["dataset"] = shared.data_dir
    return result


def _settings(config: InReachConfig, method: str) -> dict[str, Any]:
    """Every setting besides the features that determines a method's result (part of the cache key)."""
    if method == "inreach":
        return {"channels": asdict(config.channels), "positional": asdict(config.positional),
                "heatmap": asdict(config.heatmap), "index": asdict(config.index), "seed": config.seed}
    from streamad.batch.baselines import make_patch_model

    return {"model": asdict(make_patch_model(method, seed=config.seed).config),
            "heatmap": asdict(batch_eval.baseline_heatmap(config))}


def _run(shared: SharedDescriptors, method: str, corrupt: int, seed: int) -> dict[str, Any]:
    order, train = shared.stream(corrupt, seed)
    _, test = shared.descriptors()
    config = shared.config
    detector, extra = _detector(shared, method, order)
    if detector is None:  # InReaCh chose rotation alignment: descriptors of rotated images, not the shared ones
        result = batch_eval.evaluate(shared.data_dir, method=method, corrupt=corrupt, seed=seed, config=config,
                                     progress=False)
        result["descriptors_shared"] = False
        return result
    start = time.perf_counter()
    detector.fit_descriptors(train)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    prediction = detector.predict_descriptors(test)
    predict_seconds = (time.perf_counter() - start) / len(test)
    result: dict[str, Any] = {
        "dataset": shared.data_dir, "method": method, "mode": "batch", "corrupt": corrupt, "seed": seed,
        "backbone": config.features.backbone, "train_images": len(order), "test_images": len(test),
        **batch_eval.image_and_pixel_auroc(prediction.scores, prediction.heatmaps, shared.labels, shared.masks,
                                           shared.pixel_missing, config.features.center_crop),
        "fit_seconds_on_descriptors": fit_seconds, "predict_seconds_per_image_on_descriptors": predict_seconds,
        "descriptors_shared": True,
    }
    nominal = getattr(detector.model, "nominal_mask_", None)
    if nominal is not None:
        f = config.features
        result.update(batch_eval.filter_quality(
            nominal, lambda: batch_eval.training_truth(order, f.image_size, f.center_crop, detector.grid)))
    result.update(extra)
    return result


def _detector(shared: SharedDescriptors, method: str, order: list) -> tuple[ImageAnomalyDetector | None, dict]:
    """The detector for ``method`` on the shared extractor and what its result adds; None when InReaCh's
    positional test chooses rotation alignment."""
    config = shared.config
    if method == "inreach":
        detector = InReaCh(config, extractor=shared.extractor)
        detector.decide_positions(read_images(order))
        if detector.aligned_:
            return None, {}
        return detector, dict(uses_positions=detector.uses_positions_, aligned=False,
                              transpose_score=detector.transpose_score_)
    from streamad.batch.baselines import make_patch_model

    detector = ImageAnomalyDetector(make_patch_model(method, seed=config.seed), shared.extractor,
                                    batch_eval.baseline_heatmap(config))
    return detector, ({"refinement_network": False} if method == "pni" else {})


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_markdown(results: list[dict[str, Any]], methods: Sequence[str], corrupt: Sequence[int],
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
    notes = dict.fromkeys(f"Pixel AUROC not available on {os.path.basename(os.path.normpath(r['dataset']))}: "
                          f"{r['pixel_auroc_unavailable']}." for r in results if r.get("pixel_auroc_unavailable"))
    tail = "\n\n" + "\n".join(notes) if notes else ""
    return (header + "\n\n" if header else "") + "\n".join(lines) + tail + "\n"


def render_header(where: str, config: InReachConfig, command: str) -> str:
    """The paragraph above the table: what was measured (``where``), with which features, by ``command``."""
    f = config.features
    return (f"# Corruption comparison: {where}\n\n"
            f"Backbone `{f.backbone}`, input {f.image_size[0]}x{f.image_size[1]} (centre crop {f.center_crop:g} of the "
            f"resized image), grid {f.grid[0]}x{f.grid[1]}, descriptor dim at most {f.dim}, seed {config.seed}. "
            f"K = anomalous test images added to the (unlabeled) training set; the whole test set is scored.\n\n"
            f"Grid: `{command}` (plus the feature options above).")
