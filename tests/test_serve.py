"""``streamad serve``: many cameras in one process (one backbone, one publisher, a live page), and
``streamad watch`` as its one-camera case. Real ZeroMQ sockets on 127.0.0.1, real files, real
subprocesses; the stand-in extractor (``streamad.testing.standin.BlockMeans``) where the backbone is
not the point (tests/test_serve_page.py runs the real one, and the browser)."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from streamad import cli
from streamad.runtime.live import StateSaver
from streamad.adapters.publisher import Publisher
from streamad.runtime.serve.batcher import SharedBackbone
from streamad.runtime.serve.config import ConfigError, load_config
from streamad.runtime.serve.fleet import Camera, Fleet
from streamad.runtime.serve.status import CameraStatus
from streamad.runtime.serve.web import WebError, WebPage
from streamad.runtime.serve.workers import RemoteDetector
from streamad.adapters.sources import Backoff, FolderSource, LiveSource
from streamad.adapters.subscriber import Subscriber
from streamad.results import FrameResult
from streamad.stream.detector import StreamDetector
from streamad.testing.frames import SMALL, write_frames
from streamad.testing.standin import BlockMeans

serve_session = importlib.import_module("streamad.runtime.serve.session")
watch_cmd = importlib.import_module("streamad.cli.watch")

def config_file(path: Path, cameras: list[tuple[str, str]], head: str = "", extra: str = SMALL) -> Path:
    text = head + "".join(f'\n[[cameras]]\nname = "{name}"\nsource = "{source}"\n{extra}' for name, source in cameras)
    path.write_text(text)
    return path


def seen(r: FrameResult) -> tuple:
    """What the equality tests compare of a result: score, threshold, p-value, flags and the heatmap."""
    heat = None if r.heatmap is None else hashlib.sha256(np.ascontiguousarray(r.heatmap).tobytes()).hexdigest()
    return (r.index, r.ready, r.score, r.threshold, r.p_value, r.anomalous, heat)


class Recording(StreamDetector):
    """The real detector, keeping every result's score, threshold, p-value and heatmap."""

    made: list[Recording] = []

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.seen: list[tuple] = []
        self.learned = 0  # admissions handed back with the results
        Recording.made.append(self)

    def process_described(self, described):  # process and the live loop's reader both come here
        r = super().process_described(described)
        self.seen.append(seen(r))
        self.learned += len(r.learned)
        return r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    ('[[cameras]]\nname = "a"\nsource = "demo"\nwindoww = 5\n', "cameras[0] (line 4): unknown key 'windoww'"),
    ('[[cameras]]\nname = "a"\nsource = "demo"\n\n[[cameras]]\nname = "b"\nsource = "demo"\nwindow = 0\n',
     "cameras[1] (line 8): StreamConfig.window must be an int > channels.seeds"),
    ('[[cameras]]\nname = "a b"\nsource = "demo"\n', "cameras[0] (line 2): key 'name' must be 1-64 letters"),
    ('[[cameras]]\nname = "a"\n', "cameras[0] (line 1): missing key 'source'"),
    ('[[cameras]]\nname = "a"\nsource = "demo"\n[[cameras]]\nname = "a"\nsource = "demo"\n',
     "cameras with distinct names"),
    ('[[cameras]]\nname = "a"\nsource = "demo"\nlearning = "fast"\n', "(line 4): key 'learning' must be one of"),
    ('[[cameras]]\nname = "a"\nsource = "demo"\n[cameras.overrides]\nfeatures = { colour = 1 }\n',
     "FeatureConfig has no field 'colour'"),
    ('[[cameras]]\nname = "a"\nsource = "demo"\npreset = "turbo"\n', "(line 4): unknown preset 'turbo'"),
    ('[web]\nadres = "x"\n[[cameras]]\nname = "a"\nsource = "demo"\n', "web (line 2): unknown key 'adres'"),
    ('[serve]\nbatch_wait_ms = -1\n[[cameras]]\nname = "a"\nsource = "demo"\n',
     "serve (line 2): key 'batch_wait_ms' must be"),
    ('[publisher]\nhwm = 0\n[[cameras]]\nname = "a"\nsource = "demo"\n', "publisher (line 2): key 'hwm' must be"),
    ('[cameras]\nname = "a"\n', "no cameras"),
    ('[camera]\nname = "a"\n', "unknown key or table 'camera' (line 1)"),
    ('[[cameras]]\nname = "a"\nsource = demo\n', "not valid TOML"),
])
def test_config_errors_name_the_file_key_and_line(tmp_path: Path, text: str, message: str, capsys) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value), str(err.value)
    assert cli.main(["serve", str(path)]) == 2                  # the CLI: one line, no traceback
    captured = capsys.readouterr().err
    assert message in captured and "Traceback" not in captured


def test_config_reads_every_setting_and_resolves_paths_against_its_folder(tmp_path: Path) -> None:
    (tmp_path / "frames").mkdir()
    path = tmp_path / "serve.toml"
    path.write_text(textwrap.dedent("""
        [serve]
        device = "cpu"
        batch_wait_ms = 3
        [publisher]
        address = "tcp://127.0.0.1:5599"
        hwm = 50
        [web]
        address = "127.0.0.1:0"
        token_file = "web.token"
        [[cameras]]
        name = "line1"
        source = 0
        preset = "fast"
        [[cameras]]
        name = "line-2"
        source = "frames"
        state = "states/line2"
        admit_every = 3
        false_alarm_rate = 0.02
        [cameras.overrides]
        features = { grid = [10, 10] }
    """))
    cfg = load_config(path)
    assert (cfg.publish, cfg.hwm, cfg.http, cfg.batch_wait_ms) == ("tcp://127.0.0.1:5599", 50, "127.0.0.1:0", 3)
    assert cfg.http_token_file == str(tmp_path / "web.token")
    one, two = cfg.cameras
    assert (one.source, one.preset) == ("0", "fast") and two.source == str(tmp_path / "frames")
    assert two.state == str(tmp_path / "states" / "line2")
    sc = two.stream_config("cpu")
    assert (sc.admit_every, sc.features.grid, sc.decisions.false_alarm_rate, sc.learn_in_background) == (
        3, (10, 10), 0.02, True)


# -- batching changes nothing ------------------------------------------------------------------------


@pytest.mark.parametrize("workers,batches", [(0, True), (2, True), (0, False), (2, False)])
def test_serve_scores_equal_watch_scores_on_the_same_frames(tmp_path: Path, monkeypatch, capsys,
                                                            workers: int, batches: bool) -> None:
    """On threads (workers 0) and in worker processes (2 for 3 cameras: two share one), with the cameras'
    frames batched (a batch wait) or each on its camera's thread (none: the CPU's default), every camera
    of a ``serve`` gives exactly the results of ``watch``."""
    frames = write_frames(tmp_path / "frames")
    path = config_file(tmp_path / "serve.toml", [("a", str(frames)), ("b", str(frames)), ("c", str(frames))],
                       head=('[serve]\nbatch_wait_ms = 500\n' if batches else '') + '[publisher]\nenabled = false\n')
    monkeypatch.setattr(serve_session, "make_extractor", lambda features: BlockMeans())
    monkeypatch.setattr(serve_session, "make_detector", lambda config, extractor: Recording(config, extractor=extractor))
    remote: dict[str, list[tuple]] = {}
    learned: dict[str, int] = {}
    remote_process = RemoteDetector.process_described

    def record(self, described):  # what a camera's loop gets back from its worker
        r = remote_process(self, described)
        remote.setdefault(self.name, []).append(seen(r))
        learned[self.name] = learned.get(self.name, 0) + len(r.learned)
        return r

    monkeypatch.setattr(RemoteDetector, "process_described", record)
    Recording.made = []
    assert cli.main(["serve", str(path), "--json", str(tmp_path / "serve.json"), "--quiet",
                     "--workers", str(workers)]) == 0
    if workers:
        assert Recording.made == [] and sorted(remote) == ["a", "b", "c"]
        served, admissions = remote, [learned[n] for n in "abc"]
    else:
        assert remote == {}
        served = {name: det.seen for name, det in zip("abc", Recording.made)}
        admissions = [det.learned for det in Recording.made]
    report = json.loads((tmp_path / "serve.json").read_text())
    out = capsys.readouterr().out
    assert "3 camera(s), 120 frames" in out and all(f"{n}: frames 40 in" in out for n in "abc")
    assert report["workers"] == workers
    if batches:
        assert report["mean_batch"] > 2.0  # the frames of the three cameras really went through together
    else:
        assert report["mean_batch"] == 1.0 and report["batches"] == 120 and report["batch_wait_ms"] is None
    assert [c["admissions"] for c in report["cameras"]] == admissions
    assert all(c["admissions"] > 0 for c in report["cameras"])

    config = load_config(path).cameras[0].stream_config()
    monkeypatch.setattr(watch_cmd, "build_config", lambda args: config)
    monkeypatch.setattr(watch_cmd, "make_detector", lambda cfg: Recording(cfg, extractor=BlockMeans()))
    Recording.made = []
    assert cli.main(["watch", str(frames), "--learning", "sync", "--quiet"]) == 0
    watched = Recording.made[0].seen
    assert len(watched) == 40 and sum(r[1] for r in watched) > 20 and any(r[5] for r in watched)
    for name in "abc":
        assert served[name] == watched, name          # every score, threshold and p-value, exactly


def test_a_camera_that_sends_nothing_delays_the_others_at_most_the_batch_wait() -> None:
    calls: list[int] = []

    def extractor(frames):
        calls.append(len(frames))
        return np.zeros((len(frames), 16, 3), np.float32)

    with SharedBackbone(max_wait=0.05) as backbone:
        busy, idle = backbone.client(extractor), backbone.client(extractor)
        t0 = time.monotonic()
        for _ in range(10):
            busy([np.zeros((8, 8, 3), np.uint8)])      # the idle camera has no frame: each batch waits 50 ms
        waited = time.monotonic() - t0
        backbone.leave(idle)                            # it stopped: no batch waits for it any more
        t0 = time.monotonic()
        for _ in range(10):
            busy([np.zeros((8, 8, 3), np.uint8)])
        alone = time.monotonic() - t0
    assert calls == [1] * 20
    assert 0.4 < waited < 3.0 and alone < 0.3


def test_on_the_cpu_each_camera_runs_the_backbone_on_its_own_thread_unless_the_file_sets_a_wait(
        tmp_path: Path, monkeypatch) -> None:
    """On the CPU a batch costs the sum of its frames: serve batches nothing (each camera's frames on its
    own thread) unless ``batch_wait_ms`` says so; a backbone on a GPU gets the wait that lets a batch form."""
    from streamad.runtime.serve.config import GPU_BATCH_WAIT_MS, auto_batch_wait_ms

    assert load_config(config_file(tmp_path / "auto.toml", [("a", "demo:1")])).batch_wait_ms is None
    assert auto_batch_wait_ms([]) is None and auto_batch_wait_ms(["cpu"]) is None
    assert auto_batch_wait_ms(["cpu", "cuda:0"]) == auto_batch_wait_ms(["cuda"]) == GPU_BATCH_WAIT_MS > 0
    monkeypatch.setattr(serve_session, "make_extractor", lambda features: BlockMeans())
    for head, want, line in (("", None, "backbone on each camera's thread"),
                             ("[serve]\nbatch_wait_ms = 3\n", 3.0, "batch wait 3 ms"),
                             ("[serve]\nbatch_wait_ms = 0\n", 0.0, "batch wait 0 ms")):
        path = config_file(tmp_path / "serve.toml", [("a", "demo:1"), ("b", "demo:2")],
                           head=head + "[publisher]\nenabled = false\n")
        lines: list[str] = []
        with serve_session.ServeSession(load_config(path), on_event=lines.append) as session:
            assert session.batch_wait_ms == want and session.fleet is not None
            backbone = session.fleet.backbone
            assert backbone.batching is (want is not None)
            assert backbone.max_wait == (None if want is None else want / 1000.0)
        assert any(line in text for text in lines), lines
    with SharedBackbone(max_wait=0.0) as backbone:
        for bad in (2, -0.1, "5"):
            with pytest.raises(ValueError, match=r"max_wait must be None \(no batches\) or in \[0, 1\] seconds"):
                backbone.max_wait = bad


def test_a_backbone_that_does_not_batch_runs_each_cameras_frames_on_its_own_thread_at_once() -> None:
    """``max_wait=None``: every camera calls the extractor on its own thread, several at the same time (the
    batching thread would run them one after another), and every call is counted."""
    inside = threading.Barrier(3, timeout=10)  # three cameras inside the extractor at once, or it breaks
    threads_seen: list[str] = []

    def extractor(frames):
        threads_seen.append(threading.current_thread().name)
        inside.wait()
        return np.stack([f.reshape(1, -1, 3).mean(axis=1) for f in frames]).astype(np.float32)

    with SharedBackbone(max_wait=None) as backbone:
        clients = [backbone.client(extractor) for _ in range(3)]
        out: dict[int, list] = {}

        def camera(i: int) -> None:
            out[i] = clients[i]([np.full((8, 8, 3), 10 * (i + 1), np.uint8)]).tolist()

        cams = [threading.Thread(target=camera, args=(i,), name=f"cam{i}") for i in range(3)]
        for t in cams:
            t.start()
        for t in cams:
            t.join(20)
        assert not inside.broken
        assert sorted(threads_seen) == ["cam0", "cam1", "cam2"]
        assert out == {i: [[[10.0 * (i + 1)] * 3]] for i in range(3)}
        assert backbone.batches == 3 and backbone.sizes == {1: 3} and backbone.mean_batch() == 1.0
    def where(frames):
        threads_seen.append(threading.current_thread().name)
        return np.zeros((len(frames), 1, 3), np.float32)

    with SharedBackbone(max_wait=0.0) as backbone:   # batching: the calls go through the backbone's thread
        clients = [backbone.client(where) for _ in range(2)]
        threads_seen.clear()
        clients[0]([np.zeros((8, 8, 3), np.uint8)])
        assert threads_seen == ["streamad-backbone"]


# -- faults: one camera's troubles leave the others alone ---------------------------------------------


class FlakyCamera:
    """A capture factory: ``first`` frames, then the stream breaks and ``down`` opens fail, then it
    works again. Frames are ~constant 24x24 images."""

    def __init__(self, first: int = 15, down: int = 2) -> None:
        self.first, self.down, self.opens = first, down, 0

    def __call__(self, target):
        self.opens += 1
        ok = self.opens == 1 or self.opens > 1 + self.down
        return _Capture(self.first if self.opens == 1 else None, ok)


class _Capture:
    def __init__(self, limit, opened) -> None:
        self.limit, self.opened, self.reads = limit, opened, 0

    def isOpened(self) -> bool:  # noqa: N802
        return self.opened

    def read(self):
        time.sleep(0.005)
        if not self.opened or (self.limit is not None and self.reads >= self.limit):
            return False, None
        self.reads += 1
        rng = np.random.default_rng(self.reads)
        return True, np.clip(100 + rng.normal(0, 3, (24, 24, 3)), 0, 255).astype(np.uint8)

    def release(self) -> None:
        self.opened = False


def small_detector(extractor) -> StreamDetector:
    from streamad.config import ChannelConfig, DecisionConfig, StreamConfig

    cfg = StreamConfig(window=8, channels=ChannelConfig(seeds=2, min_span=2), decisions=DecisionConfig(warmup=3))
    return StreamDetector(cfg, extractor=extractor)


def reference_scores(frames: Path) -> list:
    det = small_detector(BlockMeans())
    with FolderSource(frames) as source:
        return [(r.index, r.score, r.threshold) for r in (det.process(f.image, f.timestamp) for f in source)]


def browse(url: str, stop: threading.Event, seen: list[int]) -> None:
    """A browser that comes and goes: page, status and images, some requests dropped half-way (at least
    one round, however short the run)."""
    while not seen or not stop.is_set():
        for route in ("", "status.json", "frame/steady.jpg", "frame/flaky.jpg"):
            try:
                with urllib.request.urlopen(url + route, timeout=5) as resp:
                    resp.read(10 if route.startswith("frame") else -1)  # leaves before the image is read
                    seen.append(resp.status)
            except urllib.error.HTTPError as exc:
                seen.append(exc.code)
        time.sleep(0.02)


def test_faults_in_one_camera_leave_the_others_results_unaffected(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames", n=60)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the state folder should be")
    backbone = SharedBackbone(max_wait=0.005)
    ext = BlockMeans()
    steady = small_detector(backbone.client(ext))
    flaky_camera = FlakyCamera()
    flaky = LiveSource(0, capture_factory=flaky_camera, backoff=Backoff(0.05, 0.1), on_event=lambda e: None)
    unsaved = small_detector(backbone.client(ext))
    notes: list[str] = []
    cams = [Camera("steady", FolderSource(frames), steady),
            Camera("flaky", flaky, small_detector(backbone.client(ext)), max_frames=40),
            Camera("unsaved", FolderSource(frames), unsaved,
                   saver=StateSaver(unsaved, blocker / "state", every=10, on_event=notes.append))]
    with Publisher("tcp://127.0.0.1:*", hwm=1000) as pub:
        fleet = Fleet(cams, publisher=pub, backbone=backbone, status_every=0.1, on_event=notes.append)
        stop, statuses = threading.Event(), []
        with WebPage("127.0.0.1:0", lambda: [s.snapshot() for s in fleet.statuses.values()], fleet.latest) as page:
            browser = threading.Thread(target=browse, args=(f"http://{page.address}/", stop, statuses))

            def subscriber_comes_and_goes() -> None:
                for _ in range(3):
                    with Subscriber(pub.address) as sub:
                        sub.receive(timeout=0.2)
                    time.sleep(0.05)

            listener = threading.Thread(target=subscriber_comes_and_goes)
            browser.start()
            listener.start()
            got: list = []
            cams[0].on_result = lambda f, r: got.append((r.index, r.score, r.threshold))
            try:
                summary = fleet.run(signals=False)
            finally:
                stop.set()
                browser.join(10)
                listener.join(10)
                for cam in cams:
                    cam.source.close()
    by_name = {c.name: c for c in summary.cameras}
    assert got == reference_scores(frames)                       # the steady camera: exactly its results alone
    assert by_name["steady"].summary.frames == 60 and by_name["unsaved"].summary.frames == 60
    flaky_summary = by_name["flaky"].summary
    assert flaky_summary.frames == 40 and flaky_summary.source.reconnects >= 1 and flaky_summary.source.failures >= 2
    assert by_name["unsaved"].summary.state_save_failures >= 1 and any("cannot save the state" in n for n in notes)
    assert 200 in statuses and all(code in (200, 404) for code in statuses)
    assert summary.batches > 0


def test_a_reopened_cameras_old_source_is_closed_and_dropped(tmp_path: Path, monkeypatch) -> None:
    """Nothing in a serve session keeps a source the fleet replaced: the session once held each camera's
    first source to its end, so a camera restarted once kept that source's memory for good (a demo
    camera's last 64 frames, 36 MiB: the serve process's step at the one-hour soak's faults)."""
    import gc
    import weakref

    path = config_file(tmp_path / "serve.toml", [("a", "demo:1")], head="[publisher]\nenabled = false\n")
    monkeypatch.setattr(serve_session, "make_extractor", lambda features: BlockMeans())
    with serve_session.ServeSession(load_config(path), on_event=lambda line: None) as session:
        cam = session.cameras[0]
        first = cam.source
        for _ in range(3):
            first.read()
        assert first._recent                           # the demo source keeps its recent frames' truth
        gone = weakref.ref(first)
        del first
        assert session.fleet._reopen(cam)
        gc.collect()
        assert gone() is None, gc.get_referrers(gone())
        assert cam.source.read() is not None
    assert cam.source.ended


def test_a_closed_demo_source_keeps_no_frames() -> None:
    from streamad.adapters.sources.demo import DemoSource

    source = DemoSource()
    assert source.read() is not None and len(source._recent) == 1
    source.close()
    assert source._recent == {} and source.read() is None
    assert source.truth(0).image.shape == (384, 384, 3)    # the truth is still there, rendered again


class BreaksEvery(FolderSource):
    """A folder source whose camera goes away (OSError) after ``every`` frames."""

    def __init__(self, folder: Path, every: int) -> None:
        super().__init__(folder)
        self.every, self.reads = every, 0

    def read(self, timeout: float | None = None):
        self.reads += 1
        if self.reads > self.every:
            raise OSError("the camera went away")
        return super().read(timeout)


def test_a_restarted_cameras_summary_counts_the_frames_of_every_run(tmp_path: Path) -> None:
    """A camera whose loop failed twice: its summary counts the frames of the failed runs too (it once
    counted only the last run's, while the messages of each were published) and the publisher's total
    once (it once added the cumulative count of each run)."""
    frames = write_frames(tmp_path / "frames", n=12)
    opened = {"n": 0}

    def reopen() -> FolderSource:
        opened["n"] += 1
        return BreaksEvery(frames, every=4) if opened["n"] < 2 else FolderSource(frames)

    delivered: list[int] = []
    cam = Camera("c", BreaksEvery(frames, every=4), small_detector(BlockMeans()), reopen=reopen,
                 on_result=lambda frame, result: delivered.append(result.index))
    with Publisher("tcp://127.0.0.1:*", topic="c") as publisher:
        fleet = Fleet([cam, Camera("d", FolderSource(frames), small_detector(BlockMeans()))], publisher=publisher,
                      status_every=0, on_event=lambda line: None)
        fleet._sleep = lambda seconds: not fleet.stop_flag
        summary = fleet.run(signals=False)
    c = {s.name: s for s in summary.cameras}["c"]
    assert c.restarts == 2 and len(delivered) == 4 + 4 + 12
    assert c.summary.frames == 20 and c.summary.stopped == "end", c.summary
    assert c.summary.published == 20 + c.summary.alarm_events, c.summary
    assert fleet.statuses["c"].snapshot().state == "ended"


def test_a_camera_whose_source_cannot_reopen_for_thousands_of_tries_waits_in_a_loop_then_runs(tmp_path: Path) -> None:
    """A camera off the network for days: its reopen fails every ``max_backoff`` seconds. The fleet tries
    again in a loop (it once recursed, one frame per try: a RecursionError after about a thousand tries,
    under three hours at the 10 s default, ended the camera's thread), says so a few times, not each
    time, and runs the camera once it is back."""
    frames = write_frames(tmp_path / "frames", n=12)
    tries = {"n": 0}

    def reopen() -> FolderSource:
        tries["n"] += 1
        if tries["n"] <= 2500:
            raise OSError("no route to host")
        return FolderSource(frames)

    notes: list[str] = []
    cam = Camera("far", BreaksEvery(frames, every=2), small_detector(BlockMeans()), max_frames=10, reopen=reopen)
    fleet = Fleet([cam, Camera("near", FolderSource(frames), small_detector(BlockMeans()))], status_every=0,
                  on_event=notes.append, max_backoff=0.0)
    fleet._sleep = lambda seconds: not fleet.stop_flag  # no waiting in the test
    summary = fleet.run(signals=False)
    far = {c.name: c for c in summary.cameras}["far"]
    assert tries["n"] == 2501 and far.summary.frames == 10 and far.restarts == 1
    said = [n for n in notes if "cannot reopen the source" in n]
    assert 3 <= len(said) <= 3 + 25 and "(2500 tries so far)" in said[-1], said[-3:]


def test_the_back_off_starts_over_once_the_camera_has_run_again(tmp_path: Path) -> None:
    """A camera that fails now and then, running in between: each failure waits the first back-off, not
    one doubled since the first failure of the run (a camera up for months once waited the longest
    back-off after every failure); failures in a row still double it."""
    frames = write_frames(tmp_path / "frames", n=12)
    waits: list[float] = []

    def run(reopen) -> None:
        waits.clear()
        cam = Camera("c", BreaksEvery(frames, every=3), small_detector(BlockMeans()), max_frames=12, reopen=reopen)
        fleet = Fleet([cam, Camera("d", FolderSource(frames), small_detector(BlockMeans()))], status_every=0,
                      on_event=lambda line: None, max_backoff=10.0)
        fleet._sleep = lambda seconds: waits.append(seconds) or True
        fleet.run(signals=False)

    run(lambda: BreaksEvery(frames, every=3) if len(waits) < 3 else FolderSource(frames))  # three frames between failures
    assert waits == [0.5, 0.5, 0.5], waits
    run(lambda: BreaksEvery(frames, every=0) if len(waits) < 4 else FolderSource(frames))  # four in a row
    assert waits == [0.5, 1.0, 2.0, 4.0], waits


# -- the page's access rules ------------------------------------------------------------------------------


def test_web_page_needs_a_token_off_loopback_and_serves_nothing_else(tmp_path: Path) -> None:
    status = CameraStatus("line1")
    status.frame(FrameResult(0, True, 2.0, 3.0, False, np.zeros((8, 8), np.float32), None, False, True, 1.0),
                 lag_s=0.01, dropped=0, nominal=10)
    snaps = lambda: [status.snapshot()]  # noqa: E731
    with pytest.raises(WebError, match="reachable from other machines"):
        WebPage("0.0.0.0:0", snaps, {})
    token = "s3cret-token-0123456789"
    with WebPage("0.0.0.0:0", snaps, {}, token=token) as page:
        base = f"http://127.0.0.1:{page.address.rsplit(':', 1)[1]}/"
        for route in ("", "status.json", "frame/line1.jpg", "status.json?token=wrong"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(base + route, timeout=5)
            assert err.value.code == 403
        with urllib.request.urlopen(f"{base}status.json?token={token}", timeout=5) as resp:
            body = resp.read().decode()
        doc = json.loads(body)
        assert doc["cameras"][0]["name"] == "line1" and doc["cameras"][0]["score"] == 2.0
        assert token not in body and str(tmp_path) not in body
        req = urllib.request.Request(base + "status.json", headers={"Authorization": f"Bearer {token}"})
        assert urllib.request.urlopen(req, timeout=5).status == 200
        for route in ("../../etc/passwd", "streamad/cli/serve.py", "frame/../serve.toml", "frame/nope.jpg"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"{base}{route}?token={token}", timeout=5)
            assert err.value.code == 404
        post = urllib.request.Request(f"{base}?token={token}", data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(post, timeout=5)
        assert err.value.code == 405
        assert page.refused >= 4


# -- workers: stop cleanly, never show half-done work ---------------------------------------------------


def test_status_snapshots_are_never_half_updated() -> None:
    status, stop, bad = CameraStatus("x"), threading.Event(), []

    def write() -> None:
        i = 0
        while not stop.is_set():
            status.frame(FrameResult(i, True, float(i), float(i), bool(i % 2), None, None, False, True, float(i)),
                         lag_s=0.0, dropped=i, nominal=i)
            i += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(2000):
            s = status.snapshot()
            if s.frames and not (s.last_index == s.frames - 1 == s.dropped == s.nominal_patches == s.score
                                 and s.anomalous == s.frames // 2 and s.history[-1][1] == s.score):
                bad.append(s)
    finally:
        stop.set()
        writer.join()
    assert not bad


def test_every_worker_stops_and_a_stopped_backbone_fails_rather_than_hangs(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames", n=30)
    from streamad.config import ChannelConfig, StreamConfig

    backbone = SharedBackbone(max_wait=0.002)
    cfg = StreamConfig(window=8, channels=ChannelConfig(seeds=2, min_span=2), learn_in_background=True)
    dets = [StreamDetector(cfg, extractor=backbone.client(BlockMeans())) for _ in range(2)]
    with Publisher("tcp://127.0.0.1:*") as pub:
        fleet = Fleet([Camera(f"c{i}", FolderSource(frames), d) for i, d in enumerate(dets)], publisher=pub,
                      backbone=backbone, status_every=0.05)
        with WebPage("127.0.0.1:0", lambda: [s.snapshot() for s in fleet.statuses.values()], fleet.latest):
            summary = fleet.run(signals=False)
    for d in dets:
        d.close()
    assert all(c.summary.frames == 30 for c in summary.cameras)
    assert not backbone.running
    with pytest.raises(RuntimeError, match="stopped"):
        backbone.submit(BlockMeans(), [np.zeros((8, 8, 3), np.uint8)]).result(timeout=1)
    time.sleep(0.3)
    alive = [t.name for t in threading.enumerate() if t.name.startswith("streamad")]
    assert alive == [], alive


# -- real processes: fan-in, signals -------------------------------------------------------------------

STAND_IN = textwrap.dedent('''
    import importlib, sys, time
    from streamad.testing.standin import BlockMeans
    serve_session = importlib.import_module("streamad.runtime.serve.session")

    def make_extractor(features):
        time.sleep(0.5)            # as loading a backbone takes a while: subscribers connect meanwhile
        return BlockMeans()

    serve_session.make_extractor = make_extractor
    from streamad.cli import main
    sys.exit(main(sys.argv[1:]))
''')


def serve_process(tmp_path: Path, name: str, config: Path, *extra: str) -> subprocess.Popen:
    script = tmp_path / "serve_stand_in.py"
    script.write_text(STAND_IN)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, str(script), "serve", str(config), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_two_serve_processes_and_one_listener_every_message_no_gaps(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames", n=30)
    ports = [free_port(), free_port()]
    configs = [config_file(tmp_path / f"box{k}.toml", [(f"box{k}-a", str(frames)), (f"box{k}-b", str(frames))],
                           head=f'[serve]\nstatus_every = 0.2\n[publisher]\naddress = "tcp://127.0.0.1:{port}"\n'
                                f'hwm = 1000\n')
               for k, port in enumerate(ports)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    listen = subprocess.Popen([sys.executable, "-m", "streamad", "listen", *(f"tcp://127.0.0.1:{p}" for p in ports),
                               "--json", "--status", "--timeout", "60"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    # the listener's output is read from the start: a listener blocked on a full stdout pipe stops taking
    # messages, and what serve still queues for it when it ends (its final statuses) goes after the linger
    lines: list[str] = []
    reading = threading.Thread(target=lambda: lines.extend(iter(listen.stdout.readline, "")), daemon=True)
    reading.start()
    boxes = [serve_process(tmp_path, f"box{k}", cfg, "--quiet") for k, cfg in enumerate(configs)]
    try:
        outs = [p.communicate(timeout=60) for p in boxes]
        end = time.monotonic() + 30
        while time.monotonic() < end:   # until the last frame of each camera and its final status are in
            done = [json.loads(x) for x in list(lines) if x.strip()]
            if sum(m["type"] == "frame" for m in done) == 120 and sum(
                    m["type"] == "status" and m["state"] in ("ended", "stopped") for m in done) == 4:
                break
            time.sleep(0.05)
        listen.terminate()
        reading.join(30)
        out, err = "", listen.communicate(timeout=30)[1]
    finally:
        for p in (*boxes, listen):
            if p.poll() is None:
                p.kill()
    for p, (o, e) in zip(boxes, outs):
        assert p.returncode == 0, e
    assert "missed" not in err and "malformed" not in err, err
    out = "".join(lines) + out
    msgs = [json.loads(line) for line in out.splitlines()]
    for k, port in enumerate(ports):
        for cam in (f"box{k}-a", f"box{k}-b"):
            mine = [m for m in msgs if m["publisher"] == f"tcp://127.0.0.1:{port}" and m["camera"] == cam]
            frame_seqs = [m["seq"] for m in mine if m["type"] == "frame"]
            assert frame_seqs == list(range(30)), (cam, frame_seqs)  # every frame message, in order
            assert [m["index"] for m in mine if m["type"] == "frame"] == list(range(30))
            status_seqs = [m["seq"] for m in mine if m["type"] == "status"]
            assert status_seqs and status_seqs == list(range(status_seqs[0], status_seqs[-1] + 1))
            final = [m for m in mine if m["type"] == "status"][-1]
            assert (final["state"], final["frames"]) == ("ended", 30)
            assert all(m["topic"] == f"_status/{cam}" for m in mine if m["type"] == "status")
            events = [m["seq"] for m in mine if m["type"] == "event"]
            assert events == list(range(len(events)))


def test_sigterm_stops_every_camera_saves_every_state_and_lists_each(tmp_path: Path) -> None:
    path = config_file(tmp_path / "serve.toml", [("left", "demo"), ("right", "demo")],
                       head="[publisher]\nenabled = false\n",
                       extra=SMALL.replace('learning = "sync"', 'learning = "sync"\nstate = "states/NAME"'))
    path.write_text(path.read_text().replace('name = "left"', 'name = "left"').replace(
        "states/NAME", "states/cam", 1).replace("states/NAME", "states/cam2", 1))
    proc = serve_process(tmp_path, "sig", path)
    try:
        end, seen = time.monotonic() + 60, ""
        while "camera(s): left" not in seen:
            assert proc.poll() is None and time.monotonic() < end, proc.communicate()
            seen += proc.stderr.readline()
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert "SIGTERM: stopping after the current frame" in stderr
    for name, state in (("left", "cam"), ("right", "cam2")):
        line = next(line for line in stdout.splitlines() if line.startswith(f"{name}: frames "))
        assert "stopped: signal SIGTERM" in line and "state saved 1x" in line, line
        assert (tmp_path / "states" / state / "manifest.json").is_file()


@pytest.mark.slow
def test_serve_equals_watch_with_the_real_backbone_on_real_images(bottle_dir: Path, tmp_path: Path, monkeypatch,
                                                                  capsys) -> None:
    """The default backbone (EfficientNet-Lite0, preset fast) on 10 bottle images: two cameras batched
    through one backbone score every frame exactly as ``streamad watch`` does (synchronous learning),
    with their detectors on threads and in worker processes, and so do two cameras that run the one
    backbone on their own threads at once (no batch wait)."""
    frames = tmp_path / "bottle"
    frames.mkdir()
    for name in sorted(os.listdir(bottle_dir / "train" / "good"))[:10]:
        os.symlink(bottle_dir / "train" / "good" / name, frames / name)
    extra = SMALL.replace("window = 8", 'window = 8\npreset = "fast"')
    path = config_file(tmp_path / "serve.toml", [(n, str(frames)) for n in "ab"], extra=extra,
                       head="[serve]\nbatch_wait_ms = 500\n[publisher]\nenabled = false\n")
    monkeypatch.setattr(serve_session, "make_detector", lambda config, extractor: Recording(config, extractor=extractor))
    Recording.made = []
    assert cli.main(["serve", str(path), "--quiet", "--json", str(tmp_path / "serve.json")]) == 0
    served = [det.seen for det in Recording.made]
    assert json.loads((tmp_path / "serve.json").read_text())["mean_batch"] > 1.5
    remote: dict[str, list[tuple]] = {}
    remote_process = RemoteDetector.process_described

    def record(self, described):  # the detectors in worker processes, the backbone here
        r = remote_process(self, described)
        remote.setdefault(self.name, []).append(seen(r))
        return r

    monkeypatch.setattr(RemoteDetector, "process_described", record)
    assert cli.main(["serve", str(path), "--quiet", "--workers", "2"]) == 0
    # no batch wait (the CPU's default): the two cameras run the one backbone on their own threads, at once
    unbatched = config_file(tmp_path / "unbatched.toml", [(n, str(frames)) for n in "ab"], extra=extra,
                            head="[publisher]\nenabled = false\n")
    Recording.made = []
    assert cli.main(["serve", str(unbatched), "--quiet", "--json", str(tmp_path / "unbatched.json")]) == 0
    served_alone = [det.seen for det in Recording.made]
    assert json.loads((tmp_path / "unbatched.json").read_text())["mean_batch"] == 1.0
    config = load_config(path).cameras[0].stream_config()
    monkeypatch.setattr(watch_cmd, "build_config", lambda args: config)
    monkeypatch.setattr(watch_cmd, "make_detector", lambda cfg: Recording(cfg))
    Recording.made = []
    assert cli.main(["watch", str(frames), "--learning", "sync", "--quiet"]) == 0
    watched = Recording.made[0].seen
    capsys.readouterr()
    assert len(watched) == 10 and sum(r[1] for r in watched) >= 5
    assert served == [watched] * 2 and served_alone == [watched] * 2
    assert [remote["a"], remote["b"]] == [watched] * 2
