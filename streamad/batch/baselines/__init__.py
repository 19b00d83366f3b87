"""The papers' baselines as patch models (``streamad.batch.image_detector.PatchModel``).

- ``PatchCore``: greedy coreset memory bank, nearest-neighbour patch scores, reweighted image scores.
- ``Spade``: K nearest training images by global descriptor, then patch kNN in their patches.
- ``PNI``: coreset likelihoods conditioned on grid position and neighbouring patches.

Models that define a callable ``image_scores(descriptors, patch_scores=None) -> (M,)`` give the image
score themselves (PatchCore's reweighting, SPADE's image kNN); otherwise it is the heatmap maximum.

    >>> model = make_patch_model("patchcore", seed=3, coreset_fraction=0.5)
    >>> model.config.seed, model.config.coreset_fraction
    (3, 0.5)
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from streamad.batch.baselines.patchcore import PatchCore, PatchCoreConfig
from streamad.batch.baselines.pni import PNI, PNIConfig
from streamad.batch.baselines.spade import Spade, SpadeConfig

__all__ = ["METHODS", "PNI", "PNIConfig", "PatchCore", "PatchCoreConfig", "Spade", "SpadeConfig", "make_patch_model"]

# method name -> (model class, config class)
METHODS: dict[str, tuple[type, type]] = {
    "patchcore": (PatchCore, PatchCoreConfig),
    "spade": (Spade, SpadeConfig),
    "pni": (PNI, PNIConfig),
}


def make_patch_model(method: str, seed: int = 0, **options: Any) -> PatchCore | Spade | PNI:
    """A baseline patch model with default settings, ``seed`` where it is random, and config ``options``.

    Unknown methods or options raise ``ValueError`` naming them and the valid choices.
    """
    if method not in METHODS:
        raise ValueError(f"unknown baseline {method!r}; choose from {', '.join(METHODS)}")
    model_cls, config_cls = METHODS[method]
    names = {f.name for f in fields(config_cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ValueError(f"{config_cls.__name__} has no option {', '.join(unknown)}; "
                         f"options: {', '.join(sorted(names))}")
    if "seed" in names:
        options["seed"] = seed
    return model_cls(config_cls(**options))
