"""Per-camera detection in worker processes, behind the one shared backbone (``[serve] workers``).

With threads only (``workers = 0``) every camera's scoring and learning share the serve process's
GIL with the backbone's operator dispatch, so cameras wait on each other. With ``workers = N`` each
camera's :class:`~streamad.stream.detector.StreamDetector` (window, channels, index, learner,
decisions, state) lives in one of N worker processes instead; the serve process keeps the sources,
the backbone, the loops, events, publisher, status and page. The seam is :class:`RemoteDetector`: it
has what :func:`~streamad.runtime.live.run_watch`, :class:`~streamad.runtime.live.StateSaver` and
:class:`~streamad.runtime.serve.fleet.Fleet` use of a detector (``process``, ``save``, ``close``,
``nominal_count``, ``extractor``), so none of them changes.

Who owns what:

- serve process, camera thread: reads its source, gets the frame's descriptors from the shared
  backbone (its ``extractor``, a :class:`~streamad.runtime.serve.batcher.BatchedExtractor`), sends
  them to its worker and waits for the :class:`~streamad.results.FrameResult` (score, threshold,
  p-value, heatmap, flags, admissions completed) and the nominal patch count;
- worker process (``streamad-worker-K``, started with ``spawn``: no fork after threads and torch):
  owns the detectors of its cameras (camera ``i`` goes to worker ``i % N``) and their learner
  threads; it serves one request at a time, from one duplex pipe, in the order they come. It runs
  torch and BLAS on one thread each and never loads the backbone (its detectors get a stand-in
  extractor that only tells the grid, input size, centre crop and dimension);
- the pipe is multiprocessing's own channel (a socket pair that only the serve process and the worker
  it spawned hold; it carries pickled requests and answers, never anything from the network or a
  file); a worker's error crosses it as its class name and message only, and is raised again in the
  serve process as the same built-in or streamad error, else as a RuntimeError that names it;
- a :class:`_Worker`'s lock (serve process) covers one request and its answer on that pipe, so the
  cameras of one worker take turns;
- serve process, sender thread (``streamad-send-K``, one per worker process, a :class:`_Sender`):
  writes that worker's requests to its pipe, so that the camera thread waits for the write with the
  request's deadline; it starts with the process and ends when the process does (or is shut down);
- serve process, receiver thread (``streamad-recv-K``, one per worker process, a :class:`_Receiver`):
  reads that worker's answers whole from its pipe into a queue, so that the camera thread waits for a
  whole answer with the request's deadline (a worker stopped half-way through writing one leaves a
  message a plain read would wait on for ever); it ends at the pipe's end-of-file, which the worker's
  end (exit, kill) brings, and is joined before the pipe is closed.

Stopping: Ctrl-C / SIGTERM / ``Fleet.stop`` stop the loops in the serve process as before; each
loop's final ``StateSaver.finish`` asks the worker to save that camera's state (the save runs in the
worker), then ``RemoteDetector.close`` stops its learner and :meth:`WorkerPool.close` tells each
worker to quit, waits (``timeout``) and kills what is left. Workers ignore SIGINT (a terminal's Ctrl-C
reaches the whole process group; the serve process decides); after a SIGTERM of their own they serve
on for ``TERM_GRACE_S`` seconds so that the serve process can still save every state, then quit. A
worker whose serve process is gone (its pipe reads end-of-file) stops its learners and exits.

A worker that dies (killed, crashed) is noticed by the first request that finds its pipe closed: that
camera's loop fails with :class:`WorkerDied`, which the fleet reports and handles like any loop
failure (back-off, reopen the source, run again). Every other camera of that worker fails the same
way at its next request. The next request after that starts a fresh worker process (once per
worker) and reopens the camera's detector there: from its state folder when it has one, else fresh.
No request waits on a dead worker: the pipe is polled and the process checked every half second.
A worker that hangs without dying (stopped with SIGSTOP, deadlocked, stuck in a call) answers no
request: a request unanswered for ``request_timeout`` seconds (``[serve] worker_timeout_s``, default
:data:`REQUEST_TIMEOUT_S`; opening a detector, which a fresh worker's imports and a large state's load
may make slow, gets at least :data:`OPEN_TIMEOUT_S`) kills the worker (SIGKILL) and fails with :class:`WorkerDied`, so a hung
worker is noticed within ``request_timeout + POLL_S`` seconds of its cameras' next request (the deadline
covers sending the request too: a frame's descriptors exceed a pipe's buffer, which a stopped worker
never drains; and receiving the answer: a worker stopped half-way through writing one) and then
handled as a dead one (the other cameras of that worker wait on its lock meanwhile, no longer). Requests are numbered, so the answer to one abandoned half-way
(a second Ctrl-C on the main thread) is skipped, never taken for the next one's.

Worker processes start with ``spawn``, which imports the main module of the program again: a script
that runs ``serve`` with workers needs the usual ``if __name__ == "__main__":`` guard (``streamad``
and ``python -m streamad`` have it).
"""

from __future__ import annotations

import dataclasses
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

import numpy as np

from streamad.config import StreamConfig
from streamad.results import FrameResult
from streamad.runtime.heap import HeapTrimmer
from streamad.stream.detector import DescribedFrame, extract_descriptors
from streamad.vision.frames import StreamFrameSize

if TYPE_CHECKING:
    from streamad.stream.detector import Extractor, StreamDetector

EventSink = Callable[[str], None]
TERM_GRACE_S = 10.0  # a worker that got SIGTERM serves this long more (the final saves), then quits
POLL_S = 0.5         # how often a waiting request checks that its worker still lives
REQUEST_TIMEOUT_S = 30.0  # a worker that answers no request for this long is taken as hung: killed, restarted
OPEN_TIMEOUT_S = 120.0    # at least this long for "open": a fresh worker's imports and a large state's load


class WorkerDied(RuntimeError):
    """The worker process that held a camera's detector ended; the detector's unsaved work is lost."""


@dataclass(frozen=True)
class DetectorSpec:
    """What a worker needs to build a camera's detector: the camera's ``name``, its ``config`` (a
    ``StreamConfig``), the extractor's ``grid``, ``image_size``, ``center_crop`` and ``dim`` (None: not
    told), and its ``state`` folder (resumed at open; ``state_reset`` moves an unusable one aside)."""

    name: str
    config: StreamConfig
    grid: tuple[int, int]
    image_size: tuple[int, int]
    center_crop: float = 1.0
    dim: int | None = None
    state: str | None = None
    state_reset: bool = False

    @classmethod
    def of(cls, name: str, config: StreamConfig, extractor: Extractor, state: str | None = None,
           state_reset: bool = False) -> DetectorSpec:
        """The spec of a camera whose descriptors come from ``extractor`` (read, never called)."""
        dim = getattr(extractor, "dim", None)
        return cls(name, config, tuple(int(v) for v in extractor.grid), tuple(int(v) for v in extractor.image_size),
                   float(getattr(extractor, "center_crop", 1.0)),
                   int(dim) if isinstance(dim, (int, np.integer)) else None, state, state_reset)


class _Described:
    """The worker's extractor: what the detector reads of the real one; descriptors arrive computed."""

    def __init__(self, spec: DetectorSpec) -> None:
        self.grid, self.image_size, self.center_crop = spec.grid, spec.image_size, spec.center_crop
        if spec.dim is not None:
            self.dim = spec.dim

    def __call__(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        raise RuntimeError("a worker's detector gets descriptors from the serve process's backbone")


# -- the worker process ----------------------------------------------------------------------------------


def _limit_threads() -> None:
    """One thread for torch (if it is ever imported here) and for BLAS / OpenMP: the cores are shared."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)  # in force until changed
    except ImportError:  # pragma: no cover - a dependency
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


class _Host:
    """The detectors of one worker process, by camera name, and the requests on them (``OPS``)."""

    OPS = frozenset({"open", "process", "save", "learner_stats", "close"})

    def __init__(self) -> None:
        self.detectors: dict[str, StreamDetector] = {}

    def open(self, spec: DetectorSpec) -> tuple[list[str], int, tuple[int, int] | None]:
        from streamad.runtime.session import open_state
        from streamad.stream.detector import StreamDetector

        self.close(spec.name)
        notes: list[str] = []
        detector = StreamDetector(spec.config, extractor=_Described(spec))
        if spec.state is not None:
            detector = open_state(spec.state, detector, spec.state_reset, notes.append)
        self.detectors[spec.name] = detector
        return notes, detector.nominal_count, detector.frame_size

    def process(self, name: str, desc: np.ndarray, shape: tuple[int, int],
                timestamp: float | None) -> tuple[FrameResult, int]:
        detector = self.detectors[name]
        detector.adopt_frame_size(shape)  # as StreamDetector.process keeps it (and saves it with the state)
        return detector.process_descriptors(desc, shape, timestamp), detector.nominal_count

    def save(self, name: str, directory: str) -> None:
        self.detectors[name].save(directory)

    def learner_stats(self, name: str) -> dict[str, Any]:
        return self.detectors[name].learner_stats()

    def close(self, name: str) -> None:
        detector = self.detectors.pop(name, None)
        if detector is not None:
            detector.close()

    def close_all(self) -> None:
        for name in list(self.detectors):
            self.close(name)


def _describe(exc: BaseException) -> tuple[str, str]:
    """What crosses the pipe of an error: its class name and message (never the object itself)."""
    return type(exc).__name__, str(exc)


def _rebuild(name: str, message: str) -> BaseException:
    """The error a worker reported, raised again in the serve process: the same class when it is one of
    Python's built-in errors or streamad's own (:mod:`streamad.errors`), else a RuntimeError naming it.

        >>> type(_rebuild("ValueError", "bad")).__name__, str(_rebuild("KeyError2", "x"))
        ('ValueError', 'KeyError2: x')
    """
    import builtins

    import streamad.errors as errors

    cls = getattr(errors, name, None) or getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:  # noqa: BLE001 - a class whose constructor wants more than a message
            pass
    return RuntimeError(f"{name}: {message}")


def worker_main(conn: Connection, number: int) -> None:
    """A worker process's loop: one request at a time from ``conn`` until ``quit`` or end-of-file."""
    terminated: list[float] = []
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: terminated.append(time.monotonic()))
    _limit_threads()
    host = _Host()
    trimmer = HeapTrimmer(name="streamad-heap-worker").start()  # a worker runs as long as serve: no heap creep
    try:
        while True:
            if terminated and time.monotonic() - terminated[0] > TERM_GRACE_S:
                break
            try:
                if not conn.poll(POLL_S):
                    continue
                seq, op, args = conn.recv()
            except (EOFError, OSError):
                break  # the serve process is gone
            if op == "quit":
                conn.send((seq, "ok", None))
                break
            try:
                if op not in _Host.OPS:
                    raise ValueError(f"unknown worker request {op!r}")
                value = getattr(host, op)(*args)
            except BaseException as exc:  # noqa: BLE001 - every error goes back to the camera that asked
                if not isinstance(exc, (ValueError, OSError)):
                    traceback.print_exc(file=sys.stderr)
                conn.send((seq, "error", _describe(exc)))
            else:
                conn.send((seq, "ok", value))
    finally:
        trimmer.stop()
        host.close_all()


# -- the serve process's side ------------------------------------------------------------------------------


class _SendJob:
    """One message for a :class:`_Sender`; ``done`` is set once it is written (``error``: why not)."""

    __slots__ = ("message", "done", "error")

    def __init__(self, message: tuple[Any, ...]) -> None:
        self.message, self.done, self.error = message, threading.Event(), None  # type: ignore[assignment]


class _Sender:
    """The thread (``streamad-send-K``) that writes one worker's requests to its pipe, one at a time, so
    that the camera thread can wait for a write with a deadline (a stopped worker drains nothing).

    One per worker process, started with it and ended by :meth:`stop` (the next job it takes is the
    stop; a write blocked on a killed worker's pipe fails, ends its job, and the thread goes on to the
    stop). It only writes: the caller owns the pipe's reading end and the job's outcome.

    >>> from multiprocessing import Pipe
    >>> a, b = Pipe()
    >>> sender = _Sender(a, "streamad-send-doc")
    >>> job = sender.submit((1, "hello"))
    >>> job.done.wait(5.0), job.error, b.recv()
    (True, None, (1, 'hello'))
    >>> sender.stop(); sender.thread.is_alive()
    False
    """

    def __init__(self, conn: Connection, name: str) -> None:
        self.conn = conn
        self._jobs: queue.SimpleQueue[_SendJob | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def submit(self, message: tuple[Any, ...]) -> _SendJob:
        job = _SendJob(message)
        self._jobs.put(job)
        return job

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread after the job in hand (if its write is stuck, close the pipe first)."""
        self._jobs.put(None)
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self.conn.send(job.message)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                job.error = exc
            finally:
                job.done.set()


_CLOSED = None  # what a _Receiver queues when its pipe reads end-of-file (the process ended) or fails


class _Receiver:
    """The thread (``streamad-recv-K``) that reads one worker's answers from its pipe, each whole, into
    :attr:`answers`, so that the camera thread can wait for an answer with a deadline: a worker stopped
    half-way through writing an answer larger than a pipe's buffer leaves part of a message, and a plain
    ``recv`` waits for the rest for ever (found by the short live soak in CI).

    One per worker process, started with it; it only reads (the :class:`_Sender` writes, the caller owns
    the outcome). It ends when the pipe reads end-of-file, that is when the worker process has ended
    (quit, died or killed: only the worker holds the other end), queueing :data:`_CLOSED` last;
    :meth:`join` waits for that and must come before the pipe is closed.

    >>> from multiprocessing import Pipe
    >>> a, b = Pipe()
    >>> receiver = _Receiver(a, "streamad-recv-doc")
    >>> b.send((1, "ok", 42)); receiver.answers.get(timeout=5.0)
    (1, 'ok', 42)
    >>> b.close(); receiver.answers.get(timeout=5.0) is _CLOSED, receiver.join(5.0)
    (True, True)
    """

    def __init__(self, conn: Connection, name: str) -> None:
        self.conn = conn
        self.answers: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 5.0) -> bool:
        """Wait up to ``timeout`` seconds for the thread to end (the worker process has ended or is being
        killed); whether it did."""
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)
        return not self.thread.is_alive()

    def _run(self) -> None:
        try:
            while True:
                self.answers.put(self.conn.recv())
        except BaseException:  # noqa: BLE001 - end-of-file, a closed pipe or a garbled message: the worker is gone
            pass
        finally:
            self.answers.put(_CLOSED)


class _Worker:
    """One worker process seen from the serve process: its pipe, the lock of a request, its generation
    (counts starts: a detector opened in an older one is gone). ``main`` is what the process runs
    (:func:`worker_main`; a test puts a misbehaving worker in its place)."""

    main: Callable[[Connection, int], None] = staticmethod(worker_main)

    def __init__(self, context: BaseContext, number: int, request_timeout: float = REQUEST_TIMEOUT_S) -> None:
        self.context, self.number, self.request_timeout = context, number, request_timeout
        self.lock = threading.Lock()
        self.generation = 0
        self.process: BaseProcess | None = None
        self.conn: Connection | None = None
        self.sender: _Sender | None = None  # writes this process's requests (one thread per process)
        self.receiver: _Receiver | None = None  # reads its answers (one thread per process)
        self.dead: str | None = None
        self.closed = False
        self._seq = 0  # request number: an answer to an abandoned request (a second Ctrl-C) is skipped

    def start(self) -> None:
        """Start (or restart) the process; the caller holds ``lock`` (or nothing else runs yet)."""
        if self.closed:
            raise WorkerDied("the worker processes were shut down")
        parent, child = self.context.Pipe(duplex=True)
        process = self.context.Process(target=self.main, args=(child, self.number),
                                       name=f"streamad-worker-{self.number}", daemon=True)
        process.start()
        child.close()  # only the worker holds its end: its death reads as end-of-file here
        self._stop_sender()
        self.process, self.conn, self.dead = process, parent, None
        self.sender = _Sender(parent, f"streamad-send-{self.number}")
        self.receiver = _Receiver(parent, f"streamad-recv-{self.number}")
        self.generation += 1

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def alive(self) -> bool:
        return self.dead is None and self.process is not None and self.process.is_alive()

    def call(self, op: str, *args: Any) -> Any:
        """Send one request and wait for its answer; the caller holds ``lock``. The worker's error is
        raised here; :class:`WorkerDied` if the process ended (now or before)."""
        if self.dead is not None or self.conn is None:
            raise WorkerDied(self.dead or "the worker process is not running")
        self._seq += 1
        limit = max(self.request_timeout, OPEN_TIMEOUT_S) if op == "open" else self.request_timeout
        deadline = time.monotonic() + limit
        assert self.receiver is not None
        try:
            self._send((self._seq, op, args), op, limit, deadline)
            while True:
                try:
                    answer = self.receiver.answers.get(timeout=min(POLL_S, max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    if time.monotonic() >= deadline:
                        self._hung(op, limit)
                        raise WorkerDied(self.dead) from None
                    continue
                if answer is _CLOSED:
                    raise EOFError
                seq, status, value = answer
                if seq == self._seq:
                    break
        except (EOFError, OSError):
            self._died()
            raise WorkerDied(self.dead) from None
        if status == "error":
            raise _rebuild(*value)
        return value

    def _send(self, message: tuple[Any, ...], op: str, limit: float, deadline: float) -> None:
        """Send ``message`` within the request's deadline. A frame's descriptors exceed a pipe's buffer, and a
        stopped worker reads nothing, so a plain send would block for ever: the worker's :class:`_Sender`
        thread writes it, and the worker is taken as hung if the send has not finished by the deadline."""
        assert self.sender is not None and self.process is not None
        job = self.sender.submit(message)
        while not job.done.wait(min(POLL_S, max(0.0, deadline - time.monotonic()))):
            if not self.process.is_alive():
                raise EOFError
            if time.monotonic() >= deadline:
                self._hung(op, limit)  # the kill breaks the pipe: the sender's write ends
                job.done.wait(5.0)
                raise WorkerDied(self.dead)
        if job.error is not None:
            raise job.error

    def _hung(self, op: str, limit: float) -> None:
        """The worker answered nothing for ``request_timeout`` seconds (stopped, deadlocked, stuck): kill it
        (SIGKILL reaches a stopped process too) so that the next request starts a fresh one."""
        self.process.kill()
        self.process.join(5.0)
        self.dead = (f"worker process {self.number} (pid {self.process.pid}) did not answer a {op!r} request within "
                     f"{limit:g} s (hung or stopped): killed it (SIGKILL)")
        self._close_pipe()

    def _died(self) -> None:
        self.process.join(2.0)
        code = self.process.exitcode
        how = (f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0 and
               -code in signal.valid_signals() else "still running but not answering" if code is None
               else f"exit status {code}")
        self.dead = f"worker process {self.number} (pid {self.process.pid}) ended: {how}"
        if code is None:
            self.process.kill()
            self.process.join(2.0)
        self._close_pipe()

    def _stop_sender(self) -> None:
        if self.sender is not None:
            self.sender.stop()
            self.sender = None

    def _close_pipe(self) -> None:
        """Close this process's pipe once it has ended: its receiver first (it ends at the end-of-file the
        process's end brought; joined before the close, so no read can run on a closed or reused descriptor),
        then the pipe, then its sender."""
        if self.receiver is not None:
            self.receiver.join(5.0)
            self.receiver = None
        if self.conn is not None:
            self.conn.close()
        self._stop_sender()

    def ask_quit(self, timeout: float) -> None:
        """Tell the process to quit (after the request in hand, waiting for it at most ``timeout``
        seconds); no new process starts after this."""
        held = self.lock.acquire(timeout=timeout)  # not held: a request is stuck; it ends with the process
        try:
            self.closed = True
            if self.alive() and self.sender is not None:  # through the sender: one writer per pipe
                self.sender.submit((0, "quit", ())).done.wait(timeout)
        finally:
            if held:
                self.lock.release()

    def end(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the process to end, then kill it; close the pipe."""
        if self.process is not None:
            self.process.join(max(0.0, timeout))
            if self.process.is_alive():
                self.process.kill()
                self.process.join(5.0)
        self._close_pipe()
        self.dead = self.dead or "shut down"


class WorkerPool:
    """``workers`` worker processes (see the module docstring), started at once; :meth:`detector`
    places a camera's detector on the next one (round robin). :meth:`close` (or the ``with`` block's
    end) stops them all; safe to call twice."""

    def __init__(self, workers: int, *, context: str = "spawn", request_timeout: float = REQUEST_TIMEOUT_S) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"WorkerPool.workers must be an int >= 1, got {workers!r}")
        if isinstance(request_timeout, bool) or not isinstance(request_timeout, (int, float)) or not (
                0 < request_timeout < float("inf")):
            raise ValueError(f"WorkerPool.request_timeout must be a number of seconds > 0, got {request_timeout!r}")
        ctx = get_context(context)
        self.request_timeout = float(request_timeout)
        self.workers = [_Worker(ctx, k, self.request_timeout) for k in range(workers)]
        self._next = 0
        try:
            for w in self.workers:
                w.start()
        except BaseException:
            self.close(1.0)
            raise

    def detector(self, spec: DetectorSpec, extractor: Extractor, on_event: EventSink | None = None) -> RemoteDetector:
        """A camera's :class:`RemoteDetector`, opened (its state resumed) on the next worker. A state
        that cannot be used raises here (``streamad.errors.UserError``), as it does without workers."""
        worker = self.workers[self._next % len(self.workers)]
        self._next += 1
        remote = RemoteDetector(worker, spec, extractor, on_event=on_event)
        remote.open()
        return remote

    @property
    def pids(self) -> list[int | None]:
        return [w.pid for w in self.workers]

    def close(self, timeout: float = 10.0) -> None:
        """Tell every worker to quit (each stops its learners), wait up to ``timeout`` seconds in all,
        then kill what is left."""
        deadline = time.monotonic() + timeout
        for w in self.workers:
            w.ask_quit(max(0.0, deadline - time.monotonic()))
        for w in self.workers:
            w.end(deadline - time.monotonic())

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RemoteDetector:
    """A camera's detector in a worker process, as :func:`~streamad.runtime.live.run_watch` sees it.

    ``process(frame)`` gets the frame's descriptors from ``extractor`` on the calling thread (the
    shared backbone, batched with the other cameras), resizes a frame of another size to the first
    one's as ``StreamDetector.process`` does, and returns the worker's ``FrameResult`` (its
    ``timings`` with the ``features`` stage of this side). Its halves, ``describe`` (the backbone, here)
    and ``process_described`` (the worker), let the live loop describe the next frame while the worker
    scores the current one, as with ``StreamDetector``. ``save(dir)`` saves the state in the worker.
    A rejected frame raises ``ValueError`` as the detector does; a dead worker raises
    :class:`WorkerDied` once per camera, and the next call reopens the detector in a fresh worker."""

    def __init__(self, worker: _Worker, spec: DetectorSpec, extractor: Extractor,
                 on_event: EventSink | None = None) -> None:
        self.worker, self.spec, self.extractor = worker, spec, extractor
        self.config = spec.config
        self.on_event = on_event or (lambda line: None)
        self._size = StreamFrameSize()  # the rule StreamDetector keeps: the first accepted frame's size
        self._nominal = 0
        self._generation: int | None = None  # the worker generation the detector was opened in
        self._told = False  # this camera was told (WorkerDied) that its detector is gone

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def nominal_count(self) -> int:
        """Nominal patches after the last result (as the worker reported it)."""
        return self._nominal

    @property
    def pid(self) -> int | None:
        """The process id of the worker this camera's detector is in."""
        return self.worker.pid

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """The stream's (height, width), as :attr:`StreamDetector.frame_size`."""
        return self._size.size

    def open(self) -> None:
        """Open (or reopen) the detector in the worker, resumed from its state folder if it has one."""
        with self.worker.lock:
            self._open()

    def _open(self) -> None:
        w = self.worker
        if not w.alive():
            w.start()
        notes, self._nominal, size = w.call("open", self.spec)
        self._size.size = None if size is None else (int(size[0]), int(size[1]))
        for line in notes:
            self.on_event(line)
        if self._generation is not None:
            self.on_event(f"detector reopened in worker process {w.number} (pid {w.pid})")
        self._generation, self._told = w.generation, False

    def _lost(self) -> str | None:
        """Why the detector is gone (None: it is there)."""
        w = self.worker
        if self._generation == w.generation and w.dead is None:
            return None
        return w.dead or f"worker process {w.number} was restarted"

    def _call(self, op: str, *args: Any) -> Any:
        """A request on this camera's detector; the caller holds the worker's lock."""
        try:
            return self.worker.call(op, self.spec.name, *args)
        except WorkerDied:
            self._told = True
            raise

    def process(self, frame: np.ndarray, timestamp: float | None = None) -> FrameResult:
        return self.process_described(self.describe(frame, timestamp))

    def describe(self, frame: np.ndarray, timestamp: float | None = None) -> DescribedFrame:
        """The frame's descriptors from the shared backbone, here (``StreamDetector.describe``'s half: the
        live loop's reader calls it one frame ahead); the worker checks them with the frame. Only the frame
        that would fix the stream's size is checked here too, so that a refused one fixes none."""
        frame, desc, t_feat = extract_descriptors(self.extractor, self._size, frame, self._check_first)
        return DescribedFrame(desc, (int(frame.shape[0]), int(frame.shape[1])), timestamp, t_feat)

    def _check_first(self, desc: np.ndarray) -> np.ndarray:
        """The frame that would fix the stream's size: its descriptors finite floats (the worker checks
        every frame's in full)."""
        if self._size.size is None and (desc.dtype.kind != "f" or not np.isfinite(desc).all()):
            raise ValueError(f"the extractor's output must be finite floating-point values (got dtype {desc.dtype})")
        return desc

    def process_described(self, described: DescribedFrame) -> FrameResult:
        """The worker's result for a frame :meth:`describe` returned."""
        if not isinstance(described, DescribedFrame):
            raise TypeError(f"process_described takes what describe returned, got {type(described).__name__}")
        with self.worker.lock:
            lost = self._lost()
            if lost is not None and not self._told:
                self._told = True
                raise WorkerDied(f"{lost}; camera {self.spec.name}'s detector is gone")
            if lost is not None:
                self._open()
            result, self._nominal = self._call("process", described.descriptors, described.frame_shape,
                                               described.timestamp)
        return dataclasses.replace(result, timings={"features": described.features_ms, **result.timings})

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Save the detector's state to ``directory`` (in the worker); :class:`WorkerDied` if it is gone."""
        with self.worker.lock:
            lost = self._lost()
            if lost is not None:
                raise WorkerDied(f"{lost}: nothing to save")
            self._call("save", os.fspath(directory))

    def learner_stats(self) -> dict[str, Any]:
        """The background learner's counters, from the worker (empty when the detector is gone)."""
        with self.worker.lock:
            if self._lost() is not None:
                return {}
            return self._call("learner_stats")

    def close(self, timeout: float = 10.0) -> None:
        """Stop the detector's learner and drop it from its worker (nothing if the worker is gone, or
        still busy with a request after ``timeout`` seconds: :meth:`WorkerPool.close` ends it)."""
        if not self.worker.lock.acquire(timeout=timeout):
            return
        try:
            if self._lost() is None:
                try:
                    self._call("close")
                except WorkerDied:
                    pass
        finally:
            self.worker.lock.release()
