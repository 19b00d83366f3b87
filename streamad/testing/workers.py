"""Misbehaving worker processes for the tests of :mod:`streamad.runtime.serve.workers` (each a function a
spawned process can run in place of :func:`~streamad.runtime.serve.workers.worker_main`)."""

from __future__ import annotations

import os
import signal
import struct
from multiprocessing.connection import Connection


def answer_half_then_stop(conn: Connection, number: int) -> None:
    """Read one request, write the first bytes of a 1 MiB answer (the length header of
    multiprocessing's framing and a few bytes of its body), then stop this process with SIGSTOP: the
    reader sees data waiting, and a plain ``recv`` would wait for the rest for ever."""
    conn.recv()
    os.write(conn.fileno(), struct.pack("!i", 1 << 20) + b"\x80\x05" + bytes(64))
    os.kill(os.getpid(), signal.SIGSTOP)
