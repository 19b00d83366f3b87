"""Which training images seed the channels (batch InReaCh's ``InReachConfig.seed_choice``).

The paper shuffles the training set and takes the first D images as seeds (``"first"``; our data
loaders shuffle with the run's seed). Two alternatives that stay within the method (channels, spans and
trimming are unchanged; only the seeds differ), compared on image-level summaries (the mean descriptor
of each image):

- ``"spread"``: greedy farthest-point (k-centre) selection from the first image: each next seed is the
  image farthest from the seeds chosen so far, so that the seeds cover the varied looks of a scene;
- ``"typical"``: the D images nearest the coordinate-wise median of the image summaries, so that a
  defective or unusual image is unlikely to be a seed;
- ``"clean"``: of the first 4 D images, the D whose patches are best matched elsewhere: each candidate
  is scored like a test image (the mean of its 10 largest nearest-patch distances to the next 2 D
  images) and the D lowest are the seeds. A defective seed heads channels for its defect that other
  images with the same defect can join, long enough to be trusted; a clean seed does not;
- ``"skip"``: the paper's first D, skipping outliers: the first 4 D images are scored as for
  ``"clean"``, and the first D (in shuffle order) whose score is not above the median + 3 x 1.4826 MAD
  of the candidates' scores are the seeds. Where ``"clean"`` prefers the most typical images (and so
  fewer looks on a varied texture), ``"skip"`` keeps the random choice and drops only clear outliers.

    >>> import numpy as np
    >>> x = np.zeros((6, 2, 1), np.float32); x[:, :, 0] = np.array([0, 0.1, 5, 0.3, 10, 0.2])[:, None]
    >>> choose_seeds(x, 3, "first"), choose_seeds(x, 3, "spread"), choose_seeds(x, 3, "typical")
    ([0, 1, 2], [0, 2, 4], [1, 3, 5])
"""

from __future__ import annotations

import numpy as np

from streamad.config import SEED_CHOICES
from streamad.core.association import squared_distances

CLEAN_CANDIDATES = 4  # "clean": candidates are the first 4 D images ...
CLEAN_REFERENCES = 2  # ... scored against the next 2 D
CLEAN_TOP = 10  # by the mean of their 10 largest nearest-patch distances


def choose_seeds(descriptors: np.ndarray, count: int, rule: str = "first") -> list[int]:
    """``count`` distinct seed image indices of ``descriptors`` (N, P, d) by ``rule``, ascending."""
    n = int(descriptors.shape[0])
    count = int(count)
    if rule not in SEED_CHOICES:
        raise ValueError(f"seed choice must be one of {', '.join(SEED_CHOICES)}, got {rule!r}")
    if not 0 <= count <= n:
        raise ValueError(f"cannot choose {count} seeds among {n} images")
    if rule == "first" or count == 0:
        return list(range(count))
    if rule in ("clean", "skip"):
        return _scored(descriptors, count, rule)
    summary = np.asarray(descriptors, np.float64).mean(axis=1)  # (N, d): one look per image
    if rule == "typical":
        dist = np.linalg.norm(summary - np.median(summary, axis=0), axis=1)
        return sorted(int(i) for i in np.argsort(dist, kind="stable")[:count])
    chosen = [0]
    nearest = np.linalg.norm(summary - summary[0], axis=1)
    while len(chosen) < count:
        nearest[chosen] = -1.0  # never twice
        nxt = int(np.argmax(nearest))
        chosen.append(nxt)
        nearest = np.minimum(nearest, np.linalg.norm(summary - summary[nxt], axis=1))
    return sorted(chosen)


def _scored(descriptors: np.ndarray, count: int, rule: str) -> list[int]:
    """``"clean"``: of the first ``4 count`` images, the ``count`` best matched by the next ``2 count``;
    ``"skip"``: the first ``count`` of them whose score is no outlier."""
    n = int(descriptors.shape[0])
    n_cand = min(n, CLEAN_CANDIDATES * count)
    refs = np.arange(n_cand, min(n, n_cand + CLEAN_REFERENCES * count))
    if n_cand <= count or not len(refs):  # too few images to choose: the paper's first D
        return list(range(count))
    ref = np.asarray(descriptors[refs], np.float32).reshape(-1, descriptors.shape[2])
    top = min(CLEAN_TOP, descriptors.shape[1])
    scores = np.empty(n_cand)
    for i in range(n_cand):
        nearest = np.sqrt(squared_distances(np.asarray(descriptors[i], np.float32), ref).min(axis=1))
        scores[i] = np.sort(nearest)[-top:].mean()
    if rule == "clean":
        return sorted(int(i) for i in np.argsort(scores, kind="stable")[:count])
    median = np.median(scores)
    limit = median + 3.0 * 1.4826 * np.median(np.abs(scores - median))
    inliers = [i for i in range(n_cand) if scores[i] <= limit]
    outliers = [i for i in range(n_cand) if scores[i] > limit]
    return sorted((inliers + outliers)[:count])  # outliers only if too few inliers
