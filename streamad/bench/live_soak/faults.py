"""The faults a soak injects into a running ``streamad serve``, one after the other, and how each went.

===========  =========================================================================================
kill         a worker process killed with SIGKILL
stop         a worker process stopped with SIGSTOP (hung: alive, answering nothing); serve's request
             deadline (``[serve] worker_timeout_s``) must notice it, kill it and restart it
source       the network camera (:class:`~streamad.bench.live_soak.camera.DemoCamera`) off the network
             for a while, then back: its live source must reconnect, its loop go on, and count it
subscriber   the soak's subscriber disconnects for a while and reconnects: the messages published
             meanwhile are the gap in its sequence numbers at the first message after its return
save         the worker saving a camera's state killed with SIGKILL in the middle of the save: the
             previous state must stay loadable (serve's fresh worker resumes from it)
===========  =========================================================================================

Each fault gives a :class:`FaultRecord`: when it was injected, when it was detected (serve's own report
on its stderr: the camera loop that failed with ``WorkerDied``, the source's ``stream lost``; for the
subscriber, the sequence gap it finds) and when it was over (frames of every camera it touched arriving
again), against the bounds it states (:func:`bounds`), and what must also hold (``required``: a save
really interrupted, the previous state loading, the other cameras going on, ...).

:class:`FaultRunner` runs a plan (fault, time) on a thread of its own (``streamad-soak-faults``); a
fault whose time comes after the run's last start time is recorded as not injected.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamad.runtime.serve.workers import POLL_S
from streamad.bench.live_soak import procs
from streamad.bench.live_soak.camera import DemoCamera
from streamad.bench.live_soak.listener import MessageCounter
from streamad.bench.live_soak.serve_process import ServeProcess, SoakCamera

FAULTS = ("kill", "stop", "source", "subscriber", "save")
SLACK_S = 5.0           # a loaded machine: the camera's next request may wait on a backbone batch this long
RESTART_S = 10.0 + 30.0  # the fleet's back-off (at most 10 s), then a fresh worker's start and the state's load
SOURCE_BACKOFF_S = 10.0 + 5.0  # the live source's back-off cap, then its open timeout
GRACE_S = 2.0           # a gap seen this long after a fault was over still belongs to it
# serve's report that a camera lost its worker: its loop failed, or (in the middle of a save) its save did
LOST = re.compile(r"^streamad serve: (\S+): (?:the loop failed \((.*)\); reopening|cannot save the state to .*?: "
                  r"(worker process .*); the loop goes on)")


def parse_faults(text: str) -> tuple[str, ...]:
    """The faults a ``--faults`` value names (``all``, ``none``, or a comma-separated list), in plan order.

    >>> parse_faults("save,kill"), parse_faults("all") == FAULTS, parse_faults("none")
    (('kill', 'save'), True, ())
    >>> parse_faults("kill,reboot")
    Traceback (most recent call last):
    ...
    ValueError: unknown fault 'reboot' (known: kill, stop, source, subscriber, save, or all, none)
    """
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return FAULTS
    if names in ([], ["none"]):
        return ()
    for n in names:
        if n not in FAULTS:
            raise ValueError(f"unknown fault {n!r} (known: {', '.join(FAULTS)}, or all, none)")
    return tuple(f for f in FAULTS if f in names)


def bounds(name: str, *, fps: float, worker_timeout_s: float, source_down_s: float,
           subscriber_away_s: float) -> tuple[float, float]:
    """(detected within, over within) seconds of the injection, for fault ``name``.

    >>> bounds("stop", fps=2.0, worker_timeout_s=30.0, source_down_s=20.0, subscriber_away_s=10.0)
    (36.0, 76.0)
    """
    frame = 1.0 / fps
    if name in ("kill", "save"):
        detect = frame + POLL_S + SLACK_S
        return detect, detect + RESTART_S
    if name == "stop":
        detect = worker_timeout_s + POLL_S + frame + SLACK_S
        return detect, detect + RESTART_S
    if name == "source":
        return frame + SLACK_S, source_down_s + SOURCE_BACKOFF_S + frame + SLACK_S
    if name == "subscriber":
        return subscriber_away_s + SLACK_S, subscriber_away_s + SLACK_S
    raise ValueError(f"unknown fault {name!r}")


@dataclass
class FaultRecord:
    """How one fault went (times in seconds on the soak's clock; None: it did not happen)."""

    name: str
    target: str = ""
    cameras: list[str] = field(default_factory=list)
    injected_s: float | None = None
    detected_s: float | None = None
    recovered_s: float | None = None
    detect_bound_s: float = 0.0
    recover_bound_s: float = 0.0
    how: str = ""
    required: dict[str, bool] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FaultContext:
    """What the faults act on and watch: the clock, serve, the subscriber, the cameras (in serve's order) and
    the number of worker processes (serve puts camera i on worker i % workers), the states folder, the
    network camera, the settings that bound them, a seeded generator, ``load_state`` (a copy of a state
    folder loaded; returns its frames seen, raises if it cannot), the stop event, where lines go
    (``emit``) and the run's start on the clock (``origin``, for those lines)."""

    clock: Callable[[], float]
    serve: ServeProcess
    counter: MessageCounter
    cameras: list[SoakCamera]
    workers: int
    states: Path
    network: DemoCamera | None
    fps: float
    worker_timeout_s: float
    save_every: int
    source_down_s: float
    subscriber_away_s: float
    rng: np.random.Generator
    load_state: Callable[[Path], int]
    stop: threading.Event = field(default_factory=threading.Event)
    emit: Callable[[str], None] = lambda line: None
    origin: float = 0.0  # the run's start on the clock (for the lines emitted)

    def record(self, name: str) -> FaultRecord:
        detect, recover = bounds(name, fps=self.fps, worker_timeout_s=self.worker_timeout_s,
                                 source_down_s=self.source_down_s, subscriber_away_s=self.subscriber_away_s)
        return FaultRecord(name, detect_bound_s=detect, recover_bound_s=recover)

    def pick_worker(self) -> int | None:
        pids = procs.workers(self.serve.pid)
        return None if not pids else int(self.rng.choice(pids))


# -- the worker faults ----------------------------------------------------------------------------------


def _lost_worker(ctx: FaultContext, pid: int, number: int | None, after: float) -> dict[str, tuple[float, str]]:
    """Cameras that serve reported losing worker ``pid`` (worker ``number``): their loop failed with
    WorkerDied, or a save they asked for did, naming the pid or the worker's restart: (when, why)."""
    marks = [f"(pid {pid})"] + ([] if number is None else [f"worker process {number} was restarted"])
    out: dict[str, tuple[float, str]] = {}
    for t, text in ctx.serve.lines(after):
        m = LOST.match(text)
        why = m and (m.group(2) or m.group(3))
        if m and why and any(mark in why for mark in marks) and m.group(1) not in out:
            out[m.group(1)] = (t, why)
    return out


def _worker_down(ctx: FaultContext, rec: FaultRecord, pid: int, t: float) -> None:
    """Serve's detection of worker ``pid``'s fault (injected at ``t``) and its cameras' recovery: every
    camera of that worker (camera i is on worker i % workers) reported losing it and delivered a frame
    after that."""
    end = t + rec.detect_bound_s + 30.0
    while not (lost := _lost_worker(ctx, pid, None, t)) and ctx.clock() < end and not ctx.stop.is_set():
        time.sleep(0.05)
    if not lost:
        rec.notes.append(f"serve reported no camera losing worker pid {pid}")
        return
    first = min(lost, key=lambda cam: lost[cam][0])
    rec.detected_s, rec.how = lost[first]
    m = re.search(rf"worker process (\d+) \(pid {pid}\)", rec.how)
    number = int(m.group(1)) if m else None
    n = min(ctx.workers, len(ctx.cameras))
    mine = [c.name for i, c in enumerate(ctx.cameras) if number is not None and i % n == number] or [first]
    rec.cameras = mine
    end = t + rec.recover_bound_s + 30.0
    while ctx.clock() < end and not ctx.stop.is_set():
        lost = _lost_worker(ctx, pid, number, t)
        back = [ctx.counter.first_frame_after(cam, lost[cam][0]) if cam in lost else None for cam in mine]
        if all(v is not None for v in back):
            rec.recovered_s = max(v for v in back if v is not None)
            break
        time.sleep(0.1)
    if rec.recovered_s is None:
        rec.notes.append("not every camera of the worker reported losing it and delivered again: "
                         + ", ".join(c for c in mine if c not in _lost_worker(ctx, pid, number, t)))
    until = rec.recovered_s if rec.recovered_s is not None else ctx.clock()
    went_on = {}
    for cam in (c.name for c in ctx.cameras if c.name not in mine):
        after = ctx.counter.first_frame_after(cam, t)
        went_on[cam] = after is not None and after <= until
    rec.extra["others_went_on"] = went_on
    rec.required["the other workers' cameras went on"] = all(went_on.values())
    rec.required["the faulty worker is gone"] = not procs.alive(pid)


def _signal_worker(ctx: FaultContext, name: str, sig: signal.Signals) -> tuple[FaultRecord, int | None]:
    """The fault record of ``name`` and the worker sent ``sig`` (None, noted, when there is none)."""
    rec = ctx.record(name)
    pid = ctx.pick_worker()
    if pid is None:
        rec.notes.append(f"no worker process to {name}")
        return rec, None
    rec.target = f"worker pid {pid}"
    os.kill(pid, sig)
    rec.injected_s = ctx.clock()
    return rec, pid


def inject_kill(ctx: FaultContext) -> FaultRecord:
    """SIGKILL to a worker process."""
    rec, pid = _signal_worker(ctx, "kill", signal.SIGKILL)
    if pid is not None:
        _worker_down(ctx, rec, pid, rec.injected_s)
    return rec


def inject_stop(ctx: FaultContext) -> FaultRecord:
    """SIGSTOP to a worker process: serve's request deadline must notice, kill and restart it."""
    rec, pid = _signal_worker(ctx, "stop", signal.SIGSTOP)
    if pid is None:
        return rec
    try:
        _worker_down(ctx, rec, pid, rec.injected_s)
    finally:
        if procs.alive(pid):  # serve did not end it: do not leave a stopped process behind
            os.kill(pid, signal.SIGKILL)
            rec.notes.append(f"serve left the stopped worker {pid} alive: the soak killed it")
    rec.required["noticed by serve's request deadline"] = "did not answer" in rec.how
    return rec


# -- the network camera -----------------------------------------------------------------------------------


def inject_source(ctx: FaultContext) -> FaultRecord:
    """The network camera off the network for ``source_down_s`` seconds, then back."""
    rec = ctx.record("source")
    cam = next((c for c in ctx.cameras if c.network), None)
    if cam is None or ctx.network is None:
        rec.notes.append("no network camera in this soak")
        return rec
    rec.target, rec.cameras = f"{cam.name} ({ctx.network.url})", [cam.name]
    prefix = f"streamad serve: {cam.name}: "
    before = [s for s in ctx.counter.statuses() if s.camera == cam.name]
    failures0 = before[-1].failures if before else 0
    reconnects0 = before[-1].reconnects if before else 0
    t = ctx.clock()
    ctx.network.down()
    rec.injected_s = t
    lost = ctx.serve.wait_line(lambda s: s.startswith(prefix) and "stream lost" in s, after=t,
                               timeout=min(ctx.source_down_s, rec.detect_bound_s), stop=ctx.stop)
    if lost is not None:
        rec.detected_s, rec.how = lost[0], lost[1][len(prefix):]
    ctx.stop.wait(max(0.0, t + ctx.source_down_s - ctx.clock()))
    ctx.network.up()
    rec.extra["back_on_network_s"] = ctx.clock()
    if lost is None:  # noticed late (or never): look again now that the camera is back
        lost = ctx.serve.wait_line(lambda s: s.startswith(prefix) and ("stream lost" in s or "cannot open" in s),
                                   after=t, timeout=5.0, stop=ctx.stop)
        if lost is not None:
            rec.detected_s, rec.how = lost[0], lost[1][len(prefix):]
    back = ctx.serve.wait_line(lambda s: s.startswith(prefix) and "reconnected" in s, after=t,
                               timeout=rec.recover_bound_s + 30.0, stop=ctx.stop)
    if back is None:
        rec.notes.append("the source never reported a reconnection")
        return rec
    end = ctx.clock() + 30.0
    while ctx.clock() < end and not ctx.stop.is_set():
        rec.recovered_s = ctx.counter.first_frame_after(cam.name, back[0])
        if rec.recovered_s is not None:
            break
        time.sleep(0.1)
    counted = None
    end = ctx.clock() + 5.0  # the camera's next status message (once a second) carries the counters
    while ctx.clock() < end and not ctx.stop.is_set():
        after = [s for s in ctx.counter.statuses() if s.camera == cam.name and s.t > (rec.recovered_s or t)]
        if after:
            counted = (after[-1].failures - failures0, after[-1].reconnects - reconnects0)
            break
        time.sleep(0.2)
    rec.extra["source_failures_counted"], rec.extra["reconnects_counted"] = counted or (0, 0)
    loop_failed = [text for _, text in ctx.serve.lines(t) if text.startswith(prefix + "the loop failed")]
    rec.required["the camera's loop went on (no restart)"] = not loop_failed
    rec.required["failures and the reconnection counted"] = counted is not None and counted[0] >= 1 and counted[1] >= 1
    return rec


# -- the subscriber ---------------------------------------------------------------------------------------


def inject_subscriber(ctx: FaultContext) -> FaultRecord:
    """The soak's subscriber away for ``subscriber_away_s`` seconds, then back."""
    rec = ctx.record("subscriber")
    rec.target, rec.cameras = "the soak's subscriber", [c.name for c in ctx.cameras]
    rec.injected_s = ctx.clock()
    away = ctx.counter.disconnect(ctx.subscriber_away_s)
    if away is None:
        rec.notes.append("the subscriber did not come back")
        return rec
    rec.extra["left_s"], rec.extra["back_s"] = away.left, away.back
    end = away.back + SLACK_S + 30.0
    while ctx.clock() < end and not ctx.stop.is_set():
        gaps = [g for g in ctx.counter.gaps() if g.t >= away.back]
        back = {c.name: ctx.counter.first_frame_after(c.name, away.back) for c in ctx.cameras}
        if gaps and rec.detected_s is None:
            rec.detected_s = min(g.t for g in gaps)
            rec.how = f"sequence gap at the first messages after the return ({gaps[0].camera} {gaps[0].kind})"
        if rec.detected_s is not None and all(v is not None for v in back.values()):
            rec.recovered_s = max(v for v in back.values() if v is not None)
            break
        time.sleep(0.1)
    window_end = (rec.recovered_s or ctx.clock()) + GRACE_S
    rec.extra["missed"] = sum(g.missed for g in ctx.counter.gaps() if g.t >= away.back and g.since <= window_end)
    return rec


# -- a save killed half-way --------------------------------------------------------------------------------


def _saving(states: Path, camera: str, workers: set[int]) -> tuple[Path, int] | None:
    """A save of ``camera``'s state in progress (its temporary folder and the saving worker), if any."""
    prefix = f".{camera}.saving-"
    try:
        entries = list(os.scandir(states))
    except FileNotFoundError:
        return None
    for entry in entries:
        if entry.name.startswith(prefix):
            pid = entry.name[len(prefix):].split("-", 1)[0]
            if pid.isdigit() and int(pid) in workers:
                return Path(entry.path), int(pid)
    return None


def inject_save(ctx: FaultContext, attempts: int = 3) -> FaultRecord:
    """SIGKILL to the worker saving a camera's state, in the middle of the save (up to ``attempts`` tries:
    a save that completes between being seen and the kill makes that try a plain kill)."""
    rec = ctx.record("save")
    choices = [c for c in ctx.cameras if not c.network] or ctx.cameras
    cam = choices[int(ctx.rng.integers(len(choices)))]
    rec.target = f"the save of {cam.name}'s state"
    wait = 2.0 * ctx.save_every / ctx.fps + 60.0
    for attempt in range(1, attempts + 1):
        end, found, workers, listed = ctx.clock() + wait, None, set(), float("-inf")
        while found is None and ctx.clock() < end and not ctx.stop.is_set():
            if ctx.clock() - listed > 0.5:  # a restarted worker saves too
                workers, listed = set(procs.workers(ctx.serve.pid)), ctx.clock()
            found = _saving(ctx.states, cam.name, workers)
            if found is None:
                time.sleep(0.001)
        if found is None:
            rec.notes.append(f"no save of {cam.name} seen within {wait:.0f} s")
            return rec
        tmp, pid = found
        os.kill(pid, signal.SIGKILL)
        rec.injected_s = ctx.clock()
        rec.target = f"the save of {cam.name}'s state (worker pid {pid})"
        interrupted = tmp.exists() or (ctx.states / f".{cam.name}.previous").exists()
        rec.extra["attempts"] = attempt
        if interrupted:
            break
        rec.notes.append(f"try {attempt}: the save completed before the kill landed (a plain kill)")
        _worker_down(ctx, rec, pid, rec.injected_s)
        rec.detected_s = rec.recovered_s = None
        rec.required.clear()
    rec.required["a save was interrupted"] = interrupted
    try:
        rec.extra["previous_state_frames"] = ctx.load_state(ctx.states / cam.name)
        rec.required["the previous state loads"] = True
    except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
        rec.extra["previous_state_error"] = f"{type(exc).__name__}: {exc}"
        rec.required["the previous state loads"] = False
    _worker_down(ctx, rec, pid, rec.injected_s)
    resumed = ctx.serve.wait_line(lambda s: s.startswith(f"streamad serve: {cam.name}: resumed from"),
                                  after=rec.injected_s, timeout=5.0, stop=ctx.stop)
    if resumed is not None:
        m = re.search(r"resumed from .*: (\d+) frames seen", resumed[1])
        rec.extra["serve_resumed_frames"] = int(m.group(1)) if m else None
    return rec


INJECT: dict[str, Callable[[FaultContext], FaultRecord]] = {
    "kill": inject_kill, "stop": inject_stop, "source": inject_source, "subscriber": inject_subscriber,
    "save": inject_save}


class FaultRunner:
    """Injects ``plan`` ((fault, time on the soak's clock), in order) one fault after the other on a thread
    of its own (``streamad-soak-faults``): each waits for its time and for the one before to be over (and
a second more); one
    whose time comes after ``latest_start`` is recorded as not injected. ``records()`` reads what happened
    (any thread); ``stop()`` sets ``ctx.stop`` (a fault in progress ends its waiting) and joins."""

    def __init__(self, plan: list[tuple[str, float]], ctx: FaultContext, latest_start: float) -> None:
        self.plan, self.ctx, self.latest_start = plan, ctx, latest_start
        self._records: list[FaultRecord] = []
        self._current: FaultRecord | None = None  # the fault in progress, as far as known
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="streamad-soak-faults", daemon=True)

    def start(self) -> FaultRunner:
        self._thread.start()
        return self

    def _run(self) -> None:
        ctx = self.ctx
        done = float("-inf")  # when the fault before was over: the next one waits a second more
        for name, at in self.plan:
            ctx.stop.wait(max(0.0, max(at, done + 1.0) - ctx.clock()))
            if ctx.stop.is_set():
                return
            if ctx.clock() > self.latest_start:
                rec = ctx.record(name)
                rec.notes.append("not injected: the run ended first (the faults before took too long)")
            else:
                ctx.emit(f"fault: {name} at {ctx.clock() - ctx.origin:.1f} s")
                current = ctx.record(name)
                current.injected_s, current.cameras = ctx.clock(), [c.name for c in ctx.cameras]
                with self._lock:
                    self._current = current
                try:
                    rec = INJECT[name](ctx)
                except Exception as exc:  # noqa: BLE001 - a fault that cannot run is reported, not fatal
                    rec = ctx.record(name)
                    rec.notes.append(f"could not inject: {type(exc).__name__}: {exc}")
                ctx.emit(f"fault: {name}: " + fault_line(rec.to_dict()))
            done = ctx.clock()
            with self._lock:
                self._records.append(rec)
                self._current = None

    def records(self, in_progress: bool = False) -> list[FaultRecord]:
        """The faults done; with ``in_progress``, also the one under way (its start, every camera, no
        detection yet: enough to place it in an interval and to explain a gap it causes meanwhile)."""
        with self._lock:
            return self._records + ([self._current] if in_progress and self._current is not None else [])

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def stop(self, timeout: float = 60.0) -> None:
        self.ctx.stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)


def fault_line(rec: dict[str, Any]) -> str:
    """One line on how a fault went.

    >>> fault_line({"injected_s": 10.0, "detected_s": 10.4, "recovered_s": 14.0, "detect_bound_s": 6.0,
    ...             "recover_bound_s": 46.0, "cameras": ["cam0", "cam2"], "required": {}, "notes": []})
    'detected after 0.4 s (bound 6.0 s), over after 4.0 s (bound 46.0 s); cameras cam0, cam2'
    """
    if rec.get("injected_s") is None:
        return "not injected" + (f" ({'; '.join(rec['notes'])})" if rec.get("notes") else "")
    t = rec["injected_s"]
    det = "not detected" if rec.get("detected_s") is None else f"detected after {rec['detected_s'] - t:.1f} s"
    rev = "not over" if rec.get("recovered_s") is None else f"over after {rec['recovered_s'] - t:.1f} s"
    text = (f"{det} (bound {rec['detect_bound_s']:.1f} s), {rev} (bound {rec['recover_bound_s']:.1f} s)"
            + (f"; cameras {', '.join(rec['cameras'])}" if rec.get("cameras") else ""))
    failed = [k for k, v in rec.get("required", {}).items() if not v]
    return text + (f"; NOT: {', '.join(failed)}" if failed else "")
