"""The positional transpose test and rotation alignment (paper section 3.2, supplement D).

The mean training image is compared with its transpose: objects in a fixed pose give a large
difference, textures and randomly placed objects a small one. Above the threshold, patch positions
carry meaning and the positional embedding is appended. A set that fails may pass after every image
is rotated to best match the first one (1-degree steps, compared on the centre quarter).

    >>> import numpy as np
    >>> texture = [np.full((32, 32, 3), 100, np.uint8)] * 3
    >>> transpose_score(texture)
    0.0
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

TEST_SIZE = 224
# Scores are in the units of ImageNet-normalised 224x224 RGB tensors ((x/255 - mean) / std), what the
# reference feeds its backbone; the supplement's threshold of 600 separates its classes in these units
# (MVTec bottle scores about 75 here, the supplement lists 123; fixed-pose classes list 1,000-7,840).
_IMAGENET_STD = np.array([0.229, 0.224, 0.225])
_ALIGN_SIZE = 64  # rotation search resolution


def _square(img: np.ndarray, size: int) -> np.ndarray:
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)


def transpose_score(images: Sequence[np.ndarray]) -> float:
    """``||mean - mean^T||_2`` of the mean normalised image at 224x224 (the supplement's P_s)."""
    mean = np.zeros((TEST_SIZE, TEST_SIZE, 3), np.float64)
    for img in images:
        mean += _square(img, TEST_SIZE)
    mean /= max(1, len(images)) * 255.0 * _IMAGENET_STD
    return float(np.sqrt(((mean - mean.transpose(1, 0, 2)) ** 2).sum()))


def rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the image centre, same size, borders replicated."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), degrees, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _centre_quarter(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return img[h // 4: h // 4 + h // 2, w // 4: w // 4 + w // 2]


def best_rotation(image: np.ndarray, reference: np.ndarray, step: float = 1.0) -> float:
    """The angle (degrees) that makes ``image``'s centre quarter closest (L2) to ``reference``'s."""
    ref = _centre_quarter(_square(reference, _ALIGN_SIZE))
    img = _square(image, _ALIGN_SIZE)
    best, best_d = 0.0, np.inf
    for angle in np.arange(0.0, 360.0, step):
        d = float(((_centre_quarter(rotate(img, angle)) - ref) ** 2).sum())
        if d < best_d:
            best, best_d = float(angle), d
    return best


def rotation_angles(images: Sequence[np.ndarray], reference: np.ndarray) -> list[float]:
    """Per image, the rotation aligning it to ``reference`` (the first training image)."""
    return [best_rotation(img, reference) for img in images]
