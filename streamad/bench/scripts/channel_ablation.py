"""Which InReaCh setting drives the result? A sweep on one dataset, descriptors extracted once.

For a dataset in the MVTec layout and a corruption count K, this extracts the training (seeded
shuffled order, as ``streamad eval`` uses) and test descriptors once, then for every association
depth D and spread rule computes the batch nominal set, and for every heatmap blur the image and
pixel AUROC. It also reports plain nearest-neighbour scoring against *all* training patches (PatchCore
without coreset, no filtering): the ceiling these descriptors allow, and what InReaCh's filter costs.

    python -m streamad.bench.scripts.channel_ablation ../shared/data/mtd/magnetic_tile --corrupt 10 \\
        --seeds 10 20 --spread zscore:3 std:5 none --blur 4 8 12

Every row uses the library's own code (``channels.associate``, ``trim_channel``, ``HNSWIndex``,
``heatmap_from_patch_scores``), so a row equals ``streamad eval`` with the same options.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from streamad.core.channels import associate, channel_members, nominal_from_channels
from streamad.config import ChannelConfig, FeatureConfig, IndexConfig
from streamad.evaluation.datasets import load_dataset, patch_truth, read_image, read_mask, training_stream
from streamad.vision.features import PatchFeatureExtractor
from streamad.vision.heatmap import heatmap_from_patch_scores
from streamad.evaluation.metrics import auroc, filter_precision_recall, pixel_auroc
from streamad.index.hnsw import HNSWIndex


def nearest_distances(gallery: np.ndarray, queries: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    index = HNSWIndex.from_config(gallery.shape[1], IndexConfig())
    index.add(np.arange(len(gallery)), gallery)
    dist, _ = index.query(queries.reshape(-1, queries.shape[2]), k=1)
    return dist[:, 0].reshape(len(queries), *grid)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir")
    p.add_argument("--corrupt", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--center-crop", type=float, default=0.875)
    p.add_argument("--seeds", type=int, nargs="+", default=[10], help="association depths D")
    p.add_argument("--spread", nargs="+", default=["zscore:3"], help="RULE[:K_SIGMA] entries")
    p.add_argument("--blur", type=float, nargs="+", default=[4.0], help="heatmap Gaussian sigmas")
    p.add_argument("--no-all", action="store_true", help="skip the all-training-patches reference")
    args = p.parse_args()

    fc = FeatureConfig(center_crop=args.center_crop)
    ds = load_dataset(args.data_dir)
    order, _ = training_stream(ds, args.corrupt, args.seed)
    extractor = PatchFeatureExtractor(fc)
    t0 = time.perf_counter()
    train = extractor([read_image(s.path) for s in order])
    test = extractor([read_image(s.path) for s in ds.test])
    print(f"descriptors: train {train.shape}, test {test.shape} in {time.perf_counter() - t0:.0f} s", flush=True)
    labels = np.array([s.label for s in ds.test])
    masks = np.stack([read_mask(s, fc.image_size, fc.center_crop) for s in ds.test])
    truth = patch_truth(np.stack([read_mask(s, fc.image_size, fc.center_crop) for s in order]), fc.grid)

    def report(name: str, patch: np.ndarray) -> None:
        for sigma in args.blur:
            heat = np.stack([heatmap_from_patch_scores(x, fc.image_size, sigma) for x in patch])
            img = auroc(heat.reshape(len(heat), -1).max(1), labels)
            print(f"| {name} | {sigma:g} | {img:.3f} | {pixel_auroc(heat, masks):.3f} |", flush=True)

    print("| setting | blur | image AUROC | pixel AUROC |\n|---|---|---|---|")
    for depth in args.seeds:
        channels = channel_members(associate(train, list(range(depth))))
        for entry in args.spread:
            rule, _, k = entry.partition(":")
            config = ChannelConfig(seeds=depth, spread=rule, k_sigma=float(k or 3.0))
            mask = nominal_from_channels(train, channels, config)
            precision, recall = filter_precision_recall(mask, truth)
            name = (f"D={depth} {rule}{':' + k if k else ''} (nominal {mask.mean():.1%}, "
                    f"precision {precision:.4f}, recall {recall:.3f})")
            report(name, nearest_distances(train[mask], test, fc.grid))
    if not args.no_all:
        report("all training patches (no filter)", nearest_distances(train.reshape(-1, train.shape[2]), test, fc.grid))


if __name__ == "__main__":
    main()
