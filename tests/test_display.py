"""Heatmap overlay, the window guard, the video recorder (read back) and PNG snapshots."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streamad.display import overlay as display
from streamad.display.overlay import (
    DisplayUnavailable,
    SnapshotRecorder,
    VideoRecorder,
    Window,
    colorize,
    make_recorder,
    render_overlay,
    save_png,
)
from streamad.adapters.sources import VideoFileSource
from streamad.errors import UserError
from streamad.results import FrameResult


def result(*, ready: bool = True, score: float = 1.0, threshold: float | None = 2.0, anomalous: bool = False,
           heatmap: np.ndarray | None = None, drift: bool = False) -> FrameResult:
    if not ready:
        return FrameResult(0, False, None, None, False, None, None, drift, True, 0.0)
    return FrameResult(0, True, score, threshold, anomalous, heatmap, None, drift, False, 0.0)


def frame(h: int = 120, w: int = 160, value: int = 128) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


def test_overlay_colours_use_a_fixed_scale_not_each_frames_maximum() -> None:
    hm_a = np.zeros((120, 160), np.float32)
    hm_a[60:, :] = 1.0                     # lower half at half the threshold
    hm_b = hm_a.copy()
    hm_b[:20, :20] = 50.0                  # a much hotter spot elsewhere
    a = render_overlay(frame(), result(heatmap=hm_a))
    b = render_overlay(frame(), result(heatmap=hm_b))
    # the same value gets the same colour whatever else the frame holds
    np.testing.assert_array_equal(a[100, 80], b[100, 80])
    # the colour map: 0 is blue, the threshold (or more) red; half of it greenish
    hot = render_overlay(frame(), result(heatmap=np.full((120, 160), 2.0, np.float32)))[80, 80]
    cold = a[30, 80]
    half = a[100, 80]
    assert int(hot[0]) > int(hot[1]) + 50 and int(hot[0]) > int(hot[2]) + 50, hot        # (dark) red
    assert cold[2] > cold[0] and cold[2] > cold[1], cold
    assert half[1] > half[2] and half[1] > 150, half
    # an explicit scale overrides the threshold
    scaled = render_overlay(frame(), result(heatmap=hm_a), scale=1.0)[100, 80]
    assert int(scaled[0]) > int(scaled[1]) + 50 and int(scaled[0]) > int(scaled[2]) + 50


def test_overlay_text_border_and_input_untouched() -> None:
    f = frame()
    before = f.copy()
    quiet = render_overlay(f, None)
    np.testing.assert_array_equal(quiet, f)                     # nothing to draw: the frame as is
    warming = render_overlay(f, result(ready=False))
    normal = render_overlay(f, result(heatmap=None))
    anomalous = render_overlay(f, result(anomalous=True, score=3.0))
    np.testing.assert_array_equal(f, before)                     # never drawn in place
    assert (warming[:30, :100] != f[:30, :100]).any()            # "warming up" text
    assert not (warming[40:, :] != f[40:, :]).any()             # ...and nothing else
    assert not np.array_equal(warming[:30], normal[:30])         # score text differs from warming up
    red = np.array([255, 0, 0])
    for image, expect in ((normal, False), (warming, False), (anomalous, True)):
        corners = [image[-1, -1], image[-1, 0], image[60, -1], image[119, 80]]
        assert all((c == red).all() for c in corners) == expect


def test_overlay_resizes_a_heatmap_of_another_size() -> None:
    hm = np.zeros((8, 8), np.float32)
    hm[4:, :] = 2.0
    out = render_overlay(frame(64, 96), result(heatmap=hm))
    assert out.shape == (64, 96, 3)
    assert out[60, 48, 0] > out[20, 48, 0]    # the bottom half is hot, the top cold


def test_colorize_and_validation() -> None:
    c = colorize(np.array([[0.0, 1.0, 5.0, np.nan]], np.float32), 1.0)
    assert c.shape == (1, 4, 3) and c.dtype == np.uint8
    np.testing.assert_array_equal(c[0, 1], c[0, 2])             # clipped at the scale
    with pytest.raises(ValueError, match="scale must be > 0"):
        colorize(np.zeros((2, 2)), 0.0)
    with pytest.raises(ValueError, match="RGB"):
        render_overlay(np.zeros((4, 4), np.uint8), None)


def test_window_without_gui_says_what_to_do(monkeypatch) -> None:
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "  GUI:      NONE\n")
    with pytest.raises(DisplayUnavailable, match="opencv-python.*--save"):
        Window()
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "  GUI:      GTK3\n")
    monkeypatch.setattr(display.sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(DisplayUnavailable, match="DISPLAY"):
        Window()
    assert issubclass(DisplayUnavailable, UserError)


def test_video_recorder_lossless_round_trip_and_resizing(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8) for _ in range(7)]
    with VideoRecorder(tmp_path / "out.avi", fps=12.0, fourcc="FFV1") as rec:
        for f in frames:
            rec.write(f)
        rec.write(np.zeros((24, 32, 3), np.uint8))            # another size: resized to the first
    assert rec.frames == 8
    back = list(VideoFileSource(tmp_path / "out.avi"))
    assert len(back) == 8
    for got, want in zip(back, frames):
        np.testing.assert_array_equal(got.image, want)         # RGB in, RGB out, exact
    assert back[-1].image.shape == (48, 64, 3)


@pytest.mark.parametrize("name", ["out.mp4", "out.avi"])
def test_video_recorder_default_codecs(tmp_path: Path, name: str) -> None:
    frames = [np.full((64, 64, 3), (20 * i, 100, 200 - 20 * i), np.uint8) for i in range(6)]
    rec = make_recorder(tmp_path / name, fps=10.0)
    assert isinstance(rec, VideoRecorder)
    for f in frames:
        rec.write(f)
    rec.close()
    rec.close()  # twice is fine
    back = list(VideoFileSource(tmp_path / name))
    assert len(back) == 6
    for got, want in zip(back, frames):
        assert np.abs(got.image.astype(int) - want.astype(int)).mean() < 8   # lossy codecs: close, not exact


def test_recorder_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        VideoRecorder(tmp_path / "missing" / "x.mp4")
    with pytest.raises(UserError, match="unknown extension '.xyz'"):
        VideoRecorder(tmp_path / "x.xyz")
    with pytest.raises(UserError, match="does not exist"):
        save_png(tmp_path / "missing" / "x.png", frame())


def test_snapshot_keeps_the_last_ready_frame(tmp_path: Path) -> None:
    rec = make_recorder(tmp_path / "last.png")
    assert isinstance(rec, SnapshotRecorder)
    a, b, c = frame(value=10), frame(value=20), frame(value=30)
    rec.write(a, ready=True)
    rec.write(b, ready=True)
    rec.write(c, ready=False)
    rec.close()
    assert rec.wrote_ready is True
    saved = cv2.cvtColor(cv2.imread(str(tmp_path / "last.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(saved, b)

    none_ready = SnapshotRecorder(tmp_path / "warm.png")
    none_ready.write(a, ready=False)
    none_ready.write(c, ready=False)
    none_ready.close()
    assert none_ready.wrote_ready is False
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / "warm.png"))[..., ::-1], c)

    empty = SnapshotRecorder(tmp_path / "empty.png")
    empty.close()
    assert empty.wrote_ready is None and not (tmp_path / "empty.png").exists()
