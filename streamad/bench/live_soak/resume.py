"""At the end of a soak: does every camera's saved state load, and resume exactly where the live detector
stopped?

serve saved every state when it was stopped (SIGTERM), in its workers, at each camera's last frame. For
each camera :func:`check_resume`

- loads the state (``StreamDetector.load``, the camera's extractor) and checks it is the live
  detector's at its end: the frames it has seen are the frames the soak saw published
  (``frames_seen == last published index + 1``);
- continues it on the camera's next frames (the demo scene of its seed, frames ``frames_seen`` on)
  twice: once straight through (A), and once saved half-way and loaded again (B, then C). The second
  half must score exactly as A does (score, threshold, verdict), and C must end in exactly A's state (a
  digest of every part a save writes). Learning is synchronous here, so that a score depends on the
  frames only and not on when a background learner got to them.

:func:`load_copy` loads a copy of a state folder without a backbone (the save fault's check that the
state an interrupted save left still loads).
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamad.bench.fuzz import state_fingerprint
from streamad.stream.detector import StreamDetector
from streamad.stream.persistence import read_manifest

RESUME_FRAMES = 8  # frames each state is continued on (half of them after a save and a load)

FrameSource = Callable[[int], tuple[np.ndarray, float]]  # probe frame i -> (RGB image, timestamp)


class GridOnly:
    """An extractor that only tells a state's grid: loading and checking a state needs no descriptors."""

    def __init__(self, grid: tuple[int, int], image_size: tuple[int, int] = (224, 224)) -> None:
        self.grid, self.image_size = tuple(grid), tuple(image_size)

    def __call__(self, frames: Any) -> np.ndarray:
        raise RuntimeError("GridOnly computes no descriptors")


def copy_state(directory: Path, into: Path) -> Path:
    """A copy of the state folder ``directory`` (and of its ``.NAME.previous``, which a save killed between
    its two renames leaves) under ``into``; the copy's path."""
    into.mkdir(parents=True, exist_ok=True)
    for src in (directory, directory.with_name(f".{directory.name}.previous")):
        if src.is_dir():
            shutil.copytree(src, into / src.name, dirs_exist_ok=True)
    return into / directory.name


def load_copy(directory: Path) -> int:
    """Load a copy of the state in ``directory`` (serve may be reading the original at the same time);
    its frames seen. Raises ``StateError`` (or ``OSError``) when it cannot be loaded."""
    with tempfile.TemporaryDirectory(prefix="streamad-soak-state-") as tmp:
        copy = copy_state(Path(directory), Path(tmp))
        grid = read_manifest(copy)["state"]["detector"]["grid"]
        detector = StreamDetector.load(copy, extractor=GridOnly(grid))
        frames = detector.frames_seen
        detector.close()
        return frames


@dataclass(frozen=True)
class StateCheck:
    """How one camera's final state did (see the module docstring)."""

    camera: str
    loads: bool
    frames_seen: int | None = None
    last_published: int | None = None
    same_scores: bool = False
    same_state: bool = False
    probe_frames: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def at_last_frame(self) -> bool:
        """The state is the live detector's at its last published frame."""
        return self.frames_seen is not None and self.last_published is not None and \
            self.frames_seen == self.last_published + 1

    @property
    def ok(self) -> bool:
        return self.loads and self.at_last_frame and self.same_scores and self.same_state

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "at_last_frame": self.at_last_frame, "ok": self.ok}


def _verdicts(results: list[Any]) -> list[tuple[Any, ...]]:
    return [(r.index, r.score, r.threshold, r.anomalous, r.ready) for r in results]


def check_resume(camera: str, directory: Path, extractor: Any, frames: FrameSource,
                 last_published: int | None, n: int = RESUME_FRAMES) -> StateCheck:
    """The checks of the module docstring on ``camera``'s state in ``directory``; ``frames(i)`` gives the
    i-th frame after the state's last one (image, timestamp)."""
    t0 = time.perf_counter()
    try:
        saved = StreamDetector.load(directory, extractor=extractor)
        sync = dataclasses.replace(saved.config, learn_in_background=False)
        frames_seen = saved.frames_seen
        saved.close()
    except Exception as exc:  # noqa: BLE001 - a state that does not load is the finding
        return StateCheck(camera, False, last_published=last_published, error=f"{type(exc).__name__}: {exc}",
                          seconds=time.perf_counter() - t0)
    probe = [frames(i) for i in range(n)]
    half = n // 2
    with tempfile.TemporaryDirectory(prefix="streamad-soak-resume-") as tmp:
        a = StreamDetector.load(directory, extractor=extractor, config=sync)
        b = StreamDetector.load(directory, extractor=extractor, config=sync)
        try:
            straight = [a.process(image, ts) for image, ts in probe]
            first = [b.process(image, ts) for image, ts in probe[:half]]
            b.save(Path(tmp) / "half")
            c = StreamDetector.load(Path(tmp) / "half", extractor=extractor, config=sync)
            second = [c.process(image, ts) for image, ts in probe[half:]]
            same_scores = _verdicts(straight) == _verdicts(first + second)
            same_state = state_fingerprint(a) == state_fingerprint(c)
            c.close()
        finally:
            a.close()
            b.close()
    return StateCheck(camera, True, frames_seen, last_published, same_scores, same_state, n,
                      time.perf_counter() - t0)
