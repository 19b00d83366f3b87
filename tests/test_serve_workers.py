"""``streamad serve`` with its detectors in worker processes (``[serve] workers``): they stop cleanly
and save every state, a killed worker is reported and its camera restarted while the others go on, and
bad settings are refused naming the key. Real worker processes (spawn), real pipes, real files; the
stand-in extractor (``streamad.testing.standin.BlockMeans``) in the serve process. Equality of the
scores with ``watch``: ``tests/test_serve.py::test_serve_scores_equal_watch_scores_on_the_same_frames``."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from streamad import cli
from streamad.runtime.live import StateSaver
from streamad.runtime.serve.batcher import SharedBackbone
from streamad.runtime.serve.config import ConfigError, load_config
from streamad.runtime.serve.fleet import Camera, Fleet
from streamad.runtime.serve.workers import DetectorSpec, WorkerDied, WorkerPool
from streamad.adapters.sources import FolderSource
from streamad.config import ChannelConfig, DecisionConfig, StreamConfig
from streamad.testing.standin import BlockMeans
from streamad.testing.frames import SMALL
from streamad.testing.frames import write_frames as serve_frames

SMALL_CONFIG = StreamConfig(window=8, channels=ChannelConfig(seeds=2, min_span=2), decisions=DecisionConfig(warmup=3))


def write_frames(folder: Path, n: int = 40, seed: int = 0) -> Path:
    """``n`` textured frames (PNG), one in ten with a bright square (test_serve's frames)."""
    return serve_frames(folder, n=n, defect=7, seed=seed, every=10)


def config_file(path: Path, cameras: list[tuple[str, str]], head: str = "", extra: str = SMALL) -> Path:
    path.write_text(head + "".join(f'\n[[cameras]]\nname = "{n}"\nsource = "{s}"\n{extra}' for n, s in cameras))
    return path


def reference_scores(frames: Path) -> list:
    """(index, score, threshold) of every frame by a detector of this process, alone."""
    from streamad.stream.detector import StreamDetector

    det = StreamDetector(SMALL_CONFIG, extractor=BlockMeans())
    with FolderSource(frames) as source:
        return [(r.index, r.score, r.threshold) for r in (det.process(f.image, f.timestamp) for f in source)]


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children(pid: int) -> list[int]:
    """The process ids whose parent is ``pid``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return out


def worker_processes() -> list[multiprocessing.Process]:
    """This process's worker processes still running."""
    return [p for p in multiprocessing.active_children() if p.name.startswith("streamad-worker")]


def no_streamad_threads() -> list[str]:
    time.sleep(0.2)
    return [t.name for t in threading.enumerate() if t.name.startswith("streamad")]


def remote_camera(pool: WorkerPool, backbone: SharedBackbone, name: str, frames: Path, config: StreamConfig,
                  notes: list[str], state: Path | None = None, **kw) -> Camera:
    ext = BlockMeans()
    handle = backbone.client(ext)
    detector = pool.detector(DetectorSpec.of(name, config, ext, state=None if state is None else str(state)), handle,
                             on_event=notes.append)
    saver = None if state is None else StateSaver(detector, state, every=None, on_event=notes.append)
    return Camera(name, FolderSource(frames), detector, saver=saver, **kw)


def test_workers_stop_on_request_save_every_state_and_leave_nothing_behind(tmp_path: Path) -> None:
    """Fleet.stop mid-run (background learning): each camera stops after its current frame, its state is
    saved by its worker, the summary lists each, and no worker process or streamad thread is left."""
    frames = write_frames(tmp_path / "frames", n=400)
    config = StreamConfig(window=8, channels=ChannelConfig(seeds=2, min_span=2), learn_in_background=True)
    notes: list[str] = []
    backbone = SharedBackbone(max_wait=0.002)
    with WorkerPool(2) as pool:
        cams = [remote_camera(pool, backbone, f"c{i}", frames, config, notes, state=tmp_path / f"state{i}")
                for i in range(2)]
        pids = pool.pids
        assert all(pid is not None and alive(pid) for pid in pids) and len(set(pids)) == 2
        fleet = Fleet(cams, backbone=backbone, status_every=0, on_event=notes.append)
        cams[0].on_result = lambda f, r: fleet.stop("stop requested") if r.index == 30 else None
        summary = fleet.run(signals=False)
        for cam in cams:
            cam.detector.close()
            cam.source.close()
    assert [c.name for c in summary.cameras] == ["c0", "c1"] and summary.stopped == "stop requested"
    for i, c in enumerate(summary.cameras):
        assert c.summary.stopped == "stop requested" and 0 < c.summary.frames < 400, c
        assert c.summary.state_saves == 1 and c.summary.state_save_failures == 0 and c.restarts == 0, c
        manifest = tmp_path / f"state{i}" / "manifest.json"
        assert manifest.is_file()
    from streamad.stream.detector import StreamDetector

    back = StreamDetector.load(tmp_path / "state0", extractor=BlockMeans())   # what the worker saved resumes
    assert back.frames_seen == summary.cameras[0].summary.frames and back.nominal_count > 0
    assert not any(alive(pid) for pid in pids) and worker_processes() == []
    assert no_streamad_threads() == []
    assert not any("cannot save" in n for n in notes), notes


def test_a_killed_worker_is_reported_its_camera_restarts_and_the_others_go_on(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames", n=60)
    notes: list[str] = []
    backbone = SharedBackbone(max_wait=0.002)
    with WorkerPool(2) as pool:
        steady = remote_camera(pool, backbone, "steady", frames, SMALL_CONFIG, notes)
        victim = remote_camera(pool, backbone, "victim", frames, SMALL_CONFIG, notes, max_frames=40,
                               reopen=lambda: FolderSource(frames))
        first = victim.detector.pid
        assert steady.detector.pid != first
        got: list = []
        steady.on_result = lambda f, r: got.append((r.index, r.score, r.threshold))

        def kill_once(frame, result) -> None:
            if result.index == 9 and victim.detector.pid == first:
                os.kill(first, signal.SIGKILL)

        victim.on_result = kill_once
        fleet = Fleet([steady, victim], backbone=backbone, status_every=0, on_event=notes.append, max_backoff=0.5)
        done: list = []
        runner = threading.Thread(target=lambda: done.append(fleet.run(signals=False)))
        runner.start()
        runner.join(60)
        assert not runner.is_alive(), "the fleet hangs after a worker died"
        second = victim.detector.pid
        status = fleet.statuses["victim"].snapshot()
        for cam in (steady, victim):
            cam.detector.close()
            cam.source.close()
    summary = {c.name: c for c in done[0].cameras}
    assert got == reference_scores(frames)                     # the other camera: exactly its results alone
    assert summary["steady"].summary.frames == 60 and summary["steady"].restarts == 0
    lost = summary["victim"]
    assert lost.restarts == 1 and "WorkerDied" in lost.error and "SIGKILL" in lost.error, lost
    assert lost.summary.frames == 40   # the run that failed is not counted; the next one ran to max_frames
    assert second is not None and second != first and not alive(first)
    assert any(n.startswith("victim: the loop failed (WorkerDied") for n in notes), notes
    assert any("detector reopened in worker process 1" in n for n in notes), notes
    assert status.state == "stopped"   # at max_frames, not failed
    assert worker_processes() == [] and not alive(second)


def test_a_dead_worker_fails_each_of_its_cameras_once_then_reopens_them(tmp_path: Path) -> None:
    """Two cameras on one worker: after it dies each gets WorkerDied once (never a hang), then both are
    reopened in one fresh process; a save meanwhile fails rather than waits."""
    frames = write_frames(tmp_path / "frames", n=3)
    backbone = SharedBackbone(max_wait=0.0)
    notes: list[str] = []
    image = next(iter(FolderSource(frames))).image
    with WorkerPool(1) as pool:
        a = pool.detector(DetectorSpec.of("a", SMALL_CONFIG, BlockMeans()), backbone.client(BlockMeans()), notes.append)
        b = pool.detector(DetectorSpec.of("b", SMALL_CONFIG, BlockMeans()), backbone.client(BlockMeans()), notes.append)
        assert a.process(image).index == 0 and b.process(image).index == 0
        old = a.pid
        os.kill(old, signal.SIGKILL)
        t0 = time.monotonic()
        with pytest.raises(WorkerDied, match="SIGKILL"):
            a.process(image)
        with pytest.raises(WorkerDied, match="nothing to save"):
            b.save(tmp_path / "b")
        with pytest.raises(WorkerDied, match="camera b's detector is gone"):
            b.process(image)
        assert time.monotonic() - t0 < 10
        assert a.process(image).index == 0 and b.process(image).index == 0   # fresh detectors, one new worker
        assert a.pid == b.pid != old and [p.pid for p in worker_processes()] == [a.pid]
    backbone.stop()
    assert worker_processes() == [] and not alive(old)


def test_one_sender_thread_per_worker_process_writes_all_its_requests(tmp_path: Path, monkeypatch) -> None:
    """Each worker process's requests are written by one thread, started with the process and ended with
    it (a thread was once started for every request: one per frame of every camera, and glibc hands
    threads that overlap new malloc arenas, which the serve process kept). A restarted worker gets a
    fresh sender and the old one ends; closing the pool leaves none."""
    frames = write_frames(tmp_path / "frames", n=30)
    images = [f.image for f in FolderSource(frames)]
    started: list[str] = []
    real_start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        started.append(thread.name)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    backbone = SharedBackbone(max_wait=0.0)
    with WorkerPool(1) as pool:
        cam = pool.detector(DetectorSpec.of("a", SMALL_CONFIG, BlockMeans()), backbone.client(BlockMeans()),
                            lambda note: None)
        for image in images:
            cam.process(image)
        assert started.count("streamad-send-0") == 1, started
        old = cam.pid
        os.kill(old, signal.SIGKILL)
        with pytest.raises(WorkerDied):
            cam.process(images[0])
        for image in images[:5]:
            cam.process(image)                           # a fresh worker, its own sender
        assert started.count("streamad-send-0") == 2, started
        senders = [t for t in threading.enumerate() if t.name == "streamad-send-0"]
        assert len(senders) == 1, senders
    backbone.stop()
    assert no_streamad_threads() == []


def test_a_stopped_worker_is_killed_within_the_request_timeout_and_its_camera_resumes(tmp_path: Path) -> None:
    """A worker stopped with SIGSTOP (hung: alive, answering nothing) is noticed by its camera's next
    request within ``request_timeout`` (+ one poll), killed with SIGKILL, and the request after that opens
    the camera's detector in a fresh worker from its state folder."""
    from streamad.runtime.serve.workers import POLL_S

    frames = write_frames(tmp_path / "frames", n=6)
    images = [f.image for f in FolderSource(frames)]
    backbone = SharedBackbone(max_wait=0.0)
    notes: list[str] = []
    state = tmp_path / "state"
    timeout = 1.5
    with WorkerPool(1, request_timeout=timeout) as pool:
        cam = pool.detector(DetectorSpec.of("a", SMALL_CONFIG, BlockMeans(), state=str(state)),
                            backbone.client(BlockMeans()), notes.append)
        for image in images[:4]:
            cam.process(image)
        cam.save(state)
        old = cam.pid
        os.kill(old, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            with pytest.raises(WorkerDied, match=r"did not answer a 'process' request within 1.5 s \(hung or stopped\)"):
                cam.process(images[4])
            noticed = time.monotonic() - t0
        finally:
            if alive(old):
                os.kill(old, signal.SIGKILL)
        assert timeout <= noticed <= timeout + POLL_S + 1.0, noticed
        assert not alive(old)
        result = cam.process(images[4])          # a fresh worker, the detector resumed from its state folder
        assert result.index == 4 and cam.pid not in (None, old)
        assert any("detector reopened in worker process 0" in n for n in notes), notes
        print(f"stopped worker noticed and killed after {noticed:.2f} s (request timeout {timeout} s)")
    backbone.stop()
    assert worker_processes() == []


def request_in_a_thread(worker, join_s: float, *request) -> tuple[threading.Thread, list[BaseException], float]:
    """``worker.call(*request)`` under its lock on another thread, waited for up to ``join_s`` seconds: (the
    thread, the error the call raised if any, the seconds waited)."""
    outcome: list[BaseException] = []

    def call() -> None:
        with worker.lock:
            try:
                worker.call(*request)
            except BaseException as exc:  # noqa: BLE001
                outcome.append(exc)
    caller = threading.Thread(target=call, daemon=True)
    t0 = time.monotonic()
    caller.start()
    caller.join(join_s)
    return caller, outcome, time.monotonic() - t0


def test_a_request_larger_than_the_pipe_to_a_stopped_worker_still_meets_the_deadline(tmp_path: Path) -> None:
    """A frame's descriptors exceed a pipe's buffer: sending them to a stopped worker blocks until it reads.
    The request's deadline covers the send too (found by the one-hour live soak, where a hung worker
    went unnoticed for a minute)."""
    import numpy as np

    timeout = 1.0
    with WorkerPool(1, request_timeout=timeout) as pool:
        backbone = SharedBackbone(max_wait=0.0)
        cam = pool.detector(DetectorSpec.of("a", SMALL_CONFIG, BlockMeans()), backbone.client(BlockMeans()),
                            lambda note: None)
        cam.process(next(iter(FolderSource(write_frames(tmp_path / "frames", n=1)))).image)
        worker = pool.workers[0]
        pid = worker.process.pid
        os.kill(pid, signal.SIGSTOP)
        caller, outcome, waited = request_in_a_thread(worker, timeout + 10.0,
                                                      "process", "a", np.zeros(8_000_000, np.uint8))  # 8 MB
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
        assert not caller.is_alive(), "the request to a stopped worker blocked past its deadline"
        assert outcome and isinstance(outcome[0], WorkerDied) and "did not answer" in str(outcome[0]), outcome
        assert waited <= timeout + 3.0, waited
    backbone.stop()
    assert worker_processes() == []


def test_a_worker_stopped_half_way_through_an_answer_still_meets_the_deadline() -> None:
    """A frame's answer (its heatmap) can exceed a pipe's buffer: a worker stopped while writing it leaves
    part of a message, which a plain read waits on for ever. The request's deadline covers receiving too
    (found by the short live soak in CI, where a stopped worker went unnoticed to the soak's end); the
    receiver thread ends once the killed worker's pipe reads end-of-file."""
    from streamad.runtime.serve.workers import POLL_S, _Worker
    from streamad.testing.workers import answer_half_then_stop

    timeout = 1.0
    worker = _Worker(multiprocessing.get_context("spawn"), 0, request_timeout=timeout)
    worker.main = answer_half_then_stop
    worker.start()
    pid, receiver = worker.process.pid, worker.receiver
    caller, outcome, waited = request_in_a_thread(worker, timeout + 15.0, "process", "a")
    try:
        assert not caller.is_alive(), "the request waited past its deadline on a half-written answer"
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    assert outcome and isinstance(outcome[0], WorkerDied) and "did not answer a 'process' request" in str(outcome[0]), outcome
    assert waited <= timeout + POLL_S + 5.0, waited    # the spawn's own start is inside this
    assert not alive(pid) and not receiver.thread.is_alive() and worker.receiver is None
    worker.end(5.0)


def test_a_stopped_worker_in_a_fleet_restarts_its_camera_and_the_others_go_on(tmp_path: Path) -> None:
    frames = write_frames(tmp_path / "frames", n=60)
    notes: list[str] = []
    backbone = SharedBackbone(max_wait=0.002)
    with WorkerPool(2, request_timeout=1.0) as pool:
        steady = remote_camera(pool, backbone, "steady", frames, SMALL_CONFIG, notes)
        victim = remote_camera(pool, backbone, "victim", frames, SMALL_CONFIG, notes, max_frames=40,
                               reopen=lambda: FolderSource(frames))
        first = victim.detector.pid
        got: list = []
        steady.on_result = lambda f, r: got.append((r.index, r.score, r.threshold))
        victim.on_result = (lambda f, r: os.kill(first, signal.SIGSTOP)
                            if r.index == 9 and victim.detector.pid == first else None)
        fleet = Fleet([steady, victim], backbone=backbone, status_every=0, on_event=notes.append, max_backoff=0.5)
        done: list = []
        runner = threading.Thread(target=lambda: done.append(fleet.run(signals=False)))
        runner.start()
        runner.join(60)
        if alive(first):
            os.kill(first, signal.SIGKILL)
        assert not runner.is_alive(), "the fleet hangs on a stopped worker"
        second = victim.detector.pid
        for cam in (steady, victim):
            cam.detector.close()
            cam.source.close()
    summary = {c.name: c for c in done[0].cameras}
    assert got == reference_scores(frames)                     # the other camera: exactly its results alone
    lost = summary["victim"]
    assert lost.restarts == 1 and "did not answer" in lost.error and "SIGKILL" in lost.error, lost
    assert lost.summary.frames == 40 and second not in (None, first)
    assert worker_processes() == []


@pytest.mark.parametrize("text, message", [
    ('[serve]\nworkers = -1\n[[cameras]]\nname = "a"\nsource = "demo"\n',
     "serve (line 2): key 'workers' must be an int in [0, 256]"),
    ('[serve]\nworker_timeout_s = 0\n[[cameras]]\nname = "a"\nsource = "demo"\n',
     "serve (line 2): key 'worker_timeout_s' must be a number of seconds in [1, 3600]"),
    ('[serve]\nworkers = "4"\n[[cameras]]\nname = "a"\nsource = "demo"\n', "key 'workers' must be an int"),
])
def test_bad_workers_setting_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        load_config(path)


def test_bad_workers_option_is_a_usage_error(tmp_path: Path, capsys) -> None:
    path = config_file(tmp_path / "serve.toml", [("a", "demo")])
    assert load_config(path).workers == 0
    assert cli.main(["serve", str(path), "--workers", "-2"]) == 2
    assert "--workers must be an int in [0, 256]" in capsys.readouterr().err


def test_bench_serve_passes_its_workers_to_serve(tmp_path: Path) -> None:
    from streamad.bench.serve import serve_config

    path = tmp_path / "bench.toml"
    path.write_text(serve_config(3, preset="fast", window=16, learning="sync", device=None, batch_wait_ms=5,
                                 workers=2))
    config = load_config(path)
    assert config.workers == 2 and len(config.cameras) == 3 and config.publish is None
    assert all(c.admit_every is None for c in config.cameras)
    assert cli.main(["bench-serve", "--workers", "-1"]) == 2


def test_bench_serve_caps_both_sides_learning_alike(tmp_path: Path, capsys) -> None:
    """``--admit-every K`` reaches every serve camera's file entry and every watch process's command line,
    and the StreamConfig each side builds from it admits one frame in K."""
    from streamad.bench.serve import serve_config, watch_command
    from streamad.cli import watch as watch_cli

    path = tmp_path / "bench.toml"
    path.write_text(serve_config(2, preset="default", window=None, learning="background", device=None,
                                 batch_wait_ms=None, workers=2, admit_every=8))
    cameras = load_config(path).cameras
    assert [c.stream_config().admit_every for c in cameras] == [8, 8]
    cmd = watch_command(10, preset="default", window=None, learning="background", device=None, admit_every=8)
    args = cli.build_parser().parse_args(cmd[3:])
    assert watch_cli.build_config(args).admit_every == 8
    assert cli.main(["bench-serve", "--admit-every", "0"]) == 2
    assert "--admit-every must be >= 1, got 0" in capsys.readouterr().err


# -- the command: Ctrl-C to the whole process group -------------------------------------------------------

STAND_IN = textwrap.dedent('''
    import importlib, sys
    from streamad.testing.standin import BlockMeans

    if __name__ == "__main__":          # worker processes (spawn) import this file: start serve only here
        serve_session = importlib.import_module("streamad.runtime.serve.session")
        serve_session.make_extractor = lambda features: BlockMeans()
        from streamad.cli import main
        sys.exit(main(sys.argv[1:]))
''')


def start_serve(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    """``streamad serve`` (stand-in extractor) with two demo cameras, each with a state folder, in two
    worker processes, in a session (process group) of its own; returns it, running, and its children."""
    extra = SMALL.replace('learning = "sync"', 'learning = "background"\nstate = "states/NAME"')
    path = config_file(tmp_path / "serve.toml", [("left", "demo"), ("right", "demo")],
                       head="[serve]\nworkers = 2\n[publisher]\nenabled = false\n", extra=extra)
    path.write_text(path.read_text().replace("states/NAME", "states/left", 1).replace("states/NAME", "states/right", 1))
    script = tmp_path / "serve_stand_in.py"
    script.write_text(STAND_IN)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(script), "serve", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        end, seen = time.monotonic() + 60, ""
        while "camera(s): left" not in seen:
            assert proc.poll() is None and time.monotonic() < end, proc.communicate()
            seen += proc.stderr.readline()
        assert "detection in 2 worker process(es)" in seen
        workers = children(proc.pid)
        assert len(workers) >= 2, workers   # the two workers (and multiprocessing's resource tracker)
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc, workers


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_process_group_saves_every_state_and_ends_every_worker(tmp_path: Path, signum) -> None:
    """A terminal's Ctrl-C (or a service manager's SIGTERM) reaches serve and its workers at once: the
    workers serve on, serve stops each camera after its frame, each worker saves its camera's state,
    and no worker outlives serve."""
    proc, workers = start_serve(tmp_path)
    try:
        time.sleep(1.0)
        os.killpg(proc.pid, signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, stderr
    name = signal.Signals(signum).name
    assert f"{name}: stopping after the current frame" in stderr and "Traceback" not in stderr, stderr
    for cam in ("left", "right"):
        line = next(line for line in stdout.splitlines() if line.startswith(f"{cam}: frames "))
        assert f"stopped: signal {name}" in line and "state saved 1x" in line and "failed" not in line, line
        assert (tmp_path / "states" / cam / "manifest.json").is_file()
    time.sleep(0.5)
    assert [pid for pid in workers if alive(pid)] == []


def test_workers_of_a_killed_serve_end_on_their_own(tmp_path: Path) -> None:
    """serve killed outright (no chance to stop them): its workers read end-of-file and exit."""
    proc, workers = start_serve(tmp_path)
    try:
        time.sleep(0.5)
        proc.kill()
        proc.communicate(timeout=30)
        end = time.monotonic() + 15
        while any(alive(pid) for pid in workers) and time.monotonic() < end:
            time.sleep(0.1)
        assert [pid for pid in workers if alive(pid)] == []
    finally:
        for pid in workers:
            if alive(pid) and b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)   # one of ours, left running: do not let it outlive the test
