"""Small camera files and frame folders for the tests of ``streamad serve`` and ``watch``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# A camera's overrides for a fast detector: an 8-frame window, synchronous learning, 2 seeds.
SMALL = """
window = 8
learning = "sync"
[cameras.overrides]
channels = { seeds = 2, min_span = 2 }
decisions = { warmup = 3 }
"""


def write_frames(folder: Path, n: int = 40, size: int = 48, defect: int = 30, seed: int = 0, every: int = 0) -> Path:
    """``n`` textured frames (PNG) in ``folder``, frame ``defect`` with a bright square (with ``every``:
    each frame ``i`` with ``i % every == defect``).

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     len(list(write_frames(Path(d), n=3).glob("*.png")))
        3
    """
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 160, (size, size, 3)).astype(np.int16)
    for i in range(n):
        img = np.clip(base + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)
        if (i % every if every else i) == defect:
            img[10:26, 12:28] = 255
        cv2.imwrite(str(folder / f"f{i:03d}.png"), img)
    return folder
