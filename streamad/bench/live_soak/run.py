"""The live soak: ``streamad serve`` as users run it, for minutes or hours, under injected faults.

:func:`run_soak` starts serve (N demo cameras paced like cameras, detection in worker processes with
background learning, a state folder per camera, the publisher, the web page), then watches it: its
subscriber counts every message and gap, its browser polls the page, its sampler reads every process's
memory and threads, and its fault runner injects the faults asked for, one after the other, in the
middle third of the run (from the end of the warm-up, the first sixth, to half-way). Every interval it
prints a row per process and per camera. At the end it stops serve (SIGTERM: every state is saved),
checks that every state loads and resumes identically, and returns the report (JSON-ready) with its
pass/fail checks (:mod:`~streamad.bench.live_soak.report`).

Who owns what: the soak's main thread owns the run (start, intervals, stop, checks); each helper owns
its thread and what it reads (see their modules); every helper is stopped and joined on the way out,
Ctrl-C included (SIGTERM to the soak acts as Ctrl-C: the run so far is reported), and serve's whole
session is killed if it did not stop. serve runs in a session of its own: if the soak itself is killed
with SIGKILL, stop serve with ``kill -TERM -PID`` (its process group; its pid is printed at the start).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamad.errors import UserError
from streamad.bench.live_soak import procs, report
from streamad.bench.live_soak.camera import DemoCamera
from streamad.bench.live_soak.faults import FAULTS, FaultContext, FaultRunner
from streamad.bench.live_soak.listener import MessageCounter
from streamad.bench.live_soak.resume import check_resume, load_copy
from streamad.bench.live_soak.serve_process import ServeProcess, SoakCamera, serve_toml
from streamad.bench.live_soak.web_client import PagePoller

EXTRACTORS = ("real", "standin")
FAULT_WINDOW = (1 / 6, 1 / 2)  # faults are planned from the end of the warm-up to half-way
LATEST_FAULT = 0.8             # no fault starts after this share of the run (the rest is to recover)


@dataclass(frozen=True)
class SoakSettings:
    """A live soak. ``minutes`` of run (from every camera's first frame), a row every ``interval_minutes``;
    ``faults`` to inject (names of :data:`~streamad.bench.live_soak.faults.FAULTS`); ``cameras`` demo
    cameras at ``fps`` frames per second each, ``preset``, on ``device``, in ``workers`` worker processes
    (``worker_timeout_s``: serve's deadline for a hung one), saving their state every ``save_every``
    frames; ``extractor``: ``real`` (the backbone) or ``standin`` (block means: tests and smoke runs);
    ``seed`` picks the faults' targets. ``source_down_s``, ``subscriber_away_s`` (how long the network
    camera and the subscriber are away) and ``sample_s`` (between memory samples) scale with the run when
    None. ``work_dir`` holds the configuration, states and logs (None: a temporary folder, deleted at
    the end unless ``keep``).

        >>> s = SoakSettings(minutes=60)
        >>> s.warmup_s, s.source_down_s_, s.subscriber_away_s_, s.sample_s_
        (600.0, 20.0, 10.0, 5.0)
        >>> SoakSettings(fps=0)
        Traceback (most recent call last):
        ...
        ValueError: SoakSettings.fps must be a number of frames per second in (0, 100], got 0
    """

    minutes: float = 60.0
    interval_minutes: float = 5.0
    faults: tuple[str, ...] = FAULTS
    cameras: int = 4
    workers: int = 2
    preset: str = "default"
    fps: float = 2.0
    device: str = "cpu"
    worker_timeout_s: float = 30.0
    save_every: int = 200
    extractor: str = "real"
    seed: int = 0
    source_down_s: float | None = None
    subscriber_away_s: float | None = None
    sample_s: float | None = None
    web_every_s: float = 1.0
    ready_timeout_s: float = 600.0
    work_dir: str | None = None
    keep: bool = False

    def __post_init__(self) -> None:
        def need(name: str, ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(f"SoakSettings.{name} must be {what}, got {getattr(self, name)!r}")

        def num(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)

        need("minutes", num(self.minutes) and self.minutes > 0, "a number of minutes > 0")
        need("interval_minutes", num(self.interval_minutes) and self.interval_minutes > 0,
             "a number of minutes > 0 (a longer interval than the run: one row)")
        need("faults", all(f in FAULTS for f in self.faults) and len(set(self.faults)) == len(self.faults),
             f"distinct names among {', '.join(FAULTS)}")
        need("cameras", isinstance(self.cameras, int) and 1 <= self.cameras <= 64, "an int in 1..64")
        need("workers", isinstance(self.workers, int) and 1 <= self.workers <= 64, "an int in 1..64")
        need("fps", num(self.fps) and 0 < self.fps <= 100, "a number of frames per second in (0, 100]")
        need("worker_timeout_s", num(self.worker_timeout_s) and 1 <= self.worker_timeout_s <= 3600,
             "a number of seconds in [1, 3600] (serve's [serve] worker_timeout_s)")
        need("save_every", isinstance(self.save_every, int) and self.save_every >= 1, "an int >= 1 (frames)")
        need("extractor", self.extractor in EXTRACTORS, f"one of {', '.join(EXTRACTORS)}")
        need("seed", isinstance(self.seed, int), "an int")
        for name in ("source_down_s", "subscriber_away_s", "sample_s"):
            v = getattr(self, name)
            need(name, v is None or (num(v) and v > 0), "a number of seconds > 0 (or None: scaled to the run)")
        need("web_every_s", num(self.web_every_s) and self.web_every_s > 0, "a number of seconds > 0")
        need("ready_timeout_s", num(self.ready_timeout_s) and self.ready_timeout_s > 0, "a number of seconds > 0")
        if "source" in self.faults and self.cameras < 2:
            raise ValueError("SoakSettings.cameras must be >= 2 with the 'source' fault (one is the network camera)")

    @property
    def duration_s(self) -> float:
        return float(self.minutes) * 60.0

    @property
    def interval_s(self) -> float:
        return float(self.interval_minutes) * 60.0

    @property
    def warmup_s(self) -> float:
        return self.duration_s / 6.0

    @property
    def source_down_s_(self) -> float:
        return float(self.source_down_s or min(20.0, max(2.0, self.duration_s / 180.0)))

    @property
    def subscriber_away_s_(self) -> float:
        return float(self.subscriber_away_s or min(10.0, max(1.0, self.duration_s / 360.0)))

    @property
    def sample_s_(self) -> float:
        return float(self.sample_s or min(5.0, max(0.25, self.interval_s / 30.0)))

    def plan(self) -> list[tuple[str, float]]:
        """(fault, seconds after the start) for every fault, spread over the middle third of the run.

        >>> SoakSettings(minutes=60, faults=("kill", "stop")).plan()
        [('kill', 600.0), ('stop', 1200.0)]
        """
        first, last = (share * self.duration_s for share in FAULT_WINDOW)
        step = (last - first) / max(1, len(self.faults))
        return [(name, first + k * step) for k, name in enumerate(self.faults)]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def soak_cameras(settings: SoakSettings, network_url: str | None) -> list[SoakCamera]:
    """``cam0`` ... ``camN``: the demo scene of seed K paced at ``fps``; with ``network_url`` the last one is
    the network camera (the same scene, served over HTTP by the soak)."""
    cams = [SoakCamera(f"cam{k}", f"demo:{k}@{settings.fps:g}", k) for k in range(settings.cameras)]
    if network_url is not None:
        cams[-1] = SoakCamera(cams[-1].name, network_url, cams[-1].seed, network=True)
    return cams


class Clock:
    """Seconds since the soak started (monotonic)."""

    def __init__(self) -> None:
        self.origin = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.origin


def run_soak(settings: SoakSettings, emit: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the soak (see the module docstring); ``emit`` hears progress and the rows. The report."""
    return LiveSoak(settings, emit).run()


class LiveSoak:
    """One run of :func:`run_soak`."""

    def __init__(self, settings: SoakSettings, emit: Callable[[str], None]) -> None:
        self.settings, self.emit = settings, emit
        self.clock = Clock()
        self.t_ready = 0.0
        self.rows: list[dict[str, Any]] = []
        self.printed_header = False

    # -- the run ------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        s = self.settings
        with ExitStack() as stack:
            stack.enter_context(_sigterm_as_interrupt())
            work = self._work_dir(stack)
            network = None
            if "source" in s.faults:
                network = stack.enter_context(DemoCamera(seed=s.cameras - 1, fps=s.fps))
            cams = soak_cameras(s, None if network is None else network.url)
            publish, http = f"tcp://127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
            config = work / "serve.toml"
            config.write_text(serve_toml(cams, workers=s.workers, worker_timeout_s=s.worker_timeout_s, preset=s.preset,
                                         device=s.device, publish=publish, http=http, save_every=s.save_every),
                              encoding="utf-8")
            counter = MessageCounter(publish, self.clock).start()
            stack.callback(counter.stop)
            serve = stack.enter_context(ServeProcess(config, self.clock, log=work / "serve.log",
                                                     out=work / "serve.out", standin=s.extractor == "standin"))
            serve.start()
            self.emit(f"soak: serve started (pid {serve.pid}): {len(cams)} cameras, {s.workers} workers, "
                      f"{s.preset} preset, {s.extractor} extractor; work folder {work}")
            self._wait_ready(serve, counter, [c.name for c in cams])
            sampler = procs.ProcessSampler(serve.pid, self.clock, s.sample_s_).start()
            stack.callback(sampler.stop)
            poller = PagePoller(f"http://{http}", self.clock, every=s.web_every_s).start()
            stack.callback(poller.stop)
            ctx = FaultContext(self.clock, serve, counter, cams, s.workers, work / "states", network, s.fps,
                               s.worker_timeout_s, s.save_every, s.source_down_s_, s.subscriber_away_s_,
                               np.random.default_rng(s.seed), load_copy, emit=self.emit, origin=self.t_ready)
            runner = FaultRunner([(name, self.t_ready + at) for name, at in s.plan()], ctx,
                                 latest_start=self.t_ready + LATEST_FAULT * s.duration_s).start()
            stack.callback(runner.stop)
            interrupted, ended = self._intervals(serve, sampler, counter, poller, runner, cams)
            runner.stop()
            poller.stop()  # before serve stops: a page that went away with serve is no failure
            self.emit("soak: stopping serve (SIGTERM: every camera saves its state)")
            t_stop = self.clock()
            code = serve.stop(timeout=300.0)
            stop_s = self.clock() - t_stop
            time.sleep(1.0)  # the last messages (final statuses) come in
            counter.stop()
            sampler.stop()
            serve.close()  # joins its log reader
            if network is not None:
                network.close()
            workers_left = sorted(pid for pid in sampler.seen if procs.alive(pid))
            soak_threads_left = sorted(t.name for t in threading.enumerate() if t.name.startswith("streamad-soak"))
            states = [] if interrupted else self._check_states(cams, work / "states", counter)
            data = self._data(sampler, counter, poller, cams)
            faults = [self._rel_fault(r.to_dict()) for r in runner.records()]
            doc = self._report(data, faults, states, cams, serve, code, stop_s, workers_left, soak_threads_left,
                               interrupted, ended)
            if s.keep or s.work_dir:
                self.emit(f"soak: configuration, states and serve's log kept in {work}")
            return doc

    def _work_dir(self, stack: ExitStack) -> Path:
        s = self.settings
        if s.work_dir:
            work = Path(s.work_dir)
            if work.exists() and any(work.iterdir()):
                raise UserError(f"--work-dir {work} is not empty: give a new or empty folder")
            work.mkdir(parents=True, exist_ok=True)
            return work
        work = Path(tempfile.mkdtemp(prefix="streamad-soak-"))
        if not s.keep:
            stack.callback(shutil.rmtree, work, ignore_errors=True)
        return work

    def _wait_ready(self, serve: ServeProcess, counter: MessageCounter, names: list[str]) -> None:
        """Until every camera's first frame message arrived (serve loaded, workers opened, sources open)."""
        end = time.monotonic() + self.settings.ready_timeout_s
        while not set(names) <= counter.cameras():
            if not serve.running:
                tail = "\n".join(text for _, text in serve.lines()[-15:])
                raise UserError(f"streamad serve ended before every camera's first frame (exit {serve.stop(1)}):"
                                f"\n{tail}")
            if time.monotonic() > end:
                raise UserError(f"not every camera delivered a frame within {self.settings.ready_timeout_s:g} s "
                                f"(got {sorted(counter.cameras())}); see {serve.log_path}")
            time.sleep(0.1)
        self.t_ready = self.clock()
        self.emit(f"soak: every camera's first frame after {self.t_ready:.1f} s; the run starts "
                  f"({self.settings.minutes:g} min, a row every {self.settings.interval_minutes:g} min)")

    def _intervals(self, serve: ServeProcess, sampler: Any, counter: MessageCounter, poller: PagePoller,
                   runner: FaultRunner, cams: list[SoakCamera]) -> tuple[bool, float]:
        """Wait out the run, a row per interval; (interrupted by Ctrl-C, seconds run)."""
        s = self.settings
        n = int(np.ceil(s.duration_s / s.interval_s - 1e-9))
        start = 0.0
        try:
            for k in range(n):
                end = min(s.duration_s, (k + 1) * s.interval_s)
                while self.clock() - self.t_ready < end:
                    if not serve.running:
                        self.emit("soak: serve ended on its own: the run stops here")
                        self._row(k + 1, start, self.clock() - self.t_ready, sampler, counter, poller, runner, cams)
                        return False, self.clock() - self.t_ready
                    time.sleep(min(0.2, max(0.0, end - (self.clock() - self.t_ready))))
                self._row(k + 1, start, end, sampler, counter, poller, runner, cams)
                start = end
        except KeyboardInterrupt:
            self.emit("soak: interrupted: stopping serve and reporting what ran")
            return True, self.clock() - self.t_ready
        return False, s.duration_s

    def _row(self, number: int, start: float, end: float, sampler: Any, counter: MessageCounter,
             poller: PagePoller, runner: FaultRunner, cams: list[SoakCamera]) -> None:
        data = self._data(sampler, counter, poller, cams)
        faults = [self._rel_fault(r.to_dict()) for r in runner.records(in_progress=True)]
        row = report.interval_row(number, start, end, data, faults)
        self.rows.append(row)
        roles = report.roles_of(self.rows)
        table = report.interval_table([row], roles=roles, fixed=True).splitlines()
        cams = report.camera_table([row], fixed=True).splitlines()
        if not self.printed_header:
            self.emit(table[0])
            self.emit("    " + cams[0])
            self.printed_header = True
        self.emit(table[1])
        for line in cams[1:]:
            self.emit("    " + line)

    # -- data, checks, report -----------------------------------------------------------------------------
    def _data(self, sampler: Any, counter: MessageCounter, poller: PagePoller,
              cams: list[SoakCamera]) -> dict[str, Any]:
        """Everything recorded so far, on the run's time (seconds since every camera's first frame)."""
        r = self.t_ready
        return {"procs": [(p.t - r, p.role, p.pid, p.rss_mib, p.threads) for p in sampler.records()],
                "frames": [(t - r, cam, index) for t, cam, index in counter.frames()],
                "events": [(t - r, cam) for t, cam in counter.events()],
                "statuses": [{**dataclasses.asdict(st), "t": st.t - r} for st in counter.statuses()],
                "gaps": [{**dataclasses.asdict(g), "t": g.t - r, "since": g.since - r} for g in counter.gaps()],
                "web": [(w.t - r, w.route, w.status, w.ms, w.ok) for w in poller.records()],
                "cameras": [c.name for c in cams],
                "soak_threads": sum(1 for t in threading.enumerate() if t.name.startswith("streamad-soak"))}

    def _rel_fault(self, fault: dict[str, Any]) -> dict[str, Any]:
        r = self.t_ready
        out = dict(fault)
        for key in ("injected_s", "detected_s", "recovered_s"):
            if out.get(key) is not None:
                out[key] = out[key] - r
        out["extra"] = {k: (v - r if k.endswith("_s") and isinstance(v, float) else v)
                        for k, v in fault["extra"].items()}
        return out

    def _check_states(self, cams: list[SoakCamera], states: Path, counter: MessageCounter) -> list[dict[str, Any]]:
        s = self.settings
        self.emit(f"soak: checking that every state loads and resumes identically ({s.extractor} extractor)")
        from streamad.adapters.sources.demo import DemoConfig, DemoStream
        from streamad.stream.persistence import read_state

        extractors: dict[Any, Any] = {}
        out = []
        for cam in cams:
            stream = DemoStream(DemoConfig(seed=cam.seed, fps=s.fps))
            try:
                config = read_state(states / cam.name).config
                key = config.features
            except Exception:  # noqa: BLE001 - check_resume reports the state that does not load
                config, key = None, None
            if key not in extractors:
                extractors[key] = self._extractor(config)
            frames_seen = _frames_seen(states / cam.name)
            base = frames_seen or 0

            def frames(i: int, stream: Any = stream, base: int = base) -> tuple[np.ndarray, float]:
                return stream.sample(base + i).image, (base + i) / s.fps

            check = check_resume(cam.name, states / cam.name, extractors[key], frames, counter.last_index(cam.name))
            out.append(check.to_dict())
            self.emit(f"soak: {cam.name}: " + ("state OK" if check.ok else f"state NOT OK: {check.to_dict()}"))
        return out

    def _extractor(self, config: Any) -> Any:
        if self.settings.extractor == "standin" or config is None:
            from streamad.testing.standin import BlockMeans

            return BlockMeans()
        from streamad.vision.features import PatchFeatureExtractor

        return PatchFeatureExtractor(dataclasses.replace(config.features, device=self.settings.device))

    def _report(self, data: dict[str, Any], faults: list[dict[str, Any]], states: list[dict[str, Any]],
                cams: list[SoakCamera], serve: ServeProcess, code: int | None, stop_s: float, workers_left: list[int],
                soak_threads_left: list[str], interrupted: bool, ended: float) -> dict[str, Any]:
        s = self.settings
        processes: dict[int, dict[str, Any]] = {}
        for t, role, pid, rss, threads in data["procs"]:
            if t < 0:
                continue
            p = processes.setdefault(pid, {"role": role, "pid": pid, "first_s": t, "last_s": t, "samples": []})
            p["last_s"] = t
            p["samples"].append([round(t, 2), round(rss, 2), threads])
        cameras = {}
        for cam in cams:
            st = [x for x in data["statuses"] if x["camera"] == cam.name and x["t"] >= 0]
            cameras[cam.name] = {
                "source": cam.source, "network": cam.network, "seed": cam.seed,
                "frames": sum(1 for f in data["frames"] if f[1] == cam.name),
                "events": sum(1 for e in data["events"] if e[1] == cam.name), "statuses": len(st),
                "latency": [[round(x["t"], 2), round(x["lag_s"] * 1e3, 2)] for x in st
                            if x["state"] == "running" and x["lag_s"] is not None]}
        gaps = [{**g, "t": round(g["t"], 3), "since": round(g["since"], 3)} for g in data["gaps"]]
        for g in gaps:
            g["fault"] = report.attribute(g, faults)
        web = {"requests": len(data["web"]), "failed": sum(1 for w in data["web"] if not w[4]),
               "max_ms": max((w[3] for w in data["web"]), default=0.0),
               "failures": [{"t": round(w[0], 2), "route": w[1], "status": w[2], "ms": round(w[3], 1)}
                            for w in data["web"] if not w[4]][:50]}
        settings = {**dataclasses.asdict(s), "faults": list(s.faults), "source_down_s": s.source_down_s_,
                    "subscriber_away_s": s.subscriber_away_s_, "sample_s": s.sample_s_}
        doc = {"settings": settings, "ready_s": self.t_ready, "duration_s": ended, "interval_s": s.interval_s,
               "warmup_s": ended / 6.0, "interrupted": interrupted,
               "machine": {"cpus": os.cpu_count(), "load_average": list(os.getloadavg()),
                           "python": platform.python_version(), "psutil": procs.psutil is not None},
               "processes": list(processes.values()), "cameras": cameras, "gaps": gaps,
               # the rows again, now that every fault is complete (the rows printed live knew the faults so far)
               "intervals": [report.interval_row(r["interval"], r["start_s"], r["end_s"], data, faults)
                             for r in self.rows],
               "faults": faults, "states": states, "web": web,
               "serve": {"command": " ".join(serve.command), "exit_code": code, "stop_s": stop_s,
                         "workers_seen": sorted(procs_seen(data)), "workers_left": workers_left,
                         "summary": serve.stdout()},
               "soak_threads_left": soak_threads_left}
        doc["checks"] = report.evaluate(doc)
        doc["passed"] = all(c["passed"] for c in doc["checks"])
        return doc


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM to the soak acts as Ctrl-C (serve is stopped, the run so far reported):
    serve runs in a session of its own, so nothing else would stop it. Only on the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def procs_seen(data: dict[str, Any]) -> set[int]:
    return {p[2] for p in data["procs"] if p[1] != "serve"}


def _frames_seen(directory: Path) -> int | None:
    from streamad.stream.persistence import read_manifest

    try:
        return int(read_manifest(directory)["summary"]["frames_seen"])
    except Exception:  # noqa: BLE001 - check_resume reports a state that does not load
        return None
