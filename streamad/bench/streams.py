"""Synthetic and recorded descriptor streams for the engine benchmarks, and a detector to feed them to.

Synthetic frames: ``patches`` fixed "places" (the normal descriptors) plus per-frame noise, a slow drift
and, now and then, a defect (a few patches moved far away). :class:`WanderingStream` lets the places
wander for ever (the soak test); :class:`RealDescriptors` serves descriptors from a ``.npy`` file.
:func:`descriptor_detector` is a real ``StreamDetector`` that takes these descriptors directly
(``process_descriptors``), with no backbone.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from streamad.errors import UserError


class SyntheticStream:
    """Frames of ``patches`` descriptors: fixed places + noise + slow drift, a defect in 5% of frames."""

    def __init__(self, patches: int, dim: int, seed: int = 0, noise: float = 0.3) -> None:
        self.rng = np.random.default_rng(seed)
        self.places = self.rng.normal(size=(patches, dim)).astype(np.float32)
        self.direction = self.rng.normal(size=(patches, dim)).astype(np.float32)
        self.noise = noise
        self.t = 0

    def next(self) -> np.ndarray:
        drift = 0.2 * math.sin(self.t / 300.0)
        x = self.places + drift * self.direction
        x = x + self.noise * self.rng.standard_normal(x.shape, dtype=np.float32)
        if self.rng.random() < 0.05:
            hit = self.rng.choice(len(x), size=max(1, len(x) // 40), replace=False)
            x[hit] += 3.0 * self.rng.standard_normal((len(hit), x.shape[1]), dtype=np.float32)
        self.t += 1
        return x.astype(np.float32)


class WanderingStream(SyntheticStream):
    """``SyntheticStream`` whose normal places wander: each place follows an Ornstein-Uhlenbeck walk
    (mean-reverting, ``spread`` standard deviation around its start, correlation time ``tau`` frames),
    so the nominal patches keep changing for ever while the distances stay on one scale.

    >>> s = WanderingStream(4, 3, seed=1)
    >>> a, b = s.next(), s.next()
    >>> a.shape, a.dtype, bool((a != b).any())
    ((4, 3), dtype('float32'), True)
    """

    def __init__(self, patches: int, dim: int, seed: int = 0, noise: float = 0.3, tau: float = 2000.0,
                 spread: float = 0.5) -> None:
        super().__init__(patches, dim, seed, noise)
        self.home = self.places.copy()
        self.offset = np.zeros_like(self.places)
        self.theta = 1.0 / tau
        self.sigma = np.float32(spread * math.sqrt(2.0 * self.theta))

    def next(self) -> np.ndarray:
        self.offset *= np.float32(1.0 - self.theta)
        self.offset += self.sigma * self.rng.standard_normal(self.offset.shape, dtype=np.float32)
        self.places = self.home + self.offset
        return super().next()


class RealDescriptors:
    """Real descriptors served ``patches`` rows at a time, in file order; past the end, the file again
    with Gaussian noise (``noise`` x each dimension's standard deviation) on every repetition."""

    def __init__(self, path: str, patches: int | None = None, seed: int = 0, noise: float = 0.05,
                 hold_out: int = 0) -> None:
        try:
            x = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read descriptors {path}: {exc}") from None
        if x.ndim not in (2, 3) or x.dtype.kind != "f":
            raise UserError(f"{path}: expected float descriptors of shape (N, P, d) or (n, d), got {x.shape} {x.dtype}")
        self.patches = int(x.shape[1]) if x.ndim == 3 else int(patches or 784)
        flat = np.ascontiguousarray(x.reshape(-1, x.shape[-1]), dtype=np.float32)
        if hold_out:
            self.held_out = flat[-hold_out * self.patches:]
            flat = flat[:-hold_out * self.patches]
        self.vectors = flat
        self.dim = int(flat.shape[1])
        self.sd = flat.std(axis=0).astype(np.float32)
        self.rng = np.random.default_rng(seed)
        self.noise = float(noise)
        self.pos = 0

    def next(self) -> np.ndarray:
        n = len(self.vectors)
        idx = (self.pos + np.arange(self.patches)) % n
        out = self.vectors[idx]
        rep = (self.pos + np.arange(self.patches)) // n
        if rep.max() > 0:
            out = out + (rep > 0)[:, None] * self.noise * self.sd * self.rng.standard_normal(out.shape, dtype=np.float32)
        self.pos += self.patches
        return np.ascontiguousarray(out, dtype=np.float32)


def stand_in(patches: int) -> Any:
    """The detector only needs the grid and input size on the descriptor path: a square grid if it can."""
    from streamad.evaluation.descriptor_cache import PrecomputedDescriptors

    side = int(math.isqrt(patches))
    return PrecomputedDescriptors((side, side) if side * side == patches else (1, patches), (224, 224))


def descriptor_detector(window: int, patches: int, dim: int, seeds: int, seed: int, *, index: Any = None,
                        background: bool = False, memory: int | None = None) -> Any:
    """A ``StreamDetector`` for frames of ``patches`` descriptors of dimension ``dim`` (``index``: an
    ``IndexConfig``, default the configured one; ``background``: learn on the background learner;
    ``memory``: the long-term memory's capacity, default the stream's, 0 for none)."""
    import dataclasses

    from streamad.config import ChannelConfig, FeatureConfig, StreamConfig
    from streamad.stream.detector import StreamDetector

    ex = stand_in(patches)
    extra: dict[str, Any] = {} if index is None else {"index": index}
    if memory is not None:
        extra["memory"] = dataclasses.replace(StreamConfig().memory, capacity=memory)
    cfg = StreamConfig(window=window, channels=ChannelConfig(seeds=seeds),
                       features=FeatureConfig(grid=ex.grid, dim=dim), seed=seed, learn_in_background=background,
                       **extra)
    return StreamDetector(cfg, extractor=ex)
