"""Shared fixtures: the real evaluation data beside the checkout, and small generated datasets."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
BOTTLE = SHARED_DATA / "mvtec_ad" / "bottle"
MTD = SHARED_DATA / "mtd" / "magnetic_tile"

# Keep the suite friendly to a 2-core machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")


def require(path: Path) -> Path:
    """The real data must be there (CI has shared/ beside the checkout): fail loudly, never skip."""
    assert path.is_dir(), f"real test data missing at {path}: the suite expects ../shared/data beside the checkout"
    return path


@pytest.fixture(scope="session")
def bottle_dir() -> Path:
    return require(BOTTLE)


@pytest.fixture(scope="session")
def mtd_dir() -> Path:
    return require(MTD)


def write_mvtec(root: Path, n_train: int = 6, n_good: int = 2, n_bad: int = 2, size: int = 64,
                gray: bool = False, seed: int = 0) -> Path:
    """A tiny MVTec-layout dataset: textured images, anomalous ones with a bright square and a mask."""
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 120, size=(size, size, 3), dtype=np.uint8)

    def image() -> np.ndarray:
        noise = rng.integers(-10, 10, size=base.shape)
        img = np.clip(base.astype(int) + noise, 0, 255).astype(np.uint8)
        return img[:, :, 0] if gray else img

    ext = ".jpg" if gray else ".png"
    for split, count in (("train/good", n_train), ("test/good", n_good)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            cv2.imwrite(str(root / split / f"{i:03d}{ext}"), image())
    (root / "test" / "scratch").mkdir(parents=True, exist_ok=True)
    (root / "ground_truth" / "scratch").mkdir(parents=True, exist_ok=True)
    for i in range(n_bad):
        img, mask = image(), np.zeros((size, size), np.uint8)
        y, x = rng.integers(8, size - 24, size=2)
        img[y:y + 12, x:x + 12] = 255
        mask[y:y + 12, x:x + 12] = 255
        cv2.imwrite(str(root / "test" / "scratch" / f"{i:03d}{ext}"), img)
        cv2.imwrite(str(root / "ground_truth" / "scratch" / f"{i:03d}_mask.png"), mask)
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return write_mvtec(tmp_path / "tiny")


@pytest.fixture
def make_dataset():
    """The ``write_mvtec`` factory, for tests that need several datasets."""
    return write_mvtec
