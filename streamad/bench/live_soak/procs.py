"""The processes of a running ``streamad serve``: which are its worker processes, and each one's resident
memory and threads. psutil when it is installed, else Linux's ``/proc``.

    >>> import os
    >>> me = sample(os.getpid())
    >>> me.pid == os.getpid(), me.rss_mib > 1, me.threads >= 1
    (True, True, True)
    >>> sample(2 ** 22 + 7) is None                      # no such process
    True
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from streamad.bench.live_soak.helper_thread import HelperThread

try:  # optional: the same figures, and not only on Linux
    import psutil
except ImportError:  # pragma: no cover - depends on the environment
    psutil = None

SPAWN_MARK = "multiprocessing.spawn"  # a worker's command line (serve starts its workers with spawn)


@dataclass(frozen=True)
class ProcSample:
    """One process at one moment: its ``pid``, resident memory (MiB) and thread count."""

    pid: int
    rss_mib: float
    threads: int


def _proc_status(pid: int) -> dict[str, str] | None:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
            return dict(line.rstrip("\n").split(":\t", 1) for line in fh if ":\t" in line)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def sample(pid: int) -> ProcSample | None:
    """``pid``'s resident memory and threads, or None when it is gone (or a zombie)."""
    if psutil is not None:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return ProcSample(pid, proc.memory_info().rss / 2 ** 20, proc.num_threads())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
    status = _proc_status(pid)
    if status is None or status.get("State", "").startswith("Z") or "VmRSS" not in status:
        return None
    return ProcSample(pid, int(status["VmRSS"].split()[0]) / 1024, int(status.get("Threads", "0")))


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    return sample(pid) is not None


def children(pid: int) -> list[int]:
    """The process ids whose parent is ``pid``, in ascending order."""
    if psutil is not None:
        try:
            return sorted(c.pid for c in psutil.Process(pid).children())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return []
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="utf-8") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                pass
    return sorted(out)


def command_line(pid: int) -> str:
    """``pid``'s command line ('' when it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        if psutil is not None:
            try:
                return " ".join(psutil.Process(pid).cmdline())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return ""


def workers(serve_pid: int) -> list[int]:
    """The worker processes of the serve process ``serve_pid`` (its children started by multiprocessing's
    spawn; multiprocessing's resource tracker is not one), running, in ascending order."""
    return [pid for pid in children(serve_pid) if SPAWN_MARK in command_line(pid) and alive(pid)]


class WorkerRoles:
    """Stable names for worker processes that come and go: the first ones found are ``w0``, ``w1``, ...
    in order of process id (serve starts worker K before K + 1); a process that replaces one that died (a
    restarted worker) takes its name.

        >>> roles = WorkerRoles()
        >>> roles.update([300, 200]), roles.update([200, 410]), roles.update([200]), roles.update([200, 520])
        ({200: 'w0', 300: 'w1'}, {200: 'w0', 410: 'w1'}, {200: 'w0'}, {200: 'w0', 520: 'w1'})
    """

    def __init__(self) -> None:
        self.by_pid: dict[int, str] = {}
        self._free: list[str] = []  # names of processes gone, for the ones that replace them
        self._count = 0

    def update(self, pids: list[int]) -> dict[int, str]:
        """The names of the running ``pids`` (new ones take the names of the ones gone, else new names)."""
        self._free += [name for pid, name in self.by_pid.items() if pid not in pids]
        self._free.sort(key=lambda n: int(n[1:]))
        current = {pid: name for pid, name in self.by_pid.items() if pid in pids}
        for pid in sorted(p for p in pids if p not in current):
            if self._free:
                current[pid] = self._free.pop(0)
            else:
                current[pid] = f"w{self._count}"
                self._count += 1
        self.by_pid = current
        return dict(sorted(current.items()))


@dataclass(frozen=True)
class ProcRecord:
    """One sample of one process: when (``t``, seconds on the soak's clock), its ``role`` (``serve``, ``w0``,
    ...), ``pid``, resident memory (MiB) and threads."""

    t: float
    role: str
    pid: int
    rss_mib: float
    threads: int


class ProcessSampler(HelperThread):
    """Samples the serve process ``serve_pid`` and its worker processes every ``every`` seconds, on a thread
    of its own (``streamad-soak-procs``), which owns nothing but its records. ``records()`` copies them
    (any thread); ``stop()`` ends and joins the thread (safe to call twice)."""

    def __init__(self, serve_pid: int, clock: Callable[[], float], every: float = 5.0) -> None:
        if not every > 0:
            raise ValueError(f"ProcessSampler.every must be > 0 seconds, got {every!r}")
        self.serve_pid, self.clock, self.every = serve_pid, clock, float(every)
        self.roles = WorkerRoles()
        self.seen: set[int] = set()  # every worker pid ever sampled
        self._records: list[ProcRecord] = []
        self._lock = threading.Lock()
        self._init_thread("streamad-soak-procs")

    def sample_now(self) -> list[ProcRecord]:
        """Sample every process once (the thread does this every ``every`` seconds); returns the samples."""
        t = self.clock()
        named = [(self.serve_pid, "serve")] + [(pid, role) for pid, role in
                                               self.roles.update(workers(self.serve_pid)).items()]
        out = []
        for pid, role in named:
            s = sample(pid)
            if s is not None:
                out.append(ProcRecord(t, role, pid, s.rss_mib, s.threads))
        with self._lock:
            self._records.extend(out)
            self.seen.update(pid for pid, role in named if role != "serve")
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample_now()
            self._stop.wait(self.every)

    def records(self) -> list[ProcRecord]:
        with self._lock:
            return list(self._records)

