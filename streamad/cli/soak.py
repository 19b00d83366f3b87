"""Run 'streamad serve' live, as a camera box runs it, for minutes or hours, under injected faults, and
measure whether anything grows, slows down, goes missing or breaks.

The live configuration: --cameras demo cameras (the demo scene, one seed each, paced at --fps like a
camera), the real backbone (--preset, --device), detection in --workers worker processes with
background learning, a state folder per camera (saved every --state-every frames), serve's ZeroMQ
publisher and its web page. The soak starts serve as a child process ('python -m streamad serve') and
watches it from outside: a subscriber counts every message and every gap in the sequence numbers of
each camera, a client polls the web page as a browser does, a sampler reads the memory (RSS) and the
threads of serve and of every worker (psutil if installed, else /proc).

Faults (--faults, each optional; all by default), one after the other in the middle third of the run
(from the end of the warm-up, its first sixth, to half-way):

  kill        a worker process killed with SIGKILL: its cameras fail, restart in a fresh worker
  stop        a worker process stopped with SIGSTOP (hung): serve's request deadline ([serve]
              worker_timeout_s, --worker-timeout) must notice it, kill it, restart its cameras
  source      the last camera is a network camera (the demo scene served by the soak as MJPEG over
              HTTP on 127.0.0.1); it goes off the network for a while and comes back: serve's live
              source must reconnect while its loop goes on, and count the failure
  subscriber  the soak's subscriber disconnects for a while and reconnects: the messages it missed
              are the sequence gap it finds, counted and explained
  save        the worker saving a camera's state is killed with SIGKILL in the middle of the save:
              the previous state must stay loadable (serve resumes from it)

Each fault's time, detection (serve's own report of it, or the gap) and recovery (the cameras it
touched delivering frames again) are measured against a stated bound. A sequence gap is explained
when the time its messages were lost in (since the message before them) meets a fault's window on a
camera that fault touched; any other gap is unexplained.

Every --interval-minutes a row: the RSS of each process, threads, processes alive, messages, gaps,
web requests, faults; per camera, frames, scoring p50 / p99 (the detector time of the newest frame,
from its status messages, once a second), admissions per second and gaps. At the end serve is
stopped (SIGTERM: every state is saved) and each camera's state is loaded and continued on the
camera's next frames, straight through and with a save and load half-way: the same scores and the
same final state, or the check fails.

The checks (exit status 1 if one fails): RSS growth of every process after the warm-up at most 5 %;
scoring p99 in the last sixth at most 1.25 x the first sixth; zero unexplained sequence gaps; every
fault detected and over within its bound; every state loading and resuming identically; serve
exiting 0 with no worker left; every web request answered. The engine-only soak (no serve, synthetic
descriptors) is 'streamad bench-engine --mode soak'.

examples:
  streamad soak --live --minutes 60 --json soak.json --out soak.md    # the issue's hour, every fault
  streamad soak --minutes 3 --interval-minutes 0.5 --worker-timeout 5 --preset fast
  streamad soak --minutes 10 --faults kill,stop --workers 4
  streamad soak --minutes 0.75 --interval-minutes 0.25 --extractor standin --fps 5 --worker-timeout 2 \\
      --state-every 10                                                # a smoke test without the backbone
"""

from __future__ import annotations

import argparse
import json
import sys

from streamad.cli import options
from streamad.errors import UserError

NAME = "soak"
HELP = ("run 'serve' live (demo cameras, workers, publisher, web page) for minutes or hours under injected "
        "faults; memory, latency, gaps, recovery and state checks per interval")


FLAGS = {"interval_minutes": "--interval-minutes", "worker_timeout_s": "--worker-timeout",
         "save_every": "--state-every", "source_down_s": "--source-down", "subscriber_away_s": "--subscriber-away"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--live", action="store_true",
                   help="the live configuration (serve, workers, publisher, page): what this command runs; "
                        "accepted for clarity (the engine-only soak is 'bench-engine --mode soak')")
    p.add_argument("--minutes", type=float, default=60.0, help="length of the run, from every camera's first frame "
                   "(default 60)")
    p.add_argument("--interval-minutes", type=float, default=5.0, metavar="M", help="a row every M minutes (default 5)")
    p.add_argument("--faults", default="all", metavar="LIST",
                   help="faults to inject: all (default), none, or some of kill,stop,source,subscriber,save")
    p.add_argument("--cameras", type=int, default=4, metavar="N", help="demo cameras (default 4)")
    p.add_argument("--workers", type=int, default=2, metavar="N", help="serve's worker processes (default 2)")
    p.add_argument("--fps", type=float, default=2.0, help="frames per second of each camera (default 2)")
    p.add_argument("--worker-timeout", type=float, default=30.0, metavar="S",
                   help="serve's [serve] worker_timeout_s: a worker that answers nothing for S s is killed and "
                        "restarted (default 30, serve's own)")
    p.add_argument("--state-every", dest="save_every", type=int, default=200, metavar="N",
                   help="frames between each camera's state saves (default 200)")
    p.add_argument("--extractor", choices=("real", "standin"), default="real",
                   help="real: the backbone (default); standin: block means, no backbone (tests, smoke runs)")
    p.add_argument("--source-down", type=float, default=None, metavar="S",
                   help="seconds the network camera is off the network (default: run length / 180, 2 to 20)")
    p.add_argument("--subscriber-away", type=float, default=None, metavar="S",
                   help="seconds the subscriber is away (default: run length / 360, 1 to 10)")
    p.add_argument("--work-dir", default=None, metavar="DIR",
                   help="keep the configuration, states and serve's log here (default: a temporary folder)")
    options.add(p, "preset", "device", "seed", "json", "out")  # seed: picks the faults' targets


def run(args: argparse.Namespace) -> int:
    from streamad.bench.live_soak import SoakSettings, parse_faults, render, run_soak

    try:
        settings = SoakSettings(
            minutes=args.minutes, interval_minutes=args.interval_minutes, faults=parse_faults(args.faults),
            cameras=args.cameras, workers=args.workers, preset=args.preset, fps=args.fps, device=args.device,
            worker_timeout_s=args.worker_timeout, save_every=args.save_every, extractor=args.extractor,
            seed=args.seed, source_down_s=args.source_down, subscriber_away_s=args.subscriber_away,
            work_dir=args.work_dir)
    except ValueError as exc:
        message = str(exc)
        for field, flag in FLAGS.items():
            message = message.replace(f"SoakSettings.{field} ", f"{flag} ")
        raise UserError(message.replace("SoakSettings.", "--")) from exc
    for path in (args.json, args.out):
        if path:
            try:
                open(path, "a", encoding="utf-8").close()
            except OSError as exc:
                raise UserError(f"cannot write {path}: {exc.strerror or exc}") from exc
    result = run_soak(settings, emit=lambda line: print(line, flush=True))
    print()
    print(render(result), end="")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
        print(f"report written to {args.json}", file=sys.stderr)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(render(result, markdown=True))
        print(f"tables written to {args.out}", file=sys.stderr)
    return 0 if result["passed"] else 1
