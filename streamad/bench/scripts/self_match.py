"""What the K added test images lose to self-matching (docs/quality.md, "Where the K = 40 pixel AUROC goes").

One batch InReaCh fit on a data set with K anomalous test images added to the training set (the
corruption protocol of ``streamad eval --corrupt K``), then: how many of the added images' defect
patches the channels trusted (a patch is defective when any pixel of its cell is marked), the share of
good training patches trusted, which seeds are defective, and the image / pixel AUROC of the whole test
set, of the test images not in training, and of the added images with the good test images.

    python -m streamad.bench.scripts.self_match ../shared/data/mvtec_ad/bottle --corrupt 40 --cache out/compare
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from streamad.batch.inreach import InReaCh
from streamad.cli.eval import add_model_arguments, config_from_args
from streamad.evaluation.batch_eval import image_and_pixel_auroc, training_truth
from streamad.evaluation.datasets import read_images, training_positions
from streamad.evaluation.descriptor_cache import SharedDescriptors


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data_dir", metavar="DATA_DIR")
    p.add_argument("--corrupt", type=int, default=40, metavar="K")
    p.add_argument("--cache", default=None, help="descriptor cache folder (as streamad compare --cache)")
    add_model_arguments(p)
    args = p.parse_args(argv)
    config = config_from_args(args)
    shared = SharedDescriptors(args.data_dir, config, cache=args.cache, progress=True)
    order, train = shared.stream(args.corrupt, config.seed)
    _, test = shared.descriptors()
    detector = InReaCh(config, extractor=shared.extractor)
    detector.decide_positions(read_images(order))
    detector.fit_descriptors(train)
    pred = detector.predict_descriptors(test)
    truth = training_truth(order, shared.size, config.features.center_crop, detector.grid)
    if truth is None:
        raise SystemExit("the added images have no masks: their defect patches are unknown")
    nominal, defect = detector.nominal_mask_, ~truth
    print(f"defect patches of the added images trusted: {int((nominal & defect).sum())} of {int(defect.sum())} "
          f"({(nominal & defect).sum() / max(defect.sum(), 1):.1%}); good training patches trusted: "
          f"{(nominal & truth).sum() / truth.sum():.1%}")
    seeds = [int(s) for s in detector.model.seeds_]
    print(f"seeds: {seeds}, defective: {[s for s in seeds if order[s].label]}")
    in_training = training_positions(shared.dataset.test, order) >= 0
    labels, crop = shared.labels, config.features.center_crop
    for name, keep in (("all test images", np.ones(len(labels), bool)),
                       ("test images not in training", ~in_training),
                       ("the added images and the good test images", in_training | (labels == 0))):
        masks = None if shared.masks is None else shared.masks[keep]
        m = image_and_pixel_auroc(pred.scores[keep], pred.heatmaps[keep], labels[keep], masks,
                                  shared.pixel_missing, crop)
        pixel = "n/a" if m["pixel_auroc"] is None else f"{m['pixel_auroc']:.3f}"
        print(f"{name} ({int(keep.sum())}, {int(labels[keep].sum())} defective): image AUROC "
              f"{m['image_auroc']:.3f} ({config.heatmap.image_score}), pixel AUROC {pixel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
