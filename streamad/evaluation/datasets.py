"""Datasets in the MVTec AD folder layout, and the corruption protocol.

Layout::

    <root>/train/good/*                      nominal training images
    <root>/test/good/*                       nominal test images
    <root>/test/<defect>/*                   anomalous test images
    <root>/ground_truth/<defect>/<stem>_mask.png

Images may be png, jpg, jpeg, bmp or tif; grayscale images are converted to RGB.

Where the data are: a DATA_DIR given to the evaluation commands is used as given when it is absolute
or exists; otherwise it is looked up under ``--data-root`` or the ``STREAMAD_DATA`` environment
variable (:func:`resolve_data_dir`), so ``STREAMAD_DATA=../shared/data streamad eval mvtec_ad/bottle``
works from any folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from streamad.errors import UserError
from streamad.vision.features import resize_and_crop

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DATA_ENV = "STREAMAD_DATA"


def resolve_data_dir(path: str, data_root: str | None = None) -> str:
    """Where the data set ``path`` is: ``path`` itself when it is absolute or exists, else ``path`` under
    ``data_root`` (``--data-root``) or, without one, under ``$STREAMAD_DATA``.

    A path found nowhere is a :class:`UserError` that names every place looked at and what to set.

        >>> import tempfile
        >>> root = tempfile.mkdtemp(); os.makedirs(os.path.join(root, "mvtec_ad", "bottle"))
        >>> resolve_data_dir("mvtec_ad/bottle", root) == os.path.join(root, "mvtec_ad", "bottle")
        True
    """
    if os.path.isabs(path) or os.path.exists(path):
        return path
    root, source = (data_root, "--data-root") if data_root else (os.environ.get(DATA_ENV) or None, DATA_ENV)
    looked = [os.path.abspath(path)]
    if root:
        candidate = os.path.join(root, path)
        if os.path.exists(candidate):
            return candidate
        looked.append(f"{os.path.abspath(candidate)} ({source}={root})")
        hint = f"check {source}, or give the data set's full path"
    else:
        hint = (f"give the data set's full path, or set {DATA_ENV} (or --data-root) to the folder that holds "
                f"it, e.g. {DATA_ENV}=../shared/data")
    raise UserError(f"dataset folder not found: {path} (looked in {' and '.join(looked)}); {hint}")


@dataclass(frozen=True)
class Sample:
    """One image: where it is, whether it is anomalous, which defect, and its mask file (if any)."""

    path: str
    label: int
    defect: str
    mask_path: str | None


@dataclass(frozen=True)
class Dataset:
    """A class folder: training samples (unlabeled in use) and labeled test samples.

    ``missing_masks`` lists the mask files that anomalous test images lack (their ``mask_path`` is
    None): with any missing, the data set has image labels only and :meth:`pixel_labels_missing` says so.
    """

    root: str
    train: tuple[Sample, ...]
    test: tuple[Sample, ...]
    missing_masks: tuple[str, ...] = ()

    def pixel_labels_missing(self) -> str | None:
        """Why pixel-level measures are not available (None when every anomalous test image has a mask).

            >>> ds = Dataset("x", (), (Sample("a", 1, "cut", None), Sample("b", 1, "cut", "m")), ("x/m_a.png",))
            >>> ds.pixel_labels_missing()
            '1 of 2 anomalous test images have no mask (e.g. x/m_a.png): image labels only'
        """
        if not self.missing_masks:
            return None
        anomalous = sum(s.label for s in self.test)
        return (f"{len(self.missing_masks)} of {anomalous} anomalous test images have no mask "
                f"(e.g. {self.missing_masks[0]}): image labels only")


def _images_in(folder: str) -> list[str]:
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                  if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))


def load_dataset(root: str) -> Dataset:
    """Index a dataset folder; clear errors for a bad path or empty folders.

    An anomalous test image's mask is ``ground_truth/<defect>/<stem>_mask.png``; a data set without
    some (or all) of them has image labels only: its samples get ``mask_path`` None and the missing
    files are listed in ``Dataset.missing_masks`` (pixel AUROC is then reported as not available).
    """
    if not os.path.isdir(root):
        raise UserError(f"dataset folder not found: {root} (expected <root>/train/good and <root>/test/...)")
    train_dir = os.path.join(root, "train", "good")
    test_dir = os.path.join(root, "test")
    for d in (train_dir, test_dir):
        if not os.path.isdir(d):
            raise UserError(f"{root} is not in the MVTec layout: missing folder {d}")
    train = tuple(Sample(p, 0, "good", None) for p in _images_in(train_dir))
    if not train:
        raise UserError(f"no training images ({', '.join(IMAGE_EXTENSIONS)}) in {train_dir}")
    test: list[Sample] = []
    missing: list[str] = []
    for defect in sorted(os.listdir(test_dir)):
        folder = os.path.join(test_dir, defect)
        if not os.path.isdir(folder):
            continue
        for path in _images_in(folder):
            if defect == "good":
                test.append(Sample(path, 0, "good", None))
                continue
            stem = os.path.splitext(os.path.basename(path))[0]
            mask = os.path.join(root, "ground_truth", defect, f"{stem}_mask.png")
            if not os.path.isfile(mask):
                missing.append(mask)
                mask = None
            test.append(Sample(path, 1, defect, mask))
    if not test:
        raise UserError(f"no test images in {test_dir}")
    if not any(s.label for s in test) or all(s.label for s in test):
        raise UserError(f"the test set in {test_dir} needs both good and anomalous images to measure AUROC")
    return Dataset(root=root, train=train, test=tuple(test), missing_masks=tuple(missing))


def read_image(path: str) -> np.ndarray:
    """Read an image file as RGB uint8 (H, W, 3); grayscale becomes RGB."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise UserError(f"cannot read image {path}: missing, unreadable or not an image")
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_images(samples: Sequence[Sample], desc: str = "read", progress: bool = False) -> list[np.ndarray]:
    """The samples' images as RGB uint8, with an optional progress bar."""
    from tqdm.auto import tqdm

    return [read_image(s.path) for s in tqdm(samples, desc=desc, unit="img", disable=not progress, leave=False)]


def descriptors_of_files(paths: Sequence[str], extractor, desc: str = "features",
                         progress: bool = False) -> np.ndarray:
    """Descriptors (N, P, d) of the image files ``paths``, read and extracted ``extractor.config.batch_size``
    at a time (only one batch of images is in memory), with an optional progress bar."""
    from tqdm.auto import tqdm

    if not len(paths):
        raise UserError("no images to extract descriptors from")
    bs = int(extractor.config.batch_size)
    chunks = [np.asarray(extractor([read_image(p) for p in paths[start:start + bs]]))
              for start in tqdm(range(0, len(paths), bs), desc=desc, unit="batch", disable=not progress, leave=False)]
    return np.concatenate(chunks)


def read_mask(sample: Sample, size: tuple[int, int], center_crop: float = 1.0) -> np.ndarray:
    """The sample's ground-truth mask as bool (height, width) = ``size``, resized (nearest) and cropped
    exactly as the image is (see ``streamad.vision.features.resize_and_crop``); zeros for a good image.
    An anomalous sample without a mask has none to give: ``ValueError`` (check ``mask_path`` first)."""
    if sample.mask_path is None:
        if sample.label:
            raise ValueError(f"anomalous image {sample.path} has no mask: its defect pixels are unknown")
        return np.zeros(size, bool)
    m = cv2.imread(sample.mask_path, cv2.IMREAD_GRAYSCALE)
    if m is None:
        raise UserError(f"cannot read mask {sample.mask_path}")
    return resize_and_crop(m, size, center_crop, interpolation=cv2.INTER_NEAREST) > 127


def read_corrupt_list(path: str) -> list[str]:
    """A corruption list: one test image per line, relative to the data set's ``test/`` folder
    (``broken_large/009.png``); blank lines and ``#`` comments are skipped."""
    try:
        with open(path) as fh:
            lines = [line.split("#", 1)[0].strip() for line in fh]
    except OSError as exc:
        raise UserError(f"cannot read --corrupt-list {path}: {exc.strerror or exc}") from exc
    entries = [line for line in lines if line]
    if not entries:
        raise UserError(f"--corrupt-list {path} names no test image (one per line, e.g. broken_large/009.png)")
    return entries


def training_positions(test: Sequence[Sample], order: Sequence[Sample]) -> np.ndarray:
    """(M,) int64: each test sample's position in the training ``order``, -1 when it is not a training
    sample (the corruption protocol adds test images to training; they stay in the test set).

        >>> a, b, c = (Sample(p, 1, "cut", None) for p in ("a", "b", "c"))
        >>> training_positions([a, b, c], [Sample("g", 0, "good", None), c, a]).tolist()
        [2, -1, 1]
    """
    position = {s.path: i for i, s in enumerate(order)}
    return np.array([position.get(s.path, -1) for s in test], np.int64)


def training_stream(dataset: Dataset, corrupt: int, seed: int,
                    chosen: list[str] | None = None) -> tuple[list[Sample], list[Sample]]:
    """The corruption protocol: ``corrupt`` randomly chosen anomalous test images join the training set;
    with ``chosen`` (a corruption list, :func:`read_corrupt_list`), its first ``corrupt`` test images
    instead, good or defective (the InReaCh paper's MVTec protocol: K random test images, listed in its
    supplement). They stay in the test set too, as in the paper.

    Returns (training samples in a seeded shuffled order, the added test samples). The order is what
    batch fitting uses (its first D frames are the seeds) and what a stream replay feeds.

        >>> ds = Dataset("x", tuple(Sample(f"t{i}", 0, "good", None) for i in range(5)),
        ...              tuple(Sample(f"/d/test/cut/a{i}.png", 1, "cut", f"m{i}") for i in range(3)))
        >>> order, added = training_stream(ds, corrupt=2, seed=0)
        >>> len(order), len(added), all(s in order for s in added)
        (7, 2, True)
        >>> [s.path for s in training_stream(ds, 1, 0, chosen=["cut/a2.png", "cut/a0.png"])[1]]
        ['/d/test/cut/a2.png']
    """
    rng = np.random.default_rng(seed)
    if chosen is not None:
        added = _listed(dataset, corrupt, chosen)
    else:
        anomalous = [s for s in dataset.test if s.label == 1]
        if not 0 <= corrupt <= len(anomalous):
            raise UserError(f"--corrupt must be between 0 and {len(anomalous)} (the anomalous test images), "
                            f"got {corrupt}")
        added = [anomalous[i] for i in sorted(rng.choice(len(anomalous), size=corrupt, replace=False).tolist())]
    pool = list(dataset.train) + added
    order = [pool[i] for i in rng.permutation(len(pool)).tolist()]
    return order, added


def _listed(dataset: Dataset, corrupt: int, chosen: list[str]) -> list[Sample]:
    """The first ``corrupt`` test images of the corruption list ``chosen``."""
    if not 0 <= corrupt <= len(chosen):
        raise UserError(f"--corrupt must be between 0 and {len(chosen)} (the images of --corrupt-list), got {corrupt}")
    by_name = {"/".join(os.path.normpath(s.path).split(os.sep)[-2:]): s for s in dataset.test}
    names = [os.path.normpath(name).replace(os.sep, "/") for name in chosen[:corrupt]]
    missing = [name for name in names if name not in by_name]
    if missing:
        raise UserError(f"--corrupt-list names {len(missing)} image(s) that are not in the test set of "
                        f"{dataset.root} (e.g. {missing[0]}): entries are DEFECT/FILE under test/")
    if len(set(names)) != len(names):
        raise UserError("--corrupt-list names a test image twice")
    return [by_name[name] for name in names]


def patch_truth(masks: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Which grid cells are truly nominal: (N, h, w) bool masks to (N, H*W) bool, True = no anomalous pixel.

        >>> m = np.zeros((1, 4, 4), bool); m[0, 0, 3] = True
        >>> patch_truth(m, (2, 2)).tolist()
        [[True, False, True, True]]
    """
    n, h, w = masks.shape
    gh, gw = grid
    rows = np.minimum((np.arange(h) * gh) // h, gh - 1)
    cols = np.minimum((np.arange(w) * gw) // w, gw - 1)
    bad = np.zeros((n, gh, gw), bool)
    i, y, x = np.nonzero(masks)
    bad[i, rows[y], cols[x]] = True
    return ~bad.reshape(n, gh * gw)
