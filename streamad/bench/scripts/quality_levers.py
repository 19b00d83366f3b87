"""Batch InReaCh's image score levers, measured on one fit per (data set, K): docs/quality.md.

For every data set and K of the corruption protocol, InReaCh is fitted once on shared descriptors
(``streamad compare``'s :class:`~streamad.evaluation.descriptor_cache.SharedDescriptors`, cached with
``--cache``) and the test set is scored once; the image score rules (``HeatmapConfig.image_score``:
the heatmap maximum, the mean of the top-k patch scores, PatchCore's eq. 7 against the nominal set)
are then computed from the same patch scores and heatmaps. The heatmaps, so the pixel AUROC, do not
depend on the rule. Every other option is ``streamad eval``'s (e.g. ``--backbone``, ``--seed-frames``,
``--blur``), plus ``--aggregate`` (``FeatureConfig.aggregate``, not an ``eval`` option): the figures
equal ``streamad eval DATA --corrupt K --image-score RULE [--top-k k]``. ``streamad/bench/scripts/quality_table.py``
runs it once per lever and writes the whole table (docs/quality_table.md).

    python -m streamad.bench.scripts.quality_levers ../shared/data/mvtec_ad/bottle ../shared/data/mtd/magnetic_tile \\
        --corrupt 0,10,40 --top-ks 3,10,30 --cache out/compare --json out/quality/scores.json \\
        --out out/quality/scores.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from typing import Any

import numpy as np

from streamad.batch.inreach import InReaCh
from streamad.cli.eval import add_model_arguments, config_from_args
from streamad.config import InReachConfig
from streamad.evaluation.batch_eval import held_out_auroc, image_and_pixel_auroc
from streamad.evaluation.datasets import read_corrupt_list, read_images, training_positions
from streamad.evaluation.descriptor_cache import SharedDescriptors
from streamad.results import Prediction
from streamad.vision.heatmap import frame_scores


def measure(data_dir: str, k: int, config: InReachConfig, top_ks: list[int], cache: str | None,
            keep: str | None = None, chosen: list[str] | None = None) -> list[dict[str, Any]]:
    """One fit of InReaCh on ``data_dir`` with K = ``k``; one row per image score rule (the test patch
    scores saved in the folder ``keep`` when given)."""
    config = replace(config, heatmap=replace(config.heatmap, image_score="reweight"))
    shared = SharedDescriptors(data_dir, config, cache=cache, progress=True)
    order, train = shared.stream(k, config.seed, chosen)
    _, test = shared.descriptors()
    detector = InReaCh(config, extractor=shared.extractor)
    detector.decide_positions(read_images(order))
    if detector.aligned_:
        raise SystemExit(f"{data_dir}: the positional test chose rotation alignment; use streamad eval instead")
    t0 = time.perf_counter()
    detector.fit_descriptors(train)
    fit = time.perf_counter() - t0
    pred = detector.predict_descriptors(test)  # scores: eq. 7; heatmaps and patch scores for the others
    if keep:  # the test patch scores, to try more rules later without fitting again
        os.makedirs(keep, exist_ok=True)
        np.savez_compressed(os.path.join(keep, f"{os.path.basename(os.path.normpath(data_dir))}-k{k}.npz"),
                            patch_scores=pred.patch_scores, labels=shared.labels, reweight=pred.scores)
    leave_out = training_positions(shared.dataset.test, order)
    in_training = leave_out >= 0
    loo = None  # the test images that are also training images scored leave-one-out (eval --leave-one-out)
    if in_training.any():
        part = detector.predict_descriptors(test[in_training], leave_out=leave_out[in_training])
        loo = Prediction(scores=pred.scores.copy(), heatmaps=pred.heatmaps.copy(), patch_scores=pred.patch_scores.copy())
        loo.scores[in_training], loo.heatmaps[in_training] = part.scores, part.heatmaps
        loo.patch_scores[in_training] = part.patch_scores
    rows = []
    for name, scores, loo_scores in image_scores_by_rule(pred, loo, top_ks, config.heatmap.reweight_neighbors):
        m = image_and_pixel_auroc(scores, pred.heatmaps, shared.labels, shared.masks, shared.pixel_missing,
                                  config.features.center_crop)
        m.update(held_out_auroc(scores, pred.heatmaps, shared.labels, shared.masks, shared.pixel_missing,
                                config.features.center_crop, in_training))
        if loo is not None:
            m.update(image_and_pixel_auroc(loo_scores, loo.heatmaps, shared.labels, shared.masks,
                                           shared.pixel_missing, config.features.center_crop, prefix="leave_one_out_"))
        rows.append({"dataset": os.path.basename(os.path.normpath(data_dir)), "corrupt": k, "image_score": name,
                     "image_auroc": m["image_auroc"], "pixel_auroc": m["pixel_auroc"],
                     **{key: v for key, v in m.items() if key.startswith(("held_out_", "leave_one_out_"))},
                     "nominal_patches": int(detector.model.nominal_count_), "fit_seconds_on_descriptors": fit})
    return rows


def image_scores_by_rule(pred: Prediction, loo: Prediction | None, top_ks: list[int],
                         reweight_neighbors: int) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(rule, image scores, the same from the leave-one-out prediction ``loo`` or None) for every rule:
    ``max``, ``top_mean`` at each k, eq. 7 (the predictions' own scores)."""
    def both(name: str, k: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
        return (frame_scores(pred.heatmaps, pred.patch_scores, name, k),
                None if loo is None else frame_scores(loo.heatmaps, loo.patch_scores, name, k))

    out: list[tuple[str, np.ndarray, np.ndarray | None]] = [("max", *both("max"))]
    out += [(f"top_mean k={t}", *both("top_mean", t)) for t in top_ks]
    out.append((f"reweight b={reweight_neighbors}", pred.scores, None if loo is None else loo.scores))
    return out


def markdown(rows: list[dict[str, Any]], corrupt: list[int]) -> str:
    """Image AUROC per rule and K, for each data set, and the pixel AUROC (the same for every rule)."""
    out = []
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        table = {(r["image_score"], r["corrupt"]): r for r in rows if r["dataset"] == ds}
        out += [f"**{ds}**", "", "| image score | " + " | ".join(f"image K={k}" for k in corrupt)
                + " | mean |", "|---|" + "---|" * (len(corrupt) + 1)]
        for rule in dict.fromkeys(r for r, _ in table):
            vals = [table[(rule, k)]["image_auroc"] if (rule, k) in table else None for k in corrupt]
            mean = sum(vals) / len(vals) if None not in vals else None
            out.append(f"| {rule} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in vals)
                       + f" | {'-' if mean is None else f'{mean:.3f}'} |")
        pix = [table.get(("max", k), {}).get("pixel_auroc") for k in corrupt]
        out.append("| (pixel AUROC, any rule) | " + " | ".join("-" if v is None else f"{v:.3f}" for v in pix)
                   + " | |")
        for rule, key, what in (
                ("top_mean k=30", "held_out_image_auroc", "image AUROC top_mean k=30, test images not in training"),
                ("max", "held_out_pixel_auroc", "pixel AUROC, test images not in training"),
                ("top_mean k=30", "leave_one_out_image_auroc", "image AUROC top_mean k=30, leave-one-out"),
                ("max", "leave_one_out_pixel_auroc", "pixel AUROC, leave-one-out")):
            held = [table.get((rule, k), {}).get(key) for k in corrupt]
            if any(v is not None for v in held):  # K > 0 only: the split, and the in-training images left out
                out.append(f"| ({what}) | "
                           + " | ".join("-" if v is None else f"{v:.3f}" for v in held) + " | |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data_dirs", nargs="+", metavar="DATA_DIR")
    p.add_argument("--corrupt", default="0,10,40")
    p.add_argument("--top-ks", dest="top_ks", default="3,10,30", help="top_mean k values to measure")
    p.add_argument("--cache", default=None, help="descriptor cache folder (as streamad compare --cache)")
    p.add_argument("--json", default=None)
    p.add_argument("--keep", default=None, help="folder to save each run's test patch scores in (.npz)")
    p.add_argument("--out", default=None, help="Markdown table")
    p.add_argument("--corrupt-list", default=None, metavar="FILE",
                   help="the K corrupting test images are the first K of FILE (streamad eval --corrupt-list)")
    p.add_argument("--aggregate", type=int, default=None, metavar="A",
                   help="local aggregation: A x A average pooling of each backbone map (FeatureConfig.aggregate, "
                   "default 3; odd)")
    add_model_arguments(p)
    args = p.parse_args(argv)
    config = config_from_args(args)
    if args.aggregate is not None:
        config = replace(config, features=replace(config.features, aggregate=args.aggregate))
    corrupt = [int(v) for v in args.corrupt.split(",")]
    top_ks = [int(v) for v in args.top_ks.split(",")]
    rows: list[dict[str, Any]] = []
    done: set[tuple[str, int]] = set()
    if args.json and os.path.isfile(args.json):  # resume: keep what an earlier run measured
        with open(args.json) as fh:
            rows = json.load(fh)["rows"]
        done = {(r["dataset"], r["corrupt"]) for r in rows}
    for data_dir in args.data_dirs:
        for k in corrupt:
            if (os.path.basename(os.path.normpath(data_dir)), k) in done:
                continue
            rows += measure(data_dir, k, config, top_ks, args.cache, args.keep,
                            read_corrupt_list(args.corrupt_list) if args.corrupt_list else None)
            if args.json:
                os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
                with open(args.json, "w") as fh:
                    json.dump({"command": sys.argv, "rows": rows}, fh, indent=2)
            print(markdown(rows, corrupt), flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(markdown(rows, corrupt) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
