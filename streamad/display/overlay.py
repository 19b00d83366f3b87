"""Show and record the verdicts: heatmap overlay, an optional window, a video recorder, PNG snapshots.

The overlay blends a JET colour map of the heatmap onto the frame. Colours use a *fixed* scale, not
each frame's own maximum, so they mean the same thing from frame to frame: by default the scale is
the result's alarm threshold, so a patch at the threshold is dark red, half of it green, zero dark
blue (pass ``scale=`` for a constant of your own). The blend weight grows with the value (from
``0.3 * alpha`` to ``alpha``), so quiet areas stay visible. Text gives the score and threshold
("warming up" while the detector is not ready); an anomalous frame gets a red border.

    >>> import numpy as np
    >>> from streamad.results import FrameResult
    >>> frame = np.full((64, 80, 3), 128, np.uint8)
    >>> r = FrameResult(index=0, ready=True, score=3.0, threshold=2.0, anomalous=True,
    ...                 heatmap=np.zeros((16, 20), np.float32), patch_scores=None, drift=False,
    ...                 admitted=True, timestamp=0.0)
    >>> out = render_overlay(frame, r)
    >>> out.shape, out.dtype, tuple(int(v) for v in out[0, 40])    # red border
    ((64, 80, 3), dtype('uint8'), (255, 0, 0))
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from streamad.errors import UserError
from streamad.results import FrameResult

RED = (255, 0, 0)
YELLOW = (255, 220, 0)
WHITE = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class DisplayUnavailable(UserError):
    """No GUI to show a window in (headless OpenCV, or no display)."""


def colorize(heatmap: np.ndarray, scale: float) -> np.ndarray:
    """RGB ``uint8`` JET image of ``heatmap / scale`` clipped to [0, 1] (0: blue, 1: dark red)."""
    if not scale > 0:
        raise ValueError(f"heatmap colour scale must be > 0, got {scale!r}")
    v = np.clip(np.nan_to_num(np.asarray(heatmap, np.float32) / np.float32(scale)), 0.0, 1.0)
    return cv2.cvtColor(cv2.applyColorMap((v * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def _scale_for(result: FrameResult, heatmap: np.ndarray, scale: float | None) -> float:
    if scale is not None:
        return float(scale)
    if result.threshold is not None and result.threshold > 0 and np.isfinite(result.threshold):
        return float(result.threshold)
    top = float(np.nanmax(heatmap)) if heatmap.size else 0.0  # no threshold yet: the frame's own maximum
    return top if top > 0 and np.isfinite(top) else 1.0


def _text(image: np.ndarray, text: str, org: tuple[int, int], size: float, colour: tuple[int, int, int]) -> int:
    """Draw ``text`` on a dark box at ``org`` (top-left); return the x after it."""
    thick = max(1, int(round(size * 2)))
    (w, h), base = cv2.getTextSize(text, FONT, size, thick)
    x, y = org
    cv2.rectangle(image, (x, y), (x + w + 6, y + h + base + 6), (0, 0, 0), thickness=-1)
    cv2.putText(image, text, (x + 3, y + h + 3), FONT, size, colour, thick, cv2.LINE_AA)
    return x + w + 8


def render_overlay(frame: np.ndarray, result: FrameResult | None, *, scale: float | None = None,
                   alpha: float = 0.6, label: str | None = None) -> np.ndarray:
    """The annotated frame (a new RGB ``uint8`` array of the frame's size); see the module docstring.

    ``frame`` is RGB ``uint8`` (H, W, 3); the heatmap may have another size (it is resized).
    ``label`` is extra text for the bottom-left corner (e.g. the source and frame number).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay alpha must be in [0, 1], got {alpha!r}")
    image = np.ascontiguousarray(frame, dtype=np.uint8).copy()
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"frame must be RGB (H, W, 3), got shape {image.shape}")
    h, w = image.shape[:2]
    size = max(0.35, min(1.2, w / 900))
    pad = max(2, w // 100)
    if result is not None and result.heatmap is not None and result.heatmap.size:
        hm = np.asarray(result.heatmap, np.float32)
        if hm.shape != (h, w):
            hm = cv2.resize(hm, (w, h), interpolation=cv2.INTER_LINEAR)
        s = _scale_for(result, hm, scale)
        weight = (alpha * (0.3 + 0.7 * np.clip(np.nan_to_num(hm / np.float32(s)), 0.0, 1.0)))[:, :, None]
        image = (image * (1.0 - weight) + colorize(hm, s) * weight).astype(np.uint8)
    if result is not None and result.anomalous:
        border = max(3, min(h, w) // 50)
        cv2.rectangle(image, (0, 0), (w - 1, h - 1), RED, thickness=2 * border)
        pad += border
    if result is None:
        pass
    elif not result.ready or result.score is None:
        _text(image, "warming up", (pad, pad), size, WHITE)
    else:
        thr = "-" if result.threshold is None else f"{result.threshold:.3f}"
        x = _text(image, f"score {result.score:.3f}  thr {thr}", (pad, pad), size, WHITE)
        if result.anomalous:
            x = _text(image, "ANOMALY", (x, pad), size, RED)
        if result.drift:
            _text(image, "drift", (x, pad), size, YELLOW)
    if label:
        (_, th), base = cv2.getTextSize(label, FONT, size * 0.8, 1)
        _text(image, label, (pad, h - th - base - 6 - pad), size * 0.8, WHITE)
    return image


def gui_problem() -> str | None:
    """Why no window can be shown here, or None when one can."""
    gui = ""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            gui = line.split(":", 1)[1].strip()
    if gui.upper() == "NONE":
        return ("this OpenCV has no GUI support (opencv-python-headless): install opencv-python instead of the "
                "headless package to use --show, or use --save FILE / --publish to see the results")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display (DISPLAY is not set): run on a desktop session, or use --save FILE / --publish"
    return None


class Window:
    """An OpenCV window showing RGB images; ``show`` returns False once the user pressed q or Esc or
    closed the window. Raises :class:`DisplayUnavailable` (with what to do) when there is no GUI."""

    def __init__(self, title: str = "streamad") -> None:
        problem = gui_problem()
        if problem:
            raise DisplayUnavailable(f"cannot open a window: {problem}")
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error as exc:
            raise DisplayUnavailable(f"cannot open a window: {exc}") from exc
        self._open = True

    def show(self, image_rgb: np.ndarray) -> bool:
        if not self._open:
            return False
        cv2.imshow(self.title, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27) or cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.close()
        return self._open

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                cv2.destroyWindow(self.title)
            except cv2.error:
                pass


def _check_parent(path: Path) -> None:
    if not path.parent.is_dir():
        raise UserError(f"cannot write {str(path)!r}: folder {str(path.parent)!r} does not exist")


def save_png(path: str | os.PathLike[str], image_rgb: np.ndarray) -> None:
    """Write an RGB ``uint8`` image as PNG (raises ``UserError`` naming the path on failure)."""
    p = Path(path)
    _check_parent(p)
    if not cv2.imwrite(str(p), cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2BGR)):
        raise UserError(f"cannot write image {str(p)!r} (is the extension one OpenCV writes, e.g. .png?)")


class VideoRecorder:
    """Writes RGB frames to a video file with ``cv2.VideoWriter``.

    The codec follows the extension (.mp4/.mov: mp4v, .avi/.mkv: MJPG) unless ``fourcc`` is given
    (e.g. ``"FFV1"`` for lossless .avi/.mkv). The frame size is fixed by the first frame; later frames of
    another size are resized to it. ``snapshot`` writes one image as PNG.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float = 10.0, fourcc: str | None = None) -> None:
        self.path = Path(path)
        _check_parent(self.path)
        if not fps > 0:
            raise ValueError(f"VideoRecorder.fps must be > 0, got {fps!r}")
        ext = self.path.suffix.lower()
        if fourcc is None:
            if ext not in VIDEO_CODECS:
                raise UserError(f"cannot record video to {str(self.path)!r}: unknown extension {ext!r} "
                                f"(use one of {', '.join(sorted(VIDEO_CODECS))}, or .png for a snapshot)")
            fourcc = VIDEO_CODECS[ext]
        if len(fourcc) != 4:
            raise ValueError(f"VideoRecorder.fourcc must be 4 characters, got {fourcc!r}")
        self.fps, self.fourcc = float(fps), fourcc
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, image_rgb: np.ndarray, ready: bool = True) -> None:
        """Append one RGB ``uint8`` frame (``ready`` is accepted for symmetry with
        :class:`SnapshotRecorder` and ignored)."""
        h, w = image_rgb.shape[:2]
        if self._writer is None:
            self._size = (w, h)
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, (w, h))
            if not self._writer.isOpened():
                self._writer = None
                raise UserError(f"cannot write video {str(self.path)!r} with codec {self.fourcc}: this OpenCV "
                                "build cannot encode it; try another extension (.avi uses MJPG)")
        if (w, h) != self._size:
            image_rgb = cv2.resize(image_rgb, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(np.ascontiguousarray(image_rgb, dtype=np.uint8), cv2.COLOR_RGB2BGR))
        self.frames += 1

    @staticmethod
    def snapshot(path: str | os.PathLike[str], image_rgb: np.ndarray) -> None:
        """Write one RGB image as PNG."""
        save_png(path, image_rgb)

    def close(self) -> None:
        """Finish the file (safe to call twice; a recorder that saw no frame writes no file)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> VideoRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SnapshotRecorder:
    """Keeps the overlay of the last *ready* frame and writes it as PNG on ``close`` (the last frame of
    any kind when none was ready; ``wrote_ready`` tells which)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        _check_parent(self.path)
        self.frames = 0
        self.wrote_ready: bool | None = None
        self._last: np.ndarray | None = None
        self._last_ready: np.ndarray | None = None

    def write(self, image_rgb: np.ndarray, ready: bool = True) -> None:
        self.frames += 1
        if ready:
            self._last_ready = image_rgb
        else:
            self._last = image_rgb

    def close(self) -> None:
        if self.wrote_ready is not None:
            return
        image = self._last_ready if self._last_ready is not None else self._last
        if image is not None:
            save_png(self.path, image)
            self.wrote_ready = self._last_ready is not None


def make_recorder(path: str | os.PathLike[str], fps: float = 10.0) -> VideoRecorder | SnapshotRecorder:
    """A :class:`SnapshotRecorder` for a ``.png`` path, else a :class:`VideoRecorder`."""
    if Path(path).suffix.lower() == ".png":
        return SnapshotRecorder(path)
    return VideoRecorder(path, fps=fps)
