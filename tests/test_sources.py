"""Frame sources with real files (a lossless video, an image folder with corrupt files) and a simulated
live device that fails and recovers (injected capture factory), plus the demo stream."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamad.adapters.demo import DemoConfig, DemoSource, DemoStream
from streamad.adapters.sources import (
    Backoff,
    FolderSource,
    LiveSource,
    SourceError,
    VideoFileSource,
    open_source,
)


def bgr_frames(n: int, h: int = 48, w: int = 64, seed: int = 0) -> list[np.ndarray]:
    """Random BGR frames, each also carrying its number in the first pixel row."""
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for _ in range(n)]
    for i, f in enumerate(frames):
        f[0, :8] = i
    return frames


def write_video(path: Path, frames: list[np.ndarray], fourcc: str = "FFV1", fps: float = 25.0) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened(), f"this OpenCV cannot write {fourcc}"
    for f in frames:
        writer.write(f)
    writer.release()
    return path


# -- video files --------------------------------------------------------------------------------------


def test_lossless_video_reads_back_every_frame_exactly_in_order(tmp_path: Path) -> None:
    frames = bgr_frames(12)
    path = write_video(tmp_path / "clip.avi", frames, "FFV1", fps=25.0)
    with open_source(str(path)) as source:
        assert isinstance(source, VideoFileSource) and not source.live
        got = list(source)
        assert source.ended and source.read() is None
    assert len(got) == len(frames)
    assert [f.index for f in got] == list(range(12))
    for f, original in zip(got, frames):
        assert f.image.dtype == np.uint8 and f.image.shape == (48, 64, 3)
        np.testing.assert_array_equal(f.image, cv2.cvtColor(original, cv2.COLOR_BGR2RGB))  # FFV1 is lossless
    assert [f.timestamp for f in got] == pytest.approx([i / 25.0 for i in range(12)])
    assert got[0].source == f"video:{path}"
    assert source.stats.frames == 12


def test_lossy_video_keeps_count_and_order(tmp_path: Path) -> None:
    # MJPG is lossy: frame count and order are exact, pixels only close. Smooth frames keep JPEG error low.
    frames = [np.full((48, 64, 3), 10 * i, np.uint8) for i in range(10)]
    path = write_video(tmp_path / "clip_mjpg.avi", frames, "MJPG")
    got = list(VideoFileSource(path))
    assert len(got) == 10
    means = [float(f.image.mean()) for f in got]
    assert means == pytest.approx([10.0 * i for i in range(10)], abs=2.0)


def test_unreadable_video_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 10)
    with pytest.raises(SourceError, match="cannot open video"):
        open_source(str(bad))


# -- folders ------------------------------------------------------------------------------------------


def test_folder_source_natural_order_gray_to_rgb_and_skips_corrupt_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    colour = rng.integers(0, 256, size=(32, 40, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, size=(32, 40), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "frame2.png"), colour)
    cv2.imwrite(str(tmp_path / "frame10.png"), gray)               # grayscale PNG, lossless
    cv2.imwrite(str(tmp_path / "frame3.JPG"), colour)               # upper-case extension
    cv2.imwrite(str(tmp_path / "frame4.bmp"), colour)
    cv2.imwrite(str(tmp_path / "frame5.tif"), colour)
    (tmp_path / "frame6.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage, not an image")
    ok, jpg = cv2.imencode(".jpg", colour)
    (tmp_path / "frame7.jpeg").write_bytes(jpg.tobytes()[:20])      # truncated JPEG
    (tmp_path / "notes.txt").write_text("ignored")
    events = []
    with open_source(str(tmp_path)) as plain:
        assert isinstance(plain, FolderSource)
    source = FolderSource(tmp_path, on_event=events.append)
    got = list(source)
    names = [source.paths[f.index].name for f in got]
    assert names == ["frame2.png", "frame3.JPG", "frame4.bmp", "frame5.tif", "frame10.png"]
    assert all(f.image.shape == (32, 40, 3) and f.image.dtype == np.uint8 for f in got)
    np.testing.assert_array_equal(got[0].image, cv2.cvtColor(colour, cv2.COLOR_BGR2RGB))
    np.testing.assert_array_equal(got[-1].image, np.repeat(gray[:, :, None], 3, axis=2))
    assert source.stats.skipped == 2 and source.stats.frames == 5
    assert [e.kind for e in events] == ["skipped", "skipped"]
    assert "frame6.png" in events[0].message and "frame7.jpeg" in events[1].message
    assert source.ended


def test_folder_skips_are_logged_as_warnings_without_a_callback(tmp_path: Path, caplog) -> None:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((16, 16, 3), np.uint8))
    (tmp_path / "b.png").write_bytes(b"corrupt")
    with caplog.at_level(logging.WARNING, logger="streamad.adapters.sources"):
        frames = list(FolderSource(tmp_path))
    assert len(frames) == 1
    assert any("b.png" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="holds no images"):
        FolderSource(tmp_path)
    with pytest.raises(SourceError, match="does not exist"):
        FolderSource(tmp_path / "nope")


# -- live sources -------------------------------------------------------------------------------------


class ScriptedDevice:
    """A capture factory following a script, one entry per open attempt: ``None`` (open fails) or the
    number of frames delivered before the stream breaks (``-1``: never breaks)."""

    def __init__(self, script: list[int | None], frame_delay: float = 0.002) -> None:
        self.script = list(script)
        self.frame_delay = frame_delay
        self.opened: list[Capture] = []
        self.attempts = 0

    def __call__(self, target: object) -> Capture:
        plan = self.script[min(self.attempts, len(self.script) - 1)]
        self.attempts += 1
        cap = Capture(plan, self.frame_delay, serial=self.attempts)
        self.opened.append(cap)
        return cap


class Capture:
    def __init__(self, plan: int | None, delay: float, serial: int) -> None:
        self.plan, self.delay, self.serial = plan, delay, serial
        self.reads = 0
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802
        return self.plan is not None and not self.released

    def read(self) -> tuple[bool, np.ndarray | None]:
        time.sleep(self.delay)
        if self.released or self.plan is None or (self.plan >= 0 and self.reads >= self.plan):
            return False, None
        self.reads += 1
        image = np.zeros((16, 16, 3), np.uint8)
        image[..., 0] = self.serial      # B (RGB channel 2): which connection
        image[..., 2] = self.reads % 256  # R (RGB channel 0): frame number within it
        return True, image

    def release(self) -> None:
        self.released = True


def wait_until(cond, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


def test_live_source_reconnects_with_backoff_after_failures_and_recovers() -> None:
    # attempt 1: cannot open; 2: 3 frames then the stream breaks; 3: cannot open; 4: works for good
    device = ScriptedDevice([None, 3, None, -1])
    events = []
    source = LiveSource(0, capture_factory=device, backoff=Backoff(initial=0.01, maximum=0.02),
                        on_event=events.append)
    try:
        assert source.live and source.name == "camera:0"
        got = []
        while not any(f.image[0, 0, 2] == 4 for f in got):  # wait for frames from connection 4
            f = source.read(timeout=5.0)
            assert f is not None, f"no frame; events so far: {events}"
            got.append(f)
        assert wait_until(lambda: source.stats.reconnects >= 1)
        stats = source.stats
    finally:
        source.close()
    kinds = [e.kind for e in events]
    assert kinds[:4] == ["open_failed", "reconnected", "lost", "open_failed"], kinds
    assert kinds[4] == "reconnected"
    assert [e.retry_in for e in events if e.retry_in is not None][:3] == [0.01, 0.01, 0.02]  # capped back-off
    assert "retrying in" in events[0].message and "camera:0" in events[0].message
    assert stats.failures == 3 and stats.reconnects == 1
    assert {int(f.image[0, 0, 2]) for f in got} <= {2, 4} and int(got[-1].image[0, 0, 2]) == 4
    assert all(a.index < b.index for a, b in zip(got, got[1:]))
    assert all(c.released for c in device.opened)


def test_live_source_keeps_only_the_latest_frame_and_counts_drops() -> None:
    device = ScriptedDevice([-1], frame_delay=0.001)
    with LiveSource("rtsp://user:pw@cam.local/s", capture_factory=device) as source:
        assert source.name == "rtsp://user:***@cam.local/s"
        first = source.read(timeout=5.0)
        assert first is not None
        time.sleep(0.15)                       # a slow consumer
        late = source.read(timeout=5.0)
        assert late is not None
        assert time.time() - late.timestamp < 0.1, "a stale frame was delivered"
        assert late.index - first.index > 5    # the frames in between were not queued
        assert source.stats.dropped >= late.index - first.index - 2
    assert source.ended and source.read(timeout=0.01) is None


def test_live_source_gives_up_after_max_retries_and_iteration_ends() -> None:
    device = ScriptedDevice([None])
    events = []
    source = LiveSource(3, capture_factory=device, backoff=Backoff(initial=0.005, maximum=0.01), max_retries=2,
                        on_event=events.append)
    frames = list(source)  # must end by itself
    assert frames == [] and source.ended
    assert [e.kind for e in events] == ["open_failed", "open_failed", "gave_up"]
    assert device.attempts == 3 and source.stats.failures == 3


def test_live_source_close_stops_promptly_while_reconnecting() -> None:
    device = ScriptedDevice([None])
    source = LiveSource(0, capture_factory=device, backoff=Backoff(initial=5.0, maximum=5.0),
                        on_event=lambda e: None)
    assert wait_until(lambda: device.attempts >= 1)
    waiter_result = []
    waiter = threading.Thread(target=lambda: waiter_result.append(source.read(timeout=None)))
    waiter.start()
    t0 = time.monotonic()
    source.close()
    waiter.join(2.0)
    assert not waiter.is_alive() and waiter_result == [None]
    assert time.monotonic() - t0 < 1.0
    assert not source._thread.is_alive()


def test_backoff_validation_names_the_field() -> None:
    assert [Backoff(0.5, 3.0).delay(a) for a in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="Backoff.maximum"):
        Backoff(initial=2.0, maximum=1.0)
    with pytest.raises(ValueError, match="Backoff.initial"):
        Backoff(initial=0.0)


# -- open_source ------------------------------------------------------------------------------------


def test_open_source_dispatch(tmp_path: Path) -> None:
    device = ScriptedDevice([-1])
    with open_source("1", capture_factory=device) as cam:
        assert isinstance(cam, LiveSource) and cam.target == 1 and cam.read(timeout=5.0) is not None
    with open_source("http://a:b@example.invalid/x.mjpg", capture_factory=device) as url:
        assert isinstance(url, LiveSource) and url.name == "http://a:***@example.invalid/x.mjpg"
    assert isinstance(open_source("demo"), DemoSource)
    with pytest.raises(SourceError, match="no such file or folder.*camera index"):
        open_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(SourceError, match="unsupported URL scheme"):
        open_source("ftp://host/file")
    cv2.imwrite(str(tmp_path / "one.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(SourceError, match="single image"):
        open_source(str(tmp_path / "one.png"))
    with pytest.raises(SourceError, match="empty source"):
        open_source("  ")


# -- demo ---------------------------------------------------------------------------------------------


def test_demo_is_seeded_has_masks_and_defects_at_the_configured_rate() -> None:
    stream = DemoStream(DemoConfig(size=96, defect_rate=0.3, seed=5))
    samples = [stream.sample(i) for i in range(200)]
    defective = [s for s in samples if s.defect is not None]
    assert 35 <= len(defective) <= 85                      # binomial(200, 0.3): mean 60, sd 6.5
    assert all(s.mask.any() for s in defective) and not any(s.mask.any() for s in samples if s.defect is None)
    assert {s.defect for s in defective} == {"scratch", "stain"}
    for s in defective[:5]:                                 # the mask marks changed pixels
        clean = DemoStream(DemoConfig(size=96, defect_rate=0.0, seed=5)).sample(s.index).image
        diff = np.abs(s.image.astype(int) - clean.astype(int)).sum(axis=2)
        assert diff[s.mask].mean() > 5 * max(1.0, diff[~s.mask].mean())
    again = DemoStream(DemoConfig(size=96, defect_rate=0.3, seed=5)).sample(17)
    np.testing.assert_array_equal(again.image, samples[17].image)
    other = DemoStream(DemoConfig(size=96, defect_rate=0.3, seed=6)).sample(17)
    assert not np.array_equal(other.image, samples[17].image)


def test_demo_lighting_drifts_slowly() -> None:
    stream = DemoStream(DemoConfig(size=64, defect_rate=0.0, drift_period=100, drift_amplitude=0.3, noise=0.0))
    means = np.array([stream.sample(i).image.mean() for i in range(0, 100, 5)])
    assert means.max() - means.min() > 20                     # it drifts...
    assert np.abs(np.diff(means)).max() < 0.25 * (means.max() - means.min())  # ...slowly


def test_demo_source_frames_truth_and_max_frames() -> None:
    source = DemoSource(DemoConfig(size=64, defect_rate=0.5), max_frames=6)
    frames = list(source)
    assert [f.index for f in frames] == list(range(6)) and source.ended
    assert frames[3].timestamp == pytest.approx(3 / 10.0)
    np.testing.assert_array_equal(source.truth(3).image, frames[3].image)
    with pytest.raises(ValueError, match="DemoConfig.defect_rate"):
        DemoConfig(defect_rate=1.5)
    with pytest.raises(ValueError, match="DemoConfig.size"):
        DemoConfig(size=10)


def test_a_paced_demo_spec_delivers_frames_at_its_rate_and_a_bad_rate_is_refused() -> None:
    """``demo:N@FPS``: the scene of seed N, paced like a camera at FPS frames per second (serve's TOML takes it)."""
    with open_source("demo:3@20") as source:
        assert source.name == "demo:3" and source.realtime and source.stream.config.fps == 20.0
        t0 = time.monotonic()
        frames = [source.read(timeout=1.0) for _ in range(6)]
        took = time.monotonic() - t0
    assert [f.index for f in frames] == list(range(6)) and frames[5].timestamp == pytest.approx(5 / 20)
    assert 0.2 <= took < 1.5, took                          # frame 5 is due 0.25 s after the start
    np.testing.assert_array_equal(frames[2].image, DemoStream(DemoConfig(seed=3, fps=20.0)).sample(2).image)
    assert not open_source("demo:3").realtime and open_source("DEMO@2").stream.config.seed == 0
    with pytest.raises(SourceError, match=r"demo frame rate in 'demo@0' must be in \(0, 1000\]"):
        open_source("demo@0")
    with pytest.raises(SourceError, match="no such file or folder"):
        open_source("demo@fast")
    from streamad.runtime.serve.config import parse_config

    cam = parse_config({"cameras": [{"name": "a", "source": "demo:1@2.5"}]}, base="/elsewhere").cameras[0]
    assert cam.source == "demo:1@2.5"                        # not taken for a path relative to the file


def test_demo_defects_are_at_the_documented_frames_and_a_lower_rate_keeps_a_subset() -> None:
    # the default, 5 %, is more than a rolling 0.99 quantile could take; the default (trusted) rule does
    from streamad.config import DecisionConfig

    assert DemoConfig().defect_rate == 0.05 and DecisionConfig().rule == "auto"
    defects = [i for i in range(300) if DemoStream(DemoConfig()).sample(i).defect]
    assert defects == [7, 29, 38, 53, 66, 86, 119, 137, 162, 176, 203, 216, 220, 239, 265, 274, 298]  # as documented
    rare = DemoStream(DemoConfig(defect_rate=0.01))
    assert [i for i in range(300) if rare.sample(i).defect] == [29, 119, 176, 216, 220, 298]
