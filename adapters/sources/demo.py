"""A built-in demo stream: a machined metal tile on a conveyor, with drifting light and rare defects.

It lets ``streamad watch demo`` run on a machine with no camera and no data. Everything is rendered
with numpy/OpenCV from a seed, frame by frame and reproducibly (frame ``i`` is the same whenever it is
asked for), with a ground-truth mask for every frame:

- the scene: a brushed-metal tile with four bolt holes and a centre ring, on a striped belt, shifted
  by up to ``jitter`` pixels per frame, with sensor noise;
- lighting drift: a slow brightness swing (``drift_amplitude`` over ``drift_period`` frames) and a
  light gradient whose direction turns over the same period;
- defects: with probability ``defect_rate`` per frame, a bright scratch or a dark stain on the tile.
  The default, 5 %, is a production line having a bad spell: the detector's alarm threshold is
  learned from the frames it trusts (docs/alarms.md), so defects do not lift it, at 5 % or at 20 %.

With the default configuration (seed 0) the first 300 frames hold defects at frames 7, 29, 38, 53,
66, 86, 119, 137, 162, 176, 203, 216, 220, 239, 265, 274 and 298 (a lower rate keeps a subset: at
1 %, 29, 119, 176, 216, 220 and 298).

    >>> stream = DemoStream(DemoConfig(size=128, defect_rate=1.0, seed=3))
    >>> s = stream.sample(0)
    >>> s.image.shape, s.image.dtype, s.mask.shape, s.defect in ("scratch", "stain")
    ((128, 128, 3), dtype('uint8'), (128, 128), True)
    >>> bool(s.mask.any()), bool((stream.sample(0).image == s.image).all())
    (True, True)
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from streamad.adapters.sources.base import Frame, Source


@dataclass(frozen=True)
class DemoConfig:
    """Parameters of the generated scene (see the module docstring). ``fps`` is the nominal frame
    rate used for timestamps (``index / fps``) and for pacing when the source runs in real time."""

    size: int = 384
    defect_rate: float = 0.05
    drift_period: int = 600
    drift_amplitude: float = 0.25
    noise: float = 2.0
    jitter: int = 2
    fps: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        c = "DemoConfig"
        checks = [
            ("size", isinstance(self.size, int) and 64 <= self.size <= 4096, "an int in 64..4096"),
            ("defect_rate", 0.0 <= float(self.defect_rate) <= 1.0, "a probability in [0, 1]"),
            ("drift_period", isinstance(self.drift_period, int) and self.drift_period >= 1, "an int >= 1 (frames)"),
            ("drift_amplitude", 0.0 <= float(self.drift_amplitude) < 1.0, "in [0, 1)"),
            ("noise", float(self.noise) >= 0.0, ">= 0 (grey levels)"),
            ("jitter", isinstance(self.jitter, int) and 0 <= self.jitter <= self.size // 16,
             f"an int in 0..{self.size // 16} (pixels)"),
            ("fps", float(self.fps) > 0.0, "> 0"),
            ("seed", isinstance(self.seed, int), "an int"),
        ]
        for name, ok, need in checks:
            if not ok:
                raise ValueError(f"{c}.{name} must be {need}, got {getattr(self, name)!r}")


@dataclass(frozen=True, eq=False)
class DemoSample:
    """One rendered frame: RGB ``uint8`` image, boolean defect ``mask`` (H, W), and the ``defect``
    kind (``"scratch"``, ``"stain"``) or None."""

    index: int
    image: np.ndarray
    mask: np.ndarray
    defect: str | None


class DemoStream:
    """Renders frame ``i`` of the demo scene on demand (``sample(i)``), or in order (iteration)."""

    def __init__(self, config: DemoConfig | None = None) -> None:
        self.config = config or DemoConfig()
        c = self.config
        rng = np.random.default_rng([c.seed, 0x5EED])
        n = c.size
        # belt: horizontal stripes plus grain, dark grey
        yy = np.arange(n, dtype=np.float32)[:, None]
        belt = 0.20 + 0.03 * np.sin(yy * (2 * math.pi / 9.0)) + 0.015 * rng.standard_normal((n, n)).astype(np.float32)
        self._background = np.repeat(belt[:, :, None], 3, axis=2) * np.array([1.0, 1.0, 1.05], np.float32)
        # tile: brushed metal (noise smeared along x), bevelled rim, four bolt holes and a centre ring
        t = int(round(n * 0.6))
        grain = cv2.GaussianBlur(rng.standard_normal((t, t)).astype(np.float32), (0, 0), sigmaX=6.0, sigmaY=0.6)
        grain /= float(grain.std()) + 1e-6
        shade = 0.62 + 0.04 * grain
        rim = max(2, t // 40)
        shade[:rim, :] += 0.12
        shade[:, :rim] += 0.08
        shade[-rim:, :] -= 0.12
        shade[:, -rim:] -= 0.08
        centre = (t // 2, t // 2)
        cv2.circle(shade, centre, t // 5, 0.45, thickness=max(2, t // 50), lineType=cv2.LINE_AA)
        cv2.circle(shade, centre, t // 5 - max(3, t // 30), 0.75, thickness=max(1, t // 80), lineType=cv2.LINE_AA)
        for fy in (0.15, 0.85):
            for fx in (0.15, 0.85):
                cv2.circle(shade, (int(fx * t), int(fy * t)), max(3, t // 18), 0.12, thickness=-1, lineType=cv2.LINE_AA)
        self._tile = np.clip(shade, 0, 1)[:, :, None] * np.array([0.95, 0.98, 1.05], np.float32)
        self._tile_size = t
        self._origin = (n - t) // 2
        y, x = np.mgrid[0:n, 0:n].astype(np.float32)
        self._xy = ((x - n / 2) / n, (y - n / 2) / n)

    def _defect(self, rng: np.random.Generator, tile: np.ndarray) -> tuple[np.ndarray, str]:
        """Paint one defect onto ``tile`` (in place); return its alpha coverage and kind."""
        t = self._tile_size
        alpha = np.zeros((t, t), np.float32)
        lo, hi = int(0.12 * t), int(0.88 * t)
        if rng.random() < 0.5:
            kind, colour = "scratch", np.array([0.97, 0.97, 0.95], np.float32)
            length = rng.uniform(0.15, 0.35) * t
            angle = rng.uniform(0, math.pi)
            cx, cy = rng.uniform(lo + length / 2, hi - length / 2, size=2)
            dx, dy = 0.5 * length * math.cos(angle), 0.5 * length * math.sin(angle)
            p1 = (int(round(cx - dx)), int(round(cy - dy)))
            p2 = (int(round(cx + dx)), int(round(cy + dy)))
            cv2.line(alpha, p1, p2, 1.0, thickness=int(rng.integers(1, 3)) + t // 150, lineType=cv2.LINE_AA)
        else:
            kind, colour = "stain", np.array([0.22, 0.16, 0.10], np.float32)
            axes = (int(rng.uniform(0.03, 0.08) * t) + 2, int(rng.uniform(0.03, 0.08) * t) + 2)
            cx, cy = rng.integers(lo + 10, hi - 10, size=2)
            cv2.ellipse(alpha, (int(cx), int(cy)), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, thickness=-1,
                        lineType=cv2.LINE_AA)
            alpha = cv2.GaussianBlur(alpha, (0, 0), 1.0)
        a = alpha[:, :, None]
        tile *= 1.0 - a
        tile += a * colour
        return alpha, kind

    def sample(self, index: int) -> DemoSample:
        """Frame ``index`` (>= 0), its mask and defect kind; the same for the same seed and index."""
        if index < 0:
            raise ValueError(f"demo frame index must be >= 0, got {index}")
        c = self.config
        n, t, o = c.size, self._tile_size, self._origin
        rng = np.random.default_rng([c.seed, index])
        tile = self._tile.copy()
        alpha, defect = None, None
        if rng.random() < c.defect_rate:
            alpha, defect = self._defect(rng, tile)
        dy, dx = (int(v) for v in rng.integers(-c.jitter, c.jitter + 1, size=2))
        image = self._background.copy()
        image[o + dy:o + dy + t, o + dx:o + dx + t] = tile
        mask = np.zeros((n, n), bool)
        if alpha is not None:
            mask[o + dy:o + dy + t, o + dx:o + dx + t] = alpha > 0.25
        phase = 2 * math.pi * index / c.drift_period
        gain = 1.0 + c.drift_amplitude * math.sin(phase)
        x, y = self._xy
        light = gain * (1.0 + 0.3 * (x * math.cos(phase / 2) + y * math.sin(phase / 2)))
        image *= (light.astype(np.float32) * np.float32(255.0))[:, :, None]
        if c.noise > 0:
            image += np.float32(c.noise) * rng.standard_normal(image.shape, dtype=np.float32)
        return DemoSample(index, np.clip(image, 0, 255).astype(np.uint8), mask, defect)

    def __iter__(self) -> Iterator[DemoSample]:
        i = 0
        while True:
            yield self.sample(i)
            i += 1


class DemoSource(Source):
    """The demo stream as a :class:`~streamad.adapters.sources.base.Source` named ``"demo"``.

    Endless unless ``max_frames`` is given; ``realtime=True`` paces frames at ``config.fps``.
    ``truth(index)`` gives the ground truth (:class:`DemoSample`) of a frame already read.
    """

    def __init__(self, config: DemoConfig | None = None, *, max_frames: int | None = None,
                 realtime: bool = False) -> None:
        if max_frames is not None and max_frames < 0:
            raise ValueError(f"DemoSource.max_frames must be >= 0 or None, got {max_frames!r}")
        self.stream = DemoStream(config)
        super().__init__("demo" if self.stream.config.seed == 0 else f"demo:{self.stream.config.seed}")
        self.max_frames = max_frames
        self.realtime = realtime
        self._next = 0
        self._start = time.monotonic()
        self._recent: dict[int, DemoSample] = {}

    def read(self, timeout: float | None = None) -> Frame | None:
        if self._ended or (self.max_frames is not None and self._next >= self.max_frames):
            self._ended = True
            return None
        i = self._next
        if self.realtime:
            wait = self._start + i / self.stream.config.fps - time.monotonic()
            if wait > 0:
                if timeout is not None and wait > timeout:
                    time.sleep(timeout)
                    return None
                time.sleep(wait)
        self._next += 1
        s = self.stream.sample(i)
        self._recent[i] = s
        self._recent.pop(i - 64, None)  # keep the last 64 samples' truth
        self._count("frames")
        return Frame(s.image, i / self.stream.config.fps, i, self.name)

    def close(self) -> None:
        """End the stream and drop the frames kept for :meth:`truth` (64 of them: 36 MiB at 384 pixels)."""
        super().close()
        self._recent.clear()

    def truth(self, index: int) -> DemoSample:
        """Ground truth of frame ``index`` (kept for the last 64 frames read, re-rendered otherwise)."""
        return self._recent.get(index) or self.stream.sample(index)
