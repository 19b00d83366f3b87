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
from typing import Any

from streamad.cli.options import MEMORY, MODEL, OPTIONS, add, config_error, paper_options, settings
from streamad.config import InReachConfig, MemoryConfig, StreamConfig
from streamad.errors import UserError
from streamad.stream.settings import configure

NAME = "eval"
HELP = "measure image/pixel AUROC and the nominal filter on a labeled dataset"


def add_data_root_argument(p: argparse._ActionsContainer) -> None:
    """--data-root: where a relative DATA_DIR that does not exist here is looked up."""
    add(p, "data_root")


def add_model_arguments(p: argparse.ArgumentParser, image_score: str | None = None) -> None:
    """The options of every command that builds a model (backbone, descriptors, channels, heatmaps); the
    image score defaults to batch InReaCh's (``InReachConfig``), or to ``image_score`` when given."""
    changes = {} if image_score is None else {"image_score": dict(
        default=image_score, help=OPTIONS["image_score"].kwargs["help"].replace(
            f"(default {OPTIONS['image_score'].kwargs['default']})", f"(default {image_score})"))}
    add(p.add_argument_group("features"), *MODEL[:8])
    add(p.add_argument_group("channels"), *MODEL[8:], **changes)


def refuse_batch_only(config: InReachConfig) -> None:
    """Refuse, in one line, the batch-only options where a streaming engine runs (``config`` as
    ``config_from_args(args, engine="stream")`` builds it: the paper's seeds unless one was asked for)."""
    if config.seed_choice != "first":
        raise UserError(f"--seed-choice {config.seed_choice} is for batch InReaCh: the streaming engine's seeds "
                        "are the window's first frames, promoted as it slides")
    if config.new_look_seeds:
        raise UserError("--new-look-seeds is for batch InReaCh: the streaming engine associates with its D seeds")


def config_from_args(args: argparse.Namespace, engine: str = "batch") -> InReachConfig:
    """The InReachConfig the model options describe (bad values become UserErrors naming the option). An
    option left out takes the default of the ``engine`` that runs: ``"batch"`` (``InReachConfig``) or
    ``"stream"`` (``StreamConfig``'s trimming k and blur, the first D frames as seeds)."""
    paper_options(args)
    base: InReachConfig | StreamConfig = StreamConfig() if engine == "stream" else InReachConfig()
    flat = settings(args, MODEL + ("seed",))
    defaults = {"k_sigma": base.channels.k_sigma, "blur": base.heatmap.blur_sigma,
                "seed_choice": "first" if engine == "stream" else InReachConfig().seed_choice}
    flat.update({k: v for k, v in defaults.items() if flat.get(k) is None})
    flat.pop("paper", None)
    try:
        return configure(InReachConfig(), flat)
    except ValueError as exc:
        raise config_error(exc) from exc


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
    add(p, "seed")
    p.add_argument("--leave-one-out", action="store_true",
                   help="score the test images that are also training images (--corrupt) against the other "
                   "training images' nominal patches, as InReaCh.fit_predict scores training images (default: "
                   "against all of them, as the paper, where a trusted defect patch matches itself; batch "
                   "InReaCh only)")
    add(p, "json", "quiet")
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
                   "nominal set (exact_image_auroc, exact_pixel_auroc: what the stream's approximate index, IVF by "
                   "default, approximates; slow for large sets)")
    add(g, "cache")
    add_memory_arguments(g)
    add_data_root_argument(p)
    add_model_arguments(p)


def add_memory_arguments(g: argparse._ActionsContainer) -> None:
    """The streaming engine's long-term memory options (``eval --stream``, ``eval-stream``)."""
    add(g, *MEMORY)


def memory_from_args(args: argparse.Namespace) -> MemoryConfig:
    """The :class:`MemoryConfig` of ``--memory``, ``--memory-epsilon-ratio`` and ``--memory-max-age``."""
    try:
        return configure(StreamConfig(), settings(args, MEMORY)).memory
    except ValueError as exc:
        raise config_error(exc) from exc


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
