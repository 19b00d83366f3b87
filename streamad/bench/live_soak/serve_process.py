"""The ``streamad serve`` that a soak runs: its configuration file, and the child process with its output.

serve runs exactly as a user runs it (``python -m streamad serve CONFIG --quiet``; with the stand-in
extractor, ``python -m streamad.cli.standin_serve serve CONFIG --quiet``), from the same streamad as the
soak, in a session of its own: a terminal's Ctrl-C reaches the soak, which stops serve itself (SIGTERM:
every camera saves its state). Its stderr (the events: a loop that failed, a detector reopened, a stream
lost) is read line by line on a thread (``streamad-soak-serve-log``) that stamps each line with the
soak's clock and copies it to a log file; its stdout (the summary) goes to a file.

    >>> print(serve_toml([SoakCamera("cam0", "demo:0@2", 0)], workers=2, worker_timeout_s=30, preset="fast",
    ...                  device="cpu", publish="tcp://127.0.0.1:5599", http="127.0.0.1:8099", save_every=100))
    ... # doctest: +NORMALIZE_WHITESPACE
    [serve]
    workers = 2
    worker_timeout_s = 30.0
    device = "cpu"
    [publisher]
    address = "tcp://127.0.0.1:5599"
    [web]
    address = "127.0.0.1:8099"
    <BLANKLINE>
    [[cameras]]
    name = "cam0"
    source = "demo:0@2"
    preset = "fast"
    learning = "background"
    state = "states/cam0"
    save_every = 100
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import streamad


@dataclass(frozen=True)
class SoakCamera:
    """One camera of the soak: its ``name``, serve's ``source`` for it, the ``seed`` of the demo scene it
    shows, and whether it is the network camera (:class:`~streamad.bench.live_soak.camera.DemoCamera`)."""

    name: str
    source: str
    seed: int
    network: bool = False


def serve_toml(cameras: list[SoakCamera], *, workers: int, worker_timeout_s: float, preset: str, device: str,
               publish: str, http: str, save_every: int, states: str = "states") -> str:
    """serve's configuration for the soak: the cameras in ``workers`` worker processes with background
    learning and a state folder each (under ``states``, relative to the file), the publisher, the page."""
    head = (f'[serve]\nworkers = {workers}\nworker_timeout_s = {float(worker_timeout_s)}\ndevice = "{device}"\n'
            f'[publisher]\naddress = "{publish}"\n[web]\naddress = "{http}"\n')
    return head + "".join(f'\n[[cameras]]\nname = "{c.name}"\nsource = "{c.source}"\npreset = "{preset}"\n'
                          f'learning = "background"\nstate = "{states}/{c.name}"\nsave_every = {save_every}\n'
                          for c in cameras)


class ServeProcess:
    """``streamad serve config`` as a child process (see the module docstring); ``standin``: with the
    stand-in extractor instead of the backbone. ``lines`` are its stderr lines, (time, text), as they came.
    ``stop()`` sends SIGTERM and waits; ``close()`` (or the ``with`` block's end) kills whatever of its
    session is left and joins the reader thread."""

    def __init__(self, config: Path, clock: Callable[[], float], *, log: Path, out: Path,
                 standin: bool = False) -> None:
        self.config, self.clock = Path(config).resolve(), clock
        self.log_path, self.out_path = Path(log), Path(out)
        module = "streamad.cli.standin_serve" if standin else "streamad"
        self.command = [sys.executable, "-m", module, "serve", str(self.config), "--quiet"]
        self.returncode: int | None = None
        self._lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> ServeProcess:
        root = str(Path(streamad.__file__).resolve().parents[1])  # the streamad this soak runs: serve runs it too
        loopback = ",".join(p for p in ("127.0.0.1,localhost", os.environ.get("no_proxy")) if p)
        env = dict(os.environ, PYTHONUNBUFFERED="1", no_proxy=loopback, NO_PROXY=loopback,  # the network camera
                   PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
        with open(self.out_path, "w", encoding="utf-8") as out:
            self._proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.PIPE, text=True, env=env,
                                          start_new_session=True, cwd=self.config.parent)
        self._reader = threading.Thread(target=self._read, name="streamad-soak-serve-log", daemon=True)
        self._reader.start()
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None, "start() first"
        return self._proc.pid

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        with open(self.log_path, "w", encoding="utf-8") as log:
            for line in self._proc.stderr:
                t = self.clock()
                with self._lock:
                    self._lines.append((t, line.rstrip("\n")))
                log.write(f"{t:10.3f} {line}")
                log.flush()

    def lines(self, after: float = float("-inf")) -> list[tuple[float, str]]:
        """stderr lines that came after ``after`` (the soak's clock)."""
        with self._lock:
            return [(t, text) for t, text in self._lines if t > after]

    def wait_line(self, match: Callable[[str], bool], *, after: float, timeout: float,
                  stop: threading.Event | None = None) -> tuple[float, str] | None:
        """The first stderr line after ``after`` that ``match`` accepts, waiting up to ``timeout`` seconds
        (None: none came, serve ended, or ``stop`` was set)."""
        end = time.monotonic() + timeout
        while True:
            for t, text in self.lines(after):
                if match(text):
                    return t, text
            if time.monotonic() >= end or not self.running or (stop is not None and stop.is_set()):
                return None
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 120.0) -> int | None:
        """SIGTERM (serve stops every camera after its frame and saves every state), then wait up to
        ``timeout`` seconds; its exit code (None: it did not end, and was killed)."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        return self.returncode

    def kill(self) -> None:
        """SIGKILL to serve's whole session (serve and its workers)."""
        if self._proc is None:
            return
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.returncode = self._proc.wait(10.0)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL ends any process
            pass

    def stdout(self) -> str:
        try:
            return self.out_path.read_text(encoding="utf-8")
        except OSError:
            return ""

    def close(self) -> None:
        """Kill what is left of serve's session (nothing after a clean stop) and join the reader."""
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, 0)
                left = True
            except (ProcessLookupError, PermissionError):
                left = False
            if left or self._proc.poll() is None:
                self.kill()
            if self._proc.stderr is not None and self._reader is not None:
                self._reader.join(10.0)
                self._proc.stderr.close()

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
