"""``streamad soak``: ``streamad serve`` run live for minutes or hours under injected faults, measured.

One module per job:

- ``run``: :class:`SoakSettings` and :func:`run_soak`, the run itself (serve started, watched, stopped);
- ``serve_process``: serve's configuration file and its child process (stderr lines, timestamped);
- ``camera``: :class:`DemoCamera`, the demo scene as an MJPEG network camera that can go off the network;
- ``listener``: :class:`MessageCounter`, the subscriber counting every message and sequence gap;
- ``web_client``: :class:`PagePoller`, the browser polling the live page;
- ``procs``: serve's processes, their memory and threads (psutil or ``/proc``), and their sampler;
- ``helper_thread``: :class:`HelperThread`, the start / stop / running of the helpers' own threads;
- ``faults``: the faults (kill, stop, source, subscriber, save), their bounds and their runner;
- ``resume``: the end's check that every state loads and resumes identically;
- ``report``: rows per interval, the pass/fail checks, the tables.
"""

from streamad.bench.live_soak.faults import FAULTS, parse_faults
from streamad.bench.live_soak.report import evaluate, render
from streamad.bench.live_soak.run import SoakSettings, run_soak

__all__ = ["FAULTS", "SoakSettings", "evaluate", "parse_faults", "render", "run_soak"]
