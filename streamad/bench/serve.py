"""One ``streamad serve`` against N separate ``streamad watch`` processes, for N demo cameras.

For each camera count N, with the same settings (preset, window, learning, device, frames per camera):

- **serve**: one ``streamad serve`` process with N demo cameras (one backbone, batches of the cameras'
  newest frames; with ``workers``, the detectors in that many worker processes), each stopping after
  ``frames`` frames;
- **watch**: N ``streamad watch demo`` processes started together, each stopping after ``frames``
  frames (each loads its own backbone and runs its own thread pools on the same cores).

A camera's rate is its frames over its own loop time (model loading excluded, as the commands print
it). The aggregate ("together") is every camera's frames over the span from the first loop's start to
the last loop's end: for ``serve`` its own figure; for the ``watch`` processes, each loop's end is when
its process exits and its start that minus its loop time, so a process that runs alone for a while
(the others still loading, or done) does not inflate the figure. Benchmarks print figures, tests assert behaviour:
nothing here is asserted. The commands run as subprocesses (``python -m streamad ...``), exactly as a
user runs them::

    rows = measure([1, 2], frames=20, preset="fast")
    print(table(rows))
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from streamad.errors import UserError

SUMMARY = re.compile(r"^frames (\d+) in ([\d.]+) s \(([\d.]+) fps\)", re.M)
LEARNER = re.compile(r"^background learner: (\d+) admissions", re.M)  # watch --stats, background learning


@dataclass(frozen=True)
class Row:
    """One camera count, one way of running: per-camera rates (frames per second), wall seconds of the
    whole run (process start to end, model loading included)."""

    cameras: int
    mode: str
    rates: tuple[float, ...]
    wall_s: float
    together: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def aggregate(self) -> float:
        """Frames per second of all cameras together (see the module docstring)."""
        return self.together

    @property
    def mean(self) -> float:
        """The mean per-camera rate."""
        return float(sum(self.rates)) / len(self.rates) if self.rates else 0.0

    @property
    def min_share(self) -> float:
        """The slowest camera's rate over the mean per-camera rate."""
        return min(self.rates) / self.mean if self.rates and self.mean > 0 else 0.0


def _env(torch_threads: int | None) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if torch_threads:
        env["OMP_NUM_THREADS"] = str(torch_threads)
    return env


def serve_config(n: int, *, preset: str, window: int | None, learning: str, device: str | None,
                 batch_wait_ms: float | None, workers: int = 0, admit_every: int | None = None) -> str:
    """The TOML of N demo cameras with the given settings (no publisher, no page; ``batch_wait_ms`` None:
    serve's own choice; ``admit_every`` None: the preset's).

        >>> print(serve_config(1, preset="fast", window=None, learning="background", device=None,
        ...                    batch_wait_ms=None, admit_every=8).strip())
        [serve]
        workers = 0
        [publisher]
        enabled = false
        <BLANKLINE>
        [[cameras]]
        name = "cam0"
        source = "demo"
        preset = "fast"
        learning = "background"
        admit_every = 8
    """
    head = f"[serve]\nworkers = {workers}\n"
    head += "" if batch_wait_ms is None else f"batch_wait_ms = {batch_wait_ms}\n"
    head += f'device = "{device}"\n' if device else ""
    head += "[publisher]\nenabled = false\n"
    cams = "".join(f'\n[[cameras]]\nname = "cam{i}"\nsource = "demo"\npreset = "{preset}"\nlearning = "{learning}"\n'
                   + (f"window = {window}\n" if window else "")
                   + (f"admit_every = {admit_every}\n" if admit_every else "") for i in range(n))
    return head + cams


def run_serve(n: int, frames: int, *, preset: str, window: int | None, learning: str, device: str | None,
              batch_wait_ms: float | None = None, workers: int = 0, admit_every: int | None = None,
              timeout: float = 3600.0) -> Row:
    """One ``streamad serve`` with ``n`` demo cameras, ``frames`` frames each (detection in ``workers``
    worker processes; 0: on threads)."""
    with tempfile.TemporaryDirectory(prefix="streamad-bench-serve-") as tmp:
        cfg, report = os.path.join(tmp, "serve.toml"), os.path.join(tmp, "serve.json")
        with open(cfg, "w", encoding="utf-8") as fh:
            fh.write(serve_config(n, preset=preset, window=window, learning=learning, device=device,
                                  batch_wait_ms=batch_wait_ms, workers=workers, admit_every=admit_every))
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "streamad", "serve", cfg, "--max-frames", str(frames), "--quiet",
                               "--json", report], capture_output=True, text=True, timeout=timeout, env=_env(None))
        wall = time.monotonic() - t0
        if proc.returncode != 0 or not os.path.exists(report):
            raise UserError(f"streamad serve with {n} cameras failed (exit {proc.returncode}): "
                            f"{proc.stderr.strip()[-500:]}")
        with open(report, encoding="utf-8") as fh:
            doc = json.load(fh)
    rates = tuple(c["frames"] / c["seconds"] if c["seconds"] > 0 else 0.0 for c in doc["cameras"])
    admits = [c["admissions"] / c["seconds"] for c in doc["cameras"] if c["seconds"] > 0]
    return Row(n, "serve", rates, wall, doc["fps"], {"mean_batch": doc["mean_batch"], "threads": doc["threads"],
                                                      "batch_wait_ms": doc.get("batch_wait_ms"),
                                                      "workers": doc.get("workers", 0),
                                                      "admissions_per_s": sum(admits) / len(admits) if admits
                                                      else None})


def watch_command(frames: int, *, preset: str, window: int | None, learning: str, device: str | None,
                  admit_every: int | None = None) -> list[str]:
    """The ``streamad watch demo`` command line of one of the separate processes.

        >>> watch_command(150, preset="default", window=32, learning="background", device=None,
        ...               admit_every=8)[3:]
        ['watch', 'demo', '--max-frames', '150', '--quiet', '--stats', '--preset', 'default', '--learning', 'background', '--window', '32', '--admit-every', '8']
    """
    cmd = [sys.executable, "-m", "streamad", "watch", "demo", "--max-frames", str(frames), "--quiet", "--stats",
           "--preset", preset, "--learning", learning]
    if window:
        cmd += ["--window", str(window)]
    if device:
        cmd += ["--device", device]
    if admit_every:
        cmd += ["--admit-every", str(admit_every)]
    return cmd


def run_watches(n: int, frames: int, *, preset: str, window: int | None, learning: str, device: str | None,
                admit_every: int | None = None, timeout: float = 3600.0) -> Row:
    """``n`` ``streamad watch demo`` processes at once, ``frames`` frames each."""
    cmd = watch_command(frames, preset=preset, window=window, learning=learning, device=device,
                        admit_every=admit_every)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="streamad-bench-watch-") as tmp:
        logs = [(open(os.path.join(tmp, f"{i}.out"), "w+"), open(os.path.join(tmp, f"{i}.err"), "w+"))
                for i in range(n)]
        procs = [subprocess.Popen(cmd, stdout=o, stderr=e, text=True, env=_env(None)) for o, e in logs]
        ends: dict[int, float] = {}
        while len(ends) < n:  # each process's end time, to place its loop on the clock
            for i, p in enumerate(procs):
                if i not in ends and p.poll() is not None:
                    ends[i] = time.monotonic()
            if time.monotonic() - t0 > timeout:
                for p in procs:
                    p.kill()
                raise UserError(f"streamad watch x {n} did not finish within {timeout:g} s")
            time.sleep(0.02)
        rates, frames, spans, admits = [], 0, [], []
        for i, (p, (o, e)) in enumerate(zip(procs, logs)):
            o.seek(0)
            e.seek(0)
            out, err = o.read(), e.read()
            o.close()
            e.close()
            m = SUMMARY.search(out)
            if p.returncode != 0 or m is None:
                raise UserError(f"streamad watch failed (exit {p.returncode}): {err.strip()[-500:]}")
            count, seconds = int(m.group(1)), float(m.group(2))
            rates.append(count / seconds if seconds > 0 else 0.0)
            learner = LEARNER.search(out)
            if learner is not None and seconds > 0:
                admits.append(int(learner.group(1)) / seconds)
            frames += count
            spans.append((ends[i] - seconds, ends[i]))
    span = max(end for _, end in spans) - min(start for start, _ in spans)
    return Row(n, "watch", tuple(rates), time.monotonic() - t0, frames / span if span > 0 else 0.0,
               {"admissions_per_s": sum(admits) / len(admits) if admits else None})


def measure(counts: list[int], frames: int, *, preset: str = "default", window: int | None = None,
            learning: str = "background", device: str | None = None, batch_wait_ms: float | None = None,
            workers: int = 0, modes: tuple[str, ...] = ("serve", "watch"), admit_every: int | None = None,
            progress: Any = None) -> list[Row]:
    """For each camera count: a ``serve`` row and a ``watch`` row (as ``modes`` says); ``workers`` is
    serve's ``[serve] workers`` (at most one per camera is started); ``admit_every`` (None: the preset's)
    caps every camera's learning alike, so that both sides learn as much."""
    rows = []
    for n in counts:
        if n < 1:
            raise UserError(f"camera counts must be >= 1, got {n}")
        for mode in modes:
            if progress is not None:
                progress(f"{n} camera(s): {mode} ...")
            if mode == "serve":
                rows.append(run_serve(n, frames, preset=preset, window=window, learning=learning, device=device,
                                      batch_wait_ms=batch_wait_ms, workers=workers, admit_every=admit_every))
            else:
                rows.append(run_watches(n, frames, preset=preset, window=window, learning=learning, device=device,
                                        admit_every=admit_every))
    return rows


def table(rows: list[Row]) -> str:
    """A Markdown table: per camera count, aggregate fps of serve and of the separate watches, their
    ratio, the per-camera rates and the slowest camera's share of the mean."""
    by = {(r.cameras, r.mode): r for r in rows}
    lines = ["| cameras | serve: fps together | watch x N: fps together | serve / watch | serve: per camera "
             "(min / mean) | watch: per camera (min / mean) | serve: slowest / mean | frames per batch "
             "| admissions/s per camera: serve / watch |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n in sorted({r.cameras for r in rows}):
        s, w = by.get((n, "serve")), by.get((n, "watch"))

        def rate(r: Row | None) -> str:
            return "-" if r is None else f"{r.aggregate:.2f}"

        def per(r: Row | None) -> str:
            return "-" if r is None else f"{min(r.rates):.2f} / {r.mean:.2f}"

        ratio = f"{s.aggregate / w.aggregate:.2f}x" if s and w and w.aggregate > 0 else "-"
        share = "-" if s is None else f"{s.min_share:.2f}"
        batch = "-" if s is None or not s.extra.get("mean_batch") else f"{s.extra['mean_batch']:.2f}"
        def admits(r: Row | None) -> str:
            value = None if r is None else r.extra.get("admissions_per_s")
            return "-" if value is None else f"{value:.2f}"

        lines.append(f"| {n} | {rate(s)} | {rate(w)} | {ratio} | {per(s)} | {per(w)} | {share} | {batch} "
                     f"| {admits(s)} / {admits(w)} |")
    return "\n".join(lines)
