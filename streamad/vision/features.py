"""Frames to patch descriptors (docs/DESIGN.md section 2, step 1).

Each chosen backbone map is locally aggregated over a 3x3 neighbourhood (PatchCore's locally aware
average pooling), resized bilinearly to the common grid, pooled along channels to its share of the
descriptor dimension, and the layers are concatenated with equal weight.

Channel pooling is data independent (adaptive averaging of neighbouring channels), so the same
extractor serves a stream with no fitting step. A layer with fewer channels than its share keeps all
of them, scaled by ``sqrt(share / channels)``: that gives exactly the distances that repeating each
channel ``share / channels`` times would, without the wasted dimensions.

    >>> import numpy as np
    >>> ex = PatchFeatureExtractor(FeatureConfig(image_size=(64, 64), grid=(8, 8)))
    >>> ex([np.zeros((50, 70, 3), np.uint8)]).shape      # 8x8 patches, 40 + 112 channels
    (1, 64, 152)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from streamad.vision.backbones import load_backbone
from streamad.config import FeatureConfig
from streamad.vision.frames import as_rgb_uint8


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but no CUDA GPU is visible; use device='cpu' or 'auto'")
    return torch.device(device)


def resize_and_crop(img: np.ndarray, size: tuple[int, int], center_crop: float = 1.0,
                    interpolation: int | None = None) -> np.ndarray:
    """Resize ``img`` to ``size / center_crop`` and keep the centre ``size`` = (height, width).

        >>> resize_and_crop(np.zeros((300, 400, 3), np.uint8), (224, 224), 0.875).shape
        (224, 224, 3)
    """
    h, w = size
    rh, rw = (h, w) if center_crop >= 1.0 else (round(h / center_crop), round(w / center_crop))
    if interpolation is None:
        shrink = img.shape[0] > rh or img.shape[1] > rw
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    out = cv2.resize(img, (rw, rh), interpolation=interpolation)
    top, left = (rh - h) // 2, (rw - w) // 2
    return out[top:top + h, left:left + w]


class PatchFeatureExtractor:
    """Callable: a list of RGB uint8 frames (any size) to descriptors (N, H*W, d) float32."""

    def __init__(self, config: FeatureConfig | None = None) -> None:
        self.config = config or FeatureConfig()
        self.device = resolve_device(self.config.device)
        self.backbone = load_backbone(self.config.backbone, self.config.layers, self.config.weights).to(self.device)
        info = self.backbone.info
        share = max(1, self.config.dim // len(info.layers))
        self._shares = [min(share, c) for c in info.channels]
        self._scales = [math.sqrt(share / c) if c < share else 1.0 for c in info.channels]
        self.dim = int(sum(self._shares))
        self.grid: tuple[int, int] = self.config.grid
        self.image_size: tuple[int, int] = self.config.image_size
        self.center_crop: float = float(self.config.center_crop)  # the share of the frame the grid covers
        self._mean = torch.tensor(info.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(info.std, device=self.device).view(1, 3, 1, 1)

    def preprocess(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """Resize (and centre-crop) to ``image_size``, area interpolation when shrinking; normalise."""
        h, w = self.image_size
        batch = np.empty((len(frames), h, w, 3), np.uint8)
        for i, frame in enumerate(frames):
            batch[i] = resize_and_crop(as_rgb_uint8(frame), self.image_size, self.config.center_crop)
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        return (x - self._mean) / self._std

    @torch.no_grad()
    def descriptors_from_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised batch (N, 3, h, w) to descriptors (N, H*W, d) on the extractor's device."""
        maps = self.backbone(x)
        k = self.config.aggregate
        parts = []
        for fmap, share, scale in zip(maps, self._shares, self._scales):
            if k > 1:
                fmap = F.avg_pool2d(fmap, k, stride=1, padding=k // 2, count_include_pad=False)
            if tuple(fmap.shape[-2:]) != self.grid:
                fmap = F.interpolate(fmap, size=self.grid, mode="bilinear", align_corners=False)
            n, c, gh, gw = fmap.shape
            flat = fmap.permute(0, 2, 3, 1).reshape(n * gh * gw, 1, c)
            if share < c:
                flat = F.adaptive_avg_pool1d(flat, share)
            parts.append(flat.reshape(n, gh * gw, -1) * scale)
        return torch.cat(parts, dim=2)

    def __call__(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        bs = self.config.batch_size
        for start in range(0, len(frames), bs):
            x = self.preprocess(frames[start:start + bs])
            out.append(self.descriptors_from_tensor(x).float().cpu().numpy())
        if not out:
            return np.zeros((0, self.grid[0] * self.grid[1], self.dim), np.float32)
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)


def positional_embedding(grid: tuple[int, int], weight: float) -> np.ndarray:
    """(H*W, 2) positions ``(i/H, j/W) * weight`` in row-major grid order (paper eq. 2)."""
    gh, gw = grid
    ii, jj = np.meshgrid(np.arange(gh) / gh, np.arange(gw) / gw, indexing="ij")
    return (np.stack([ii.ravel(), jj.ravel()], axis=1) * weight).astype(np.float32)


def with_positions(descriptors: np.ndarray, grid: tuple[int, int], weight: float) -> np.ndarray:
    """Append the positional embedding to (N, P, d) descriptors."""
    pos = positional_embedding(grid, weight)
    n = descriptors.shape[0]
    return np.concatenate([descriptors, np.broadcast_to(pos, (n,) + pos.shape)], axis=2).astype(np.float32)
