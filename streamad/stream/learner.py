"""The background learner: admission work on its own thread, so that scoring never waits for it.

Ownership (docs/DESIGN.md section 3, "scoring and learning apart"):

- the **caller's thread** (the scorer) decides which frames are due and calls :meth:`Learner.submit`;
  it never touches the window's channels;
- the **learner thread** owns the channels: it takes the newest submitted job (an older one still
  waiting is replaced and counted as skipped, so the learner never falls behind the stream), runs
  the admission (association, trimming, reseeding) and publishes the nominal index's change as one
  atomic snapshot (:meth:`streamad.index.ivf.IVFIndex.apply`);
- what a reader may see: the index before or after an admission, never between; the list of
  completed admissions through :meth:`Learner.completed`;
- how it stops: :meth:`Learner.stop` lets the running admission finish, drops a waiting one and
  joins the thread; :meth:`Learner.pause` (a context manager) holds the learner between jobs, e.g.
  while the detector's state is saved;
- how it shares the cores: on Linux the thread runs at a lower scheduling priority (``nice``, 10 by
  default, the ``nice`` utility's own increment), so the scorer's threads take a core first and the
  learner runs on what they leave; and it uses at most ``duty`` of one core's time (CPU time, not wall
  time: an admission that waited for a core most of its time needs no rest after it).

An exception raised by an admission stops the learner; it is kept in :attr:`Learner.error` and
raised again by the next :meth:`submit` (a live loop counts it and goes on scoring with the index it has).

    >>> done = []
    >>> learner = Learner(lambda job: done.append(job), name="doc")
    >>> learner.submit(1), learner.wait_idle(5.0)      # (replaced a waiting job?, idle in time?)
    (False, True)
    >>> learner.completed(), done
    ([1], [1])
    >>> learner.stop(); learner.running
    False
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Learner", "LearnerError"]


class LearnerError(RuntimeError):
    """The background learner stopped on an exception (the original is the ``__cause__``)."""


class Learner:
    """One daemon thread applying ``admit(job)`` to the newest submitted job; see the module docstring.

    ``job_id(job)`` gives the number reported by :meth:`completed` (default: the job itself). ``duty``
    (0 < duty <= 1) is the largest share of one core the learner may use: after a job that used ``c``
    seconds of CPU time in ``t`` seconds it rests ``c / duty - t`` before the next (nothing when that is
    negative: the job waited for a core), leaving the cores to the scorer. ``nice`` (0-19) is added to
    the thread's scheduling niceness on Linux (elsewhere ignored; :attr:`nice_applied` says which).
    """

    def __init__(self, admit: Callable[[Any], Any], name: str = "streamad-learner",
                 job_id: Callable[[Any], int] | None = None, duty: float = 1.0, nice: int = 0) -> None:
        if not 0.0 < float(duty) <= 1.0:
            raise ValueError(f"Learner.duty must be in (0, 1], got {duty!r}")
        if not isinstance(nice, int) or isinstance(nice, bool) or not 0 <= nice <= 19:
            raise ValueError(f"Learner.nice must be an int in [0, 19], got {nice!r}")
        self.duty = float(duty)
        self.nice = nice
        self.nice_applied = False  # set by the thread once it lowered its own priority
        self.cpu_s = 0.0  # CPU seconds the admissions used (the thread's own clock)
        self._admit = admit
        self._job_id = job_id or (lambda job: job)
        self._cond = threading.Condition()
        self._pending: Any = None
        self._has_pending = False
        self._busy = False
        self._paused = 0
        self._stopping = False
        self._completed: list[int] = []
        self.error: BaseException | None = None
        self.admitted = 0  # jobs completed
        self.skipped = 0  # jobs replaced by a newer one before they started
        self.busy_s = 0.0  # seconds spent admitting
        self._started_at = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def submit(self, job: Any) -> bool:
        """Hand ``job`` to the learner; returns True when it replaced a job that had not started yet."""
        with self._cond:
            if self.error is not None:
                raise LearnerError(f"the background learner stopped: {self.error!r}") from self.error
            if self._stopping:
                raise LearnerError("the background learner was stopped")
            replaced = self._has_pending
            self.skipped += int(replaced)
            self._pending, self._has_pending = job, True
            self._cond.notify_all()
            return replaced

    def completed(self) -> list[int]:
        """Ids of the jobs completed since the previous call, oldest first."""
        with self._cond:
            out, self._completed = self._completed, []
            return out

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job is waiting or running (True), or ``timeout`` seconds passed (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: (not self._has_pending and not self._busy) or self.error is not None
                                       or not self._thread.is_alive(), timeout)

    @contextmanager
    def pause(self) -> Iterator[None]:
        """Hold the learner between jobs for the duration of the block (the running job finishes first)."""
        with self._cond:
            self._paused += 1
            self._cond.wait_for(lambda: not self._busy)
        try:
            yield
        finally:
            with self._cond:
                self._paused -= 1
                self._cond.notify_all()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Finish the running job, drop a waiting one and join the thread."""
        with self._cond:
            self._stopping = True
            if self._has_pending:
                self._pending, self._has_pending = None, False
                self.skipped += 1
            self._cond.notify_all()
        self._thread.join(timeout)

    def stats(self) -> dict[str, float]:
        """Admissions done and skipped, admissions per second since start, share of the time busy (wall
        clock) and of one core used (CPU time)."""
        elapsed = max(1e-9, time.perf_counter() - self._started_at)
        return {"admitted": self.admitted, "skipped": self.skipped, "admissions_per_s": self.admitted / elapsed,
                "busy": self.busy_s / elapsed, "cpu": self.cpu_s / elapsed}

    def _lower_priority(self) -> None:
        """Add ``nice`` to this thread's niceness (Linux: a thread's priority is its own; raising it needs
        no privilege). Elsewhere ``setpriority`` would change the whole process: left alone."""
        if self.nice <= 0 or not sys.platform.startswith("linux"):
            return
        tid = threading.get_native_id()
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + self.nice))
        except OSError:  # a sandbox that refuses it: the learner runs at the scorer's priority
            return
        self.nice_applied = True

    def _run(self) -> None:
        self._lower_priority()
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or (self._has_pending and not self._paused))
                if self._stopping:
                    self._cond.notify_all()
                    return
                job, self._pending, self._has_pending = self._pending, None, False
                self._busy = True
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                self._admit(job)
            except BaseException as exc:  # noqa: BLE001 - kept and raised again on the caller's thread
                with self._cond:
                    self.error, self._busy = exc, False
                    self._cond.notify_all()
                return
            with self._cond:
                took, used = time.perf_counter() - t0, time.thread_time() - c0
                self.busy_s += took
                self.cpu_s += used
                self.admitted += 1
                self._completed.append(int(self._job_id(job)))
                self._busy = False
                self._cond.notify_all()
                rest = used / self.duty - took
                if rest > 0:  # so that the learner uses at most `duty` of one core
                    self._cond.wait_for(lambda: self._stopping, rest)
