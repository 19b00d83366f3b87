"""Measure a detector on a dataset in the MVTec AD layout (train/good, test/<defect>, ground_truth).

The training images, plus --corrupt K randomly chosen anomalous test images (unlabeled: the
corruption protocol of the InReaCh paper), are fitted in a seeded shuffled order; the whole test set
is scored. Prints image AUROC, pixel AUROC, the precision and recall of InReaCh's nominal filter on
the training patches, the nominal set size and timings.

With --stream the same evaluation runs through the streaming engine (StreamDetector): the training
stream is replayed frame by frame in the same order (its first D frames are the batch seeds; each
frame is scored, then admitted to a window of --window frames), then the test set is scored without
learning from it. Descriptors come from the same extractor in the same batches as batch fitting, and
the positional test (transpose test, rotation alignment) is decided on the whole training stream as
batch fitting decides it. --check-batch also fits batch InReaCh on the same descriptors and reports
whether the nominal sets are identical.

A data set whose anomalous test images have no masks (image labels only), or whose masks hold no defect
pixel inside the scored centre crop, is measured by image AUROC; pixel AUROC (and the filter's
precision and recall, when the corrupt training images have no masks) is reported as not available,
with the reason, in one line.

DATA_DIR is used as given when it exists; otherwise it is looked up under --data-root DIR or, without
it, under the folder named by the STREAMAD_DATA environment variable.

examples:
  streamad eval mvtec_ad/bottle --data-root ../shared/data --corrupt 10 --json bottle.json
  STREAMAD_DATA=../shared/data streamad eval mvtec_ad/bottle --corrupt 10 --stream --check-batch
  streamad eval /data/mvtec_ad/bottle --corrupt 10 --stream --window 64 --cache out/desc
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from typing import Any

from streamad.config import (IMAGE_SCORES, SEED_CHOICES, SPREAD_RULES, ChannelConfig, FeatureConfig, HeatmapConfig,
                             InReachConfig, MemoryConfig, PositionalConfig, StreamConfig, paper_config)
from streamad.errors import UserError

NAME = "eval"
HELP = "measure image/pixel AUROC and the nominal filter on a labeled dataset"


def _pair(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or H,W (e.g. 28 or 28,28), got {text!r}") from None
    if len(values) == 1:
        return values[0], values[0]
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected N or H,W, got {text!r}")
    return values  # type: ignore[return-value]


def add_data_root_argument(p: argparse.ArgumentParser) -> None:
    """--data-root: where a relative DATA_DIR that does not exist here is looked up."""
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="folder that holds the data sets: a DATA_DIR that does not exist as given is looked up "
                   "under it (default: the STREAMAD_DATA environment variable)")


def add_model_arguments(p: argparse.ArgumentParser, center_crop: float = 0.875, image_score: str | None = None) -> None:
    """Options shared by every command that builds a model (backbone, descriptors, channels); the image
    score defaults to batch InReaCh's (``InReachConfig``), or to ``image_score`` when given."""
    f, c, h = FeatureConfig(), InReachConfig().channels, InReachConfig().heatmap
    s = StreamConfig()
    if image_score is not None:
        h = replace(h, image_score=image_score)
    g = p.add_argument_group("features")
    g.add_argument("--backbone", default=f.backbone,
                   help="efficientnet_lite0 (default, offline weights), efficientnet_lite1/2, wide_resnet50_2, resnet18")
    g.add_argument("--weights", default=None, metavar="PATH",
                   help="local weight file for the backbone ('random' for timing only)")
    g.add_argument("--layers", default=None, help="comma-separated backbone layers (default: stride 8 and 16 blocks)")
    g.add_argument("--image-size", type=_pair, default=f.image_size, metavar="H,W", help="input size (default 224)")
    g.add_argument("--grid", type=_pair, default=None, metavar="H,W", help="descriptor grid (default: input/8)")
    g.add_argument("--center-crop", type=float, default=center_crop, metavar="F",
                   help=f"resize to size/F and keep the centre (default {center_crop}; 0.875 = the papers' "
                   "256 -> 224 protocol, 1 = the whole image)")
    g.add_argument("--dim", type=int, default=f.dim, help=f"maximum descriptor dimension (default {f.dim})")
    g.add_argument("--device", default=f.device, help="cpu, cuda or auto (default cpu)")
    g = p.add_argument_group("channels")
    g.add_argument("--seeds", type=int, default=c.seeds, help=f"association depth D (default {c.seeds})")
    g.add_argument("--min-span", type=int, default=c.min_span, help=f"minimum channel span L_min (default {c.min_span})")
    g.add_argument("--k-sigma", type=float, default=None,
                   help=f"maximum channel spread (default {c.k_sigma:g} for batch InReaCh, {s.channels.k_sigma:g} for the "
                   "streaming engine)")
    g.add_argument("--spread", choices=SPREAD_RULES, default=c.spread,
                   help=f"spread rule: std = the reference code's, rms, zscore, none (default {c.spread})")
    g.add_argument("--paper", action="store_true",
                   help="the InReaCh paper's method: D = 10, minimum span 3, spread std k = 5, image score max, "
                   "first D seeds (streamad.config.paper_config); keeps --backbone, so with --backbone "
                   "wide_resnet50_2 it is the paper's whole configuration. Not combined with those options")
    g.add_argument("--seed-choice", choices=SEED_CHOICES, default=None,
                   help="which training images seed the channels (batch InReaCh; default skip): first = the first D "
                   "of the shuffled set (the paper's), spread = farthest-point over image summaries, typical = the "
                   "D nearest their median, clean = of the first 4 D the D whose patches the next 2 D match best, "
                   "skip = the first D that are no outliers by that score (docs/quality.md)")
    g.add_argument("--new-look-seeds", type=int, default=0, metavar="E",
                   help="E more seeds after the D that head channels only for the looks no channel holds yet (batch "
                   "InReaCh; default 0, the paper's association; docs/quality.md)")
    g.add_argument("--positional", choices=("auto", "on", "off"), default="auto",
                   help="positional embedding: auto runs the transpose test (default)")
    g.add_argument("--blur", type=float, default=None,
                   help=f"heatmap blur sigma (default {h.blur_sigma:g} for batch InReaCh, {s.heatmap.blur_sigma:g} for the "
                   "streaming engine)")
    g.add_argument("--image-score", choices=IMAGE_SCORES, default=h.image_score,
                   help=f"image score from the patch scores (default {h.image_score}): max = the heatmap maximum (the "
                   "paper's), top_mean = mean of the --top-k highest patch scores, reweight = PatchCore's eq. 7 "
                   "against the nominal set (batch only; docs/quality.md)")
    g.add_argument("--top-k", type=int, default=h.top_k, help=f"patches averaged by top_mean (default {h.top_k})")
    g.add_argument("--reweight-neighbors", type=int, default=h.reweight_neighbors,
                   help=f"nominal neighbours b of eq. 7 (default {h.reweight_neighbors})")


def _paper_options(args: argparse.Namespace) -> None:
    """``--paper``: set the paper's method choices on ``args``, refusing an option that says otherwise."""
    if not getattr(args, "paper", False):
        return
    paper, c, h = paper_config(), ChannelConfig(), InReachConfig().heatmap
    wanted = {"seeds": (paper.channels.seeds, c.seeds), "min_span": (paper.channels.min_span, c.min_span),
              "spread": (paper.channels.spread, c.spread), "k_sigma": (paper.channels.k_sigma, None),
              "image_score": (paper.heatmap.image_score, h.image_score),
              "blur": (paper.heatmap.blur_sigma, None), "seed_choice": (paper.seed_choice, None),
              "new_look_seeds": (paper.new_look_seeds, InReachConfig().new_look_seeds)}
    for name, (value, default) in wanted.items():
        given = getattr(args, name, default)
        if given != default and given != value:
            option = "--" + name.replace("_", "-")
            raise UserError(f"--paper sets {option} {value}; leave {option} {given} out, or drop --paper")
        setattr(args, name, value)


def refuse_batch_only(config: InReachConfig) -> None:
    """Refuse, in one line, the batch-only options where a streaming engine runs (``config`` as
    ``config_from_args(args, engine="stream")`` builds it: the paper's seeds unless one was asked for)."""
    if config.seed_choice != "first":
        raise UserError(f"--seed-choice {config.seed_choice} is for batch InReaCh: the streaming engine's seeds "
                        "are the window's first frames, promoted as it slides")
    if config.new_look_seeds:
        raise UserError("--new-look-seeds is for batch InReaCh: the streaming engine associates with its D seeds")


def config_from_args(args: argparse.Namespace, engine: str = "batch") -> InReachConfig:
    """Build the InReaChConfig the model options describe (bad values become UserErrors). An option left
    out takes the default of the ``engine`` that runs: ``"batch"`` (``InReachConfig``) or ``"stream"``
    (``StreamConfig``'s trimming k and blur, the first D frames as seeds)."""
    _paper_options(args)
    base: InReachConfig | StreamConfig = StreamConfig() if engine == "stream" else InReachConfig()

    def given(name: str, default: Any) -> Any:
        value = getattr(args, name, None)
        return default if value is None else value

    k_sigma, blur = given("k_sigma", base.channels.k_sigma), given("blur", base.heatmap.blur_sigma)
    seed_choice = given("seed_choice", "first" if engine == "stream" else InReachConfig().seed_choice)
    try:
        grid = args.grid or (args.image_size[0] // 8, args.image_size[1] // 8)
        layers = tuple(x.strip() for x in args.layers.split(",")) if args.layers else ()
        features = FeatureConfig(backbone=args.backbone, layers=layers, image_size=args.image_size, grid=grid,
                                 dim=args.dim, weights=args.weights, device=args.device,
                                 center_crop=args.center_crop)
        channels = ChannelConfig(seeds=args.seeds, min_span=args.min_span, k_sigma=k_sigma, spread=args.spread)
        return InReachConfig(features=features, channels=channels, heatmap=HeatmapConfig(
                                 blur_sigma=blur, image_score=getattr(args, "image_score", "max"),
                                 top_k=getattr(args, "top_k", 30),
                                 reweight_neighbors=getattr(args, "reweight_neighbors", 9)),
                             positional=replace(PositionalConfig(), mode=args.positional),
                             seed=getattr(args, "seed", 0), seed_choice=seed_choice,
                             new_look_seeds=getattr(args, "new_look_seeds", 0))
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_dir", metavar="DATA_DIR", help="dataset folder in the MVTec AD layout")
    p.add_argument("--method", default="inreach", choices=("inreach", "patchcore", "spade", "pni"),
                   help="scorer (default inreach)")
    p.add_argument("--corrupt", type=int, default=0, metavar="K",
                   help="add K random anomalous test images to the training set (default 0)")
    p.add_argument("--corrupt-list", metavar="FILE", default=None,
                   help="take the K corrupting test images from FILE (one per line, DEFECT/FILE under test/, good "
                   "ones allowed) instead of K random anomalous ones: docs/splits/ holds the InReaCh paper's MVTec "
                   "lists")
    p.add_argument("--seed", type=int, default=0, help="seed for the corruption choice and order (default 0)")
    p.add_argument("--leave-one-out", action="store_true",
                   help="score the test images that are also training images (--corrupt) against the other "
                   "training images' nominal patches, as InReaCh.fit_predict scores training images (default: "
                   "against all of them, as the paper, where a trusted defect patch matches itself; batch "
                   "InReaCh only)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group("streaming (--stream)")
    g.add_argument("--stream", action="store_true",
                   help="replay the training stream through the streaming engine instead of fitting in batch")
    g.add_argument("--window", type=int, default=None, metavar="W",
                   help="window size in frames (default: the whole training stream, so nothing is ever "
                   "evicted and the nominal set is the batch algorithm's)")
    g.add_argument("--check-batch", action="store_true",
                   help="also fit batch InReaCh on the same descriptors; report whether the nominal sets are "
                   "identical and both AUROC pairs (and check the engine against the batch oracle on its "
                   "final window)")
    g.add_argument("--exact-reference", action="store_true",
                   help="also score the test set by exact nearest-neighbour search against the stream's final "
                   "nominal set (exact_image_auroc, exact_pixel_auroc: what the HNSW index approximates; slow "
                   "for large sets)")
    g.add_argument("--cache", metavar="DIR", default=None,
                   help="save the descriptors and positional decision in DIR and reuse them on later runs with "
                   "the same data and feature options (e.g. out/desc; fit/predict seconds then repeat the "
                   "feature time measured when they were computed)")
    add_memory_arguments(g)
    add_data_root_argument(p)
    add_model_arguments(p)


def add_memory_arguments(g: Any) -> None:
    """The streaming engine's long-term memory options (``eval --stream``, ``eval-stream``, ``watch``)."""
    g.add_argument("--memory", type=int, default=None, metavar="N",
                   help=f"long-term nominal memory beyond the window: at most N patches (default "
                   f"{StreamConfig().memory.capacity}; 0: none; docs/stream_defaults.md)")
    g.add_argument("--memory-epsilon-ratio", type=float, default=1.0, metavar="R",
                   help="the memory's cover radius, times the median distance of the first leaving patches to the "
                   "window's nominal set (default 1)")
    g.add_argument("--memory-max-age", type=int, default=0, metavar="A",
                   help="forget remembered patches not seen again for A admissions (default 0: only the capacity)")


def memory_from_args(args: argparse.Namespace) -> MemoryConfig:
    """The :class:`MemoryConfig` of ``--memory``, ``--memory-epsilon-ratio`` and ``--memory-max-age``."""
    try:
        capacity = StreamConfig().memory.capacity if args.memory is None else args.memory
        return MemoryConfig(capacity=capacity, epsilon_ratio=args.memory_epsilon_ratio,
                            max_age=args.memory_max_age)
    except ValueError as exc:
        raise UserError(f"--memory: {exc}") from exc


def _pixel(result: dict[str, Any], prefix: str = "") -> str:
    """The pixel AUROC, or one line saying why it is not available."""
    value = result.get(f"{prefix}pixel_auroc")
    if value is None:
        return f"not available: {result.get(f'{prefix}pixel_auroc_unavailable', 'no pixel labels')}"
    return f"{value:.3f}"


def print_table(result: dict[str, Any]) -> None:
    """A two-column results table."""
    rows = [("dataset", result["dataset"]), ("method", result["method"]), ("backbone", result["backbone"]),
            ("mode", result.get("mode", "batch"))]
    if result.get("mode") == "stream":
        holds = " (holds the whole training stream)" if result["window_holds_all"] else ""
        rows.append(("window", f"{result['window']} frames{holds}, {result['promotions']} seed promotions"))
    rows += [("corrupt images", result["corrupt"]),
             ("train / test images", f"{result['train_images']} / {result['test_images']}"),
             ("image AUROC", f"{result['image_auroc']:.3f}"), ("pixel AUROC", _pixel(result))]
    if result.get("leave_one_out"):
        rows.append(("scoring", "the test images also in training scored leave-one-out (against the others)"))
    if "held_out_test_images" in result:
        held = (f"{result['held_out_image_auroc']:.3f} / {_pixel(result, 'held_out_')}"
                if result.get("held_out_image_auroc") is not None
                else f"not available: {result['held_out_unavailable']}")
        rows.append((f"image / pixel AUROC, the {result['held_out_test_images']} test images not in training", held))
    if result.get("filter_precision") is not None:
        rows += [("filter precision", f"{result['filter_precision']:.4f}"),
                 ("filter recall", f"{result['filter_recall']:.3f}")]
    elif result.get("filter_unavailable"):
        rows.append(("filter precision / recall", f"not available: {result['filter_unavailable']}"))
    if result.get("nominal_patches") is not None and result.get("train_patches"):
        rows.append(("nominal patches", f"{result['nominal_patches']} of {result['train_patches']}"))
    if result.get("transpose_score") is not None:
        rows.append(("positional embedding", f"{'on' if result['uses_positions'] else 'off'} "
                     f"(transpose score {result['transpose_score']:.0f}{', rotation-aligned' if result['aligned'] else ''})"))
    rows += [("fit seconds", f"{result['fit_seconds']:.1f}"),
             ("predict seconds / image", f"{result['predict_seconds_per_image']:.3f}")]
    if "batch_nominal_patches" in result:
        rows += [("batch nominal patches", f"{result['batch_nominal_patches']} (identical to stream: "
                  f"{'yes' if result['nominal_sets_identical'] else 'no'}, "
                  f"{result['nominal_sets_symmetric_difference']} differ)"),
                 ("batch image / pixel AUROC", f"{result['batch_image_auroc']:.3f} / {_pixel(result, 'batch_')}")]
    if "memory_patches" in result:
        rows.append(("long-term memory", f"{result['memory_patches']} patches (epsilon {result['memory_epsilon']:.3g}, "
                     f"{result['memory_reinforced']} reinforcements, {result['memory_forgotten']} forgotten)"))
    if "window_oracle_identical" in result:
        rows.append(("engine = oracle on window", "yes" if result["window_oracle_identical"] else "NO"))
    if "exact_image_auroc" in result:
        rows.append(("exact-search image / pixel AUROC",
                     f"{result['exact_image_auroc']:.3f} / {_pixel(result, 'exact_')}"))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def run(args: argparse.Namespace) -> int:
    from streamad.evaluation.datasets import resolve_data_dir

    config = config_from_args(args, engine="stream" if args.stream else "batch")
    if args.json and os.path.dirname(args.json) and not os.path.isdir(os.path.dirname(args.json)):
        raise UserError(f"cannot write --json {args.json}: folder {os.path.dirname(args.json)} does not exist")
    if args.leave_one_out and args.stream:
        raise UserError("--leave-one-out applies to batch scoring, not --stream")
    if args.leave_one_out and args.method != "inreach":
        raise UserError(f"--leave-one-out applies to --method inreach, not {args.method}")
    if args.stream:
        refuse_batch_only(config)
        if args.method != "inreach":
            raise UserError(f"--stream runs incremental InReaCh; --method {args.method} has no streaming engine")
        if config.heatmap.image_score == "reweight":
            raise UserError("--image-score reweight is for batch models: the streaming engine scores frames by max "
                            "or top_mean")
        memory = memory_from_args(args)
        if args.window is not None and args.window < 1:
            raise UserError(f"--window must be a positive number of frames, got {args.window}")
    else:
        given = [o for o, v in (("--window", args.window), ("--check-batch", args.check_batch), ("--memory", args.memory is not None),
                                ("--exact-reference", args.exact_reference), ("--cache", args.cache)) if v]
        if given:
            raise UserError(f"{', '.join(given)} only apply with --stream")
    data_dir = resolve_data_dir(args.data_dir, args.data_root)
    corrupt_list = None
    if args.corrupt_list:
        from streamad.evaluation.datasets import read_corrupt_list

        corrupt_list = read_corrupt_list(args.corrupt_list)
    if args.stream:
        from streamad.evaluation.stream_eval import evaluate_stream

        result = evaluate_stream(data_dir, window=args.window, corrupt=args.corrupt, seed=args.seed,
                                 config=config, progress=not args.quiet, check_batch=args.check_batch,
                                 cache=args.cache, exact_reference=args.exact_reference, memory=memory,
                                 corrupt_list=corrupt_list)
    else:
        from streamad.evaluation.batch_eval import evaluate

        result = evaluate(data_dir, method=args.method, corrupt=args.corrupt, seed=args.seed, config=config,
                          progress=not args.quiet, corrupt_list=corrupt_list, leave_one_out=args.leave_one_out)
    print_table(result)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0
