"""SPADE (Cohen & Hoshen 2020) as a patch model: kNN image retrieval, then pixel-level kNN.

- Global descriptor of an image: its patch descriptors pooled over the grid (``pooling``: ``"mean"``,
  the global average pooling of the paper, or ``"max"``).
- Retrieval (paper 3.2, DN2): the ``k_images`` training images nearest to the test image by global
  descriptor (Euclidean).
- Patch score (paper 3.3): mean distance from the test patch to its ``kappa`` nearest patches in the
  gallery of all patches of those images. The paper's formula averages *squared* distances, the
  default here (``squared=True``); ``squared=False`` averages plain L2 distances.
- Image score (paper 3.2, ``image_scores``): mean squared distance of the global descriptor to its
  ``k_images`` nearest training global descriptors (``image_score="knn"``). With
  ``image_score="heatmap"`` the attribute is ``None`` and a detector takes the heatmap maximum.

The descriptors' feature pyramid (the paper concatenates several ResNet stages) is the feature
extractor's business; this model takes whatever (N, P, d) descriptors it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from streamad.batch.baselines.common import check, check_descriptors, check_device, check_grid
from streamad.batch.baselines.knn import as_tensor, exact_distances, nearest, squared_distance_blocks

POOLINGS = ("mean", "max")
# A group of test images is scored against the union of their retrieved training images; groups grow
# while that union stays within this many images (None: K, i.e. only images with the same K neighbours).
GROUP_GALLERY_IMAGES: int | None = None
IMAGE_SCORES = ("knn", "heatmap")


@dataclass(frozen=True)
class SpadeConfig:
    """SPADE settings: ``k_images`` is the paper's K, ``kappa`` its kappa."""

    k_images: int = 50
    kappa: int = 1
    pooling: str = "mean"
    squared: bool = True
    image_score: str = "knn"
    device: str = "cpu"

    def __post_init__(self) -> None:
        c = "SpadeConfig"
        check(c, "k_images", isinstance(self.k_images, int) and self.k_images >= 1, self.k_images, "an int >= 1")
        check(c, "kappa", isinstance(self.kappa, int) and self.kappa >= 1, self.kappa, "an int >= 1")
        check(c, "pooling", self.pooling in POOLINGS, self.pooling, f"one of {POOLINGS}")
        check(c, "squared", isinstance(self.squared, bool), self.squared, "a bool")
        check(c, "image_score", self.image_score in IMAGE_SCORES, self.image_score, f"one of {IMAGE_SCORES}")
        check_device(c, self.device)


def pool(descriptors: np.ndarray, how: str) -> np.ndarray:
    """Global descriptors (N, d) of (N, P, d) patch descriptors."""
    return descriptors.mean(1) if how == "mean" else descriptors.max(1)


class Spade:
    """Stores every training patch; scores a test image against its K nearest training images."""

    def __init__(self, config: SpadeConfig | None = None) -> None:
        self.config = config or SpadeConfig()
        self.train_: np.ndarray | None = None
        self.global_: np.ndarray | None = None
        self.grid_: tuple[int, int] | None = None

    def fit_descriptors(self, descriptors: np.ndarray, grid: tuple[int, int]) -> "Spade":
        x = check_descriptors(descriptors)
        self.grid_ = check_grid(x, grid)
        self.train_ = np.ascontiguousarray(x)
        self.global_ = pool(x, self.config.pooling)
        return self

    def _fitted(self, descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.train_ is None or self.global_ is None:
            raise RuntimeError("Spade is not fitted: call fit_descriptors first")
        x = check_descriptors(descriptors, self.train_.shape[2])
        return x, self.train_, self.global_

    def retrieve(self, descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per test image, the K nearest training images: (distances (M, K), indices (M, K))."""
        x, _, glob = self._fitted(descriptors)
        return nearest(pool(x, self.config.pooling), glob, self.config.k_images, self.config.device)

    def patch_scores(self, descriptors: np.ndarray) -> np.ndarray:
        """Mean (squared) distance of each test patch to its ``kappa`` nearest patches among the patches of
        the image's K retrieved training images.

        Test images that retrieved the same training images (e.g. every image, when K is the whole
        training set) share one gallery and are searched together; a group's search compares its
        patches with the union of its members' galleries and masks out, per image, the training images
        it did not retrieve (so groups of different sets would be exact too, but never cheaper: the
        work is group size x union size >= group size x K).
        """
        x, train, _ = self._fitted(descriptors)
        _, neighbours = self.retrieve(x)
        cfg = self.config
        m, p, d = x.shape
        kappa = min(cfg.kappa, neighbours.shape[1] * train.shape[1])
        out = np.empty((m, p), np.float32)
        order = np.lexsort(neighbours.T[::-1])  # images that retrieved the same training images, together
        for group in gallery_groups(neighbours, order, GROUP_GALLERY_IMAGES or neighbours.shape[1]):
            union = np.unique(neighbours[group])
            gallery = as_tensor(train[union].reshape(-1, d), cfg.device)
            allowed = torch.from_numpy((neighbours[group][:, :, None] == union[None, None, :]).any(1))
            allowed = allowed.to(gallery.device)  # (G, U): may image g use training image union[u]?
            queries = as_tensor(x[group].reshape(-1, d), cfg.device)
            image_of_row = torch.arange(len(group), device=gallery.device).repeat_interleave(p)
            result = np.empty(len(group) * p, np.float32)
            for start, sq in squared_distance_blocks(queries, gallery):
                rows = slice(start, start + len(sq))
                keep = allowed[image_of_row[rows]]  # (B, U)
                sq.view(len(sq), len(union), -1).masked_fill_(~keep[:, :, None], float("inf"))
                idx = sq.topk(kappa, dim=1, largest=False).indices if kappa > 1 else sq.argmin(1, keepdim=True)
                dist = exact_distances(queries[rows], gallery, idx)
                dist = dist * dist if cfg.squared else dist
                result[rows] = dist.mean(1).cpu().numpy()
            out[group] = result.reshape(len(group), p)
        return out

    @property
    def image_scores(self) -> Callable[..., np.ndarray] | None:
        """The DN2 image score (mean squared global kNN distance), or ``None`` for the heatmap maximum."""
        return self._knn_image_scores if self.config.image_score == "knn" else None

    def _knn_image_scores(self, descriptors: np.ndarray, patch_scores: np.ndarray | None = None) -> np.ndarray:
        """(M, P, d) to (M,); ``patch_scores`` is accepted for a uniform call and not needed."""
        dist, _ = self.retrieve(descriptors)
        return (dist.astype(np.float64) ** 2).mean(1).astype(np.float32)


def gallery_groups(neighbours: np.ndarray, order: np.ndarray, limit: int) -> list[np.ndarray]:
    """Consecutive runs of ``order`` whose retrieved training images number at most ``limit`` together
    (a single image is always a group of its own, whatever its K)."""
    groups: list[np.ndarray] = []
    current: list[int] = []
    seen: set[int] = set()
    for i in order.tolist():
        new = seen | set(neighbours[i].tolist())
        if current and len(new) > limit:
            groups.append(np.array(current))
            current, new = [], set(neighbours[i].tolist())
        current.append(i)
        seen = new
    if current:
        groups.append(np.array(current))
    return groups
