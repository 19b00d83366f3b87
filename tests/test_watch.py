"""The live loop and ``streamad watch`` on a short generated video with a stand-in detector (the loop
takes the detector as a parameter), publishing to a real subscriber and recording the overlay."""

from __future__ import annotations

import dataclasses
import importlib
import os
import signal
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamad import cli
from streamad import config as config_module
from streamad.adapters.demo import DemoConfig, DemoSource
from streamad.display.overlay import VideoRecorder
from streamad.runtime.live import StopFlag, run_watch, stop_on_signals
from streamad.adapters.publisher import Publisher
from streamad.adapters.sources import Backoff, LiveSource, VideoFileSource
from streamad.adapters.subscriber import Subscriber
from streamad.config import ChannelConfig, FeatureConfig, ThreadConfig
from streamad.errors import UserError
from streamad.results import FrameResult
from streamad.testing.standin import StandInDetector

watch_cmd = importlib.import_module("streamad.cli.watch")

BAD = (5, 12)      # video frames that are blank: the detector rejects them
ANOMALY = 15       # video frame with a bright square
THRESHOLD = 20.0


class FakeDetector(StandInDetector):
    """Stands in for StreamDetector: not ready for 3 frames, then the score is the largest 4x4-block
    mean difference from the first frame; blank frames raise ValueError like a bad frame would."""

    def __init__(self, hook=None) -> None:
        self.reference: np.ndarray | None = None
        self.results: list[FrameResult] = []
        self.hook = hook

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> FrameResult:
        if frame.max() == 0:
            raise ValueError("frame is blank")
        i = len(self.results)
        ts = float(i) if timestamp is None else timestamp
        gray = frame.astype(np.float32).mean(axis=2)
        if self.reference is None:
            self.reference = gray
        if i < 3:
            r = FrameResult(i, False, None, None, False, None, None, False, True, ts)
        else:
            hm = cv2.resize(np.abs(gray - self.reference), (16, 16), interpolation=cv2.INTER_AREA)
            score = float(hm.max())
            r = FrameResult(i, True, score, THRESHOLD, score > THRESHOLD, hm, None, i == 10, i % 2 == 0, ts)
        self.results.append(r)
        if self.hook is not None:
            self.hook(i)
        return r


def make_video(path: Path, n: int = 20) -> Path:
    rng = np.random.default_rng(0)
    base = rng.integers(60, 160, size=(64, 64, 3)).astype(np.int16)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 10.0, (64, 64))
    assert writer.isOpened()
    for i in range(n):
        img = np.clip(base + rng.integers(-2, 3, size=base.shape), 0, 255).astype(np.uint8)
        if i in BAD:
            img[:] = 0
        if i == ANOMALY:
            img[20:36, 24:40] = 255
        writer.write(img)
    writer.release()
    return path


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return make_video(tmp_path / "clip.avi")


def test_run_watch_processes_publishes_and_records_every_good_frame(video: Path, tmp_path: Path) -> None:
    det = FakeDetector()
    with Publisher("tcp://127.0.0.1:*", hwm=1000) as pub, Subscriber(pub.address) as sub:
        warm = FrameResult(-1, False, None, None, False, None, None, False, False, 0.0)
        while True:  # the subscription must reach the publisher before the run starts
            pub.publish(warm)
            if sub.receive(timeout=0.02) is not None:
                break
        warmups = pub.sent
        with VideoFileSource(video) as source, VideoRecorder(tmp_path / "out.avi", fourcc="FFV1") as rec:
            statuses: list[str] = []
            bad: list[tuple[int, str, int]] = []
            summary = run_watch(source, det, publisher=pub, recorder=rec, on_status=statuses.append,
                                status_interval=0.0, on_bad_frame=lambda f, e, n: bad.append((f.index, str(e), n)))
        messages = []
        while len(messages) < 18:
            m = sub.receive(timeout=5.0)
            assert m is not None, f"received {len(messages)} of 18 messages"
            if m.index >= 0:
                messages.append(m)
    assert (summary.frames, summary.bad_frames, summary.ready, summary.stopped) == (18, 2, 15, "end")
    assert summary.anomalies == 1 and summary.drifts == 1 and summary.fps > 0
    assert summary.published == warmups + 18 and summary.source.frames == 20
    assert len(statuses) >= 18 and "anomalous 1" in statuses[-1] and "bad 2" in statuses[-1]
    assert bad == [(5, "frame is blank", 1), (12, "frame is blank", 2)]
    assert [m.index for m in messages] == list(range(18))
    assert all(m.source == f"video:{video}" for m in messages)
    anomalous = [m.index for m in messages if m.anomalous]
    assert anomalous == [ANOMALY - len(BAD)]                                 # video frame 15 is result 13
    good = [i for i in range(20) if i not in BAD]
    assert [m.timestamp for m in messages] == pytest.approx([i / 10.0 for i in good])  # the frames' media time
    stages = summary.stages
    assert set(stages) == {"read", "detect", "overlay", "publish", "record"}  # no window: no "show"
    assert stages["read"].count == 20 and stages["detect"].count == 18 and stages["publish"].count == 18
    assert all(t.median >= 0 and t.p95 >= t.median and t.mean >= 0 for t in stages.values())
    table = summary.stage_table().splitlines()
    assert table[0].split() == ["stage", "frames", "median", "ms", "p95", "ms", "mean", "ms"]
    assert [line.split()[0] for line in table[1:]] == ["read", "detect", "overlay", "publish", "record"]
    for m, r in zip(messages, det.results):
        assert m.score == r.score and m.ready == r.ready
        if r.heatmap is not None:
            np.testing.assert_array_equal(m.heatmap, r.heatmap)
    recorded = list(VideoFileSource(tmp_path / "out.avi"))
    assert len(recorded) == 18
    red = np.array([255, 0, 0])
    assert (recorded[13].image[0, 0] == red).all() and not (recorded[12].image[0, 0] == red).all()


def test_run_watch_stops_on_request_max_frames_and_interrupt(video: Path) -> None:
    flag = StopFlag()

    def stop_after_four(frame, result) -> None:
        if result.index == 3:
            flag.set("test stop")

    with VideoFileSource(video) as source:
        s = run_watch(source, FakeDetector(), stop=flag, on_result=stop_after_four)
    assert (s.frames, s.stopped) == (4, "test stop")
    with VideoFileSource(video) as source:
        s = run_watch(source, FakeDetector(), max_frames=7)
    assert (s.frames, s.bad_frames, s.stopped) == (6, 1, "max_frames")

    def interrupt(i: int) -> None:
        if i == 2:
            raise KeyboardInterrupt

    with VideoFileSource(video) as source:
        s = run_watch(source, FakeDetector(hook=interrupt))
    assert s.stopped == "interrupted" and s.frames == 2
    assert "stopped: interrupted" in str(s)


def test_run_watch_stops_promptly_while_a_live_source_is_down() -> None:
    def never_opens(target):
        return cv2.VideoCapture()  # closed capture: open fails

    flag = StopFlag()
    timer = threading.Timer(0.2, flag.set, args=("test stop",))
    with LiveSource(0, capture_factory=never_opens, backoff=Backoff(0.05, 0.1), on_event=lambda e: None) as source:
        timer.start()
        t = time.monotonic()
        s = run_watch(source, FakeDetector(), stop=flag, poll=0.05)
        elapsed = time.monotonic() - t
    assert s.stopped == "test stop" and s.frames == 0 and s.source.failures >= 1
    assert elapsed < 1.5


def test_stop_on_signals_turns_sigterm_into_a_stop_and_restores_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    flag = StopFlag()
    notes: list[str] = []
    with stop_on_signals(flag, notify=notes.append):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert flag and flag.reason == "signal SIGTERM" and "stopping" in notes[0]
        with pytest.raises(KeyboardInterrupt):   # a second Ctrl-C aborts at once
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.01)
    assert signal.getsignal(signal.SIGTERM) is before


# -- the CLI -------------------------------------------------------------------------------------------


@pytest.fixture
def fake_backend(monkeypatch):
    """Replace the StreamDetector construction in ``streamad watch`` by FakeDetector."""
    made: list[FakeDetector] = []

    def make(config, hook=None):
        made.append(FakeDetector(hook=hook))
        return made[-1]

    monkeypatch.setattr(watch_cmd, "build_config", lambda args: None)
    monkeypatch.setattr(watch_cmd, "make_detector", make)
    return made


def test_cli_watch_video_publishes_saves_and_summarises(video: Path, tmp_path: Path, fake_backend, capsys) -> None:
    out = tmp_path / "annotated.avi"
    code = cli.main(["watch", str(video), "--publish", "tcp://127.0.0.1:*", "--overlay-jpeg", "--record", str(out),
                     "--max-frames", "10", "--quiet", "--stats"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "frames 9 in" in captured.out and "bad frames skipped 1" in captured.out
    stage_rows = {line.split()[0]: line.split()[1] for line in captured.out.splitlines()
                  if line.split() and line.split()[0] in ("read", "detect", "overlay", "publish", "record")}
    assert stage_rows == {"read": "10", "detect": "9", "overlay": "9", "publish": "9", "record": "9"}
    assert "published 9 messages" in captured.out and "published on tcp://127.0.0.1:" in captured.out
    assert f"saved {out} (9 frames)" in captured.out
    assert len(list(VideoFileSource(out))) == 9
    assert len(fake_backend) == 1 and len(fake_backend[0].results) == 9


def test_cli_watch_demo_runs_without_camera_or_data(tmp_path: Path, fake_backend, capsys) -> None:
    snap = tmp_path / "last.png"
    code = cli.main(["watch", "demo", "--max-frames", "6", "--record", str(snap)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "frames 6 in" in captured.out and f"saved {snap}" in captured.out
    assert "no frame was ready" not in captured.out
    image = cv2.imread(str(snap))
    assert image.shape == (384, 384, 3)
    expected = DemoSource(DemoConfig()).stream.sample(5).image   # the overlay is drawn on demo frame 5
    assert np.abs(image[..., ::-1].astype(int) - expected.astype(int)).mean() < 60


def test_cli_watch_sigterm_finishes_the_frame_and_closes_the_video(video: Path, tmp_path: Path, monkeypatch,
                                                                 capsys) -> None:
    def terminate_at_fifth(i: int) -> None:
        if i == 4:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(watch_cmd, "build_config", lambda args: None)
    monkeypatch.setattr(watch_cmd, "make_detector", lambda config: FakeDetector(hook=terminate_at_fifth))
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "stopped.avi"
    code = cli.main(["watch", str(video), "--record", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "frames 5 in" in captured.out and "stopped: signal SIGTERM" in captured.out
    assert "SIGTERM: stopping after the current frame" in captured.err
    assert len(list(VideoFileSource(out))) == 5       # the file was finished properly
    assert signal.getsignal(signal.SIGTERM) is before


def test_cli_watch_errors_are_plain_messages(tmp_path: Path, video: Path, fake_backend, monkeypatch, capsys) -> None:
    assert cli.main(["watch", str(tmp_path / "nope.mp4")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert cli.main(["watch", "demo", "--publish", "tcp://0.0.0.0:5599"]) == 2
    assert "--bind-any" in capsys.readouterr().err
    assert cli.main(["watch", "demo", "--overlay-jpeg"]) == 2
    assert "use it with --publish" in capsys.readouterr().err
    assert cli.main(["watch", "demo", "--record", str(tmp_path / "missing" / "x.mp4")]) == 2
    assert "does not exist" in capsys.readouterr().err
    monkeypatch.setattr("streamad.display.overlay.gui_problem", lambda: "no GUI here")
    assert cli.main(["watch", "demo", "--show"]) == 2
    assert "cannot open a window: no GUI here" in capsys.readouterr().err
    blank = tmp_path / "blank"
    blank.mkdir()
    for i in range(3):
        cv2.imwrite(str(blank / f"{i}.png"), np.zeros((32, 32, 3), np.uint8))
    assert cli.main(["watch", str(blank), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "rejected all 3 frames" in err and "frame 0 skipped (1 so far): frame is blank" in err


def test_cli_watch_live_source_that_gives_up_is_an_error(fake_backend, monkeypatch, capsys) -> None:
    import streamad.adapters.sources.camera as camera

    monkeypatch.setattr(camera, "default_capture", lambda target, **kw: cv2.VideoCapture())  # never opens
    t = time.monotonic()
    code = cli.main(["watch", "7", "--max-retries", "1"])
    captured = capsys.readouterr()
    assert code == 1 and time.monotonic() - t < 5
    assert "camera:7: cannot open; retrying in 0.5 s (attempt 1)" in captured.err
    assert "giving up after 1 retries" in captured.err and "camera:7 could not be read" in captured.err
    assert cli.main(["watch", "7", "--max-retries", "-1"]) == 2


@dataclasses.dataclass(frozen=True)
class StandInStreamConfig:
    window: int = 200
    admit_every: int = 1
    features: FeatureConfig = dataclasses.field(default_factory=FeatureConfig)
    channels: ChannelConfig = dataclasses.field(default_factory=ChannelConfig)
    learn_in_background: bool = False
    threads: ThreadConfig = dataclasses.field(default_factory=ThreadConfig)

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"StreamConfig.window must be >= 1, got {self.window}")


def test_build_config_applies_preset_then_options(monkeypatch) -> None:
    monkeypatch.setattr(config_module, "StreamConfig", StandInStreamConfig, raising=False)
    parser = cli.build_parser()
    args = parser.parse_args(["watch", "demo", "--preset", "fast", "--window", "50", "--admit-every", "3",
                              "--device", "auto"])
    cfg = watch_cmd.build_config(args)
    assert (cfg.window, cfg.admit_every, cfg.features.device, cfg.features.grid, cfg.channels.seeds) == (
        50, 3, "auto", (20, 20), 5)
    assert watch_cmd.build_config(parser.parse_args(["watch", "demo"])) == StandInStreamConfig(learn_in_background=True)
    assert not watch_cmd.build_config(parser.parse_args(["watch", "demo", "--learning", "sync"])).learn_in_background
    assert watch_cmd.build_config(parser.parse_args(["watch", "demo", "--blas-threads", "2"])).threads.blas == 2
    with pytest.raises(UserError, match="--window must be >= 1, got 0"):
        watch_cmd.build_config(parser.parse_args(["watch", "demo", "--window", "0"]))
    with pytest.raises(UserError, match="--device must be"):
        watch_cmd.build_config(parser.parse_args(["watch", "demo", "--device", "tpu"]))


def test_watch_memory_option_turns_on_the_long_term_memory() -> None:
    parser = cli.build_parser()
    assert watch_cmd.build_config(parser.parse_args(["watch", "demo"])).memory.capacity == 60000  # the default
    assert not watch_cmd.build_config(parser.parse_args(["watch", "demo", "--memory", "0"])).memory.enabled
    assert not watch_cmd.build_config(parser.parse_args(["watch", "demo", "--preset", "lean"])).memory.enabled
    cfg = watch_cmd.build_config(parser.parse_args(["watch", "demo", "--memory", "20000"]))
    assert cfg.memory.capacity == 20000 and cfg.memory.enabled
    assert watch_cmd.build_config(parser.parse_args(["watch", "demo", "--preset", "remember"])).memory.capacity == 60000
    with pytest.raises(UserError, match="--memory must be an int >= 0"):
        watch_cmd.build_config(parser.parse_args(["watch", "demo", "--memory", "-1"]))
