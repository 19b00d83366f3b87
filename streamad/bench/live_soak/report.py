"""A live soak's report: its rows per interval, its pass/fail checks, and its tables (text and Markdown).

Everything here works on plain data (the JSON report), so a report can be checked again, or a made-up
one checked (``tests/test_soak_live.py`` shows each check can fail). Times are seconds since every
camera's first frame (the run's start); the run's *warm-up* is its first sixth (10 minutes of an hour).

The checks (:func:`evaluate`; limits of issue 27):

- **memory**: every process (serve, each worker) grows at most 5 % in resident memory from the end of
  its warm-up to the end of the run: the median of its samples in the last interval against the median
  in the interval after its warm-up (the run's, or for a worker started later, as long again after its
  start). A process that did not live to the end (a killed worker), or too short a time to have both
  intervals, is listed as not judged;
- **latency**: every camera's scoring p99 in the last sixth of the run is at most 1.25 x its p99 in the
  first sixth (from its status messages: once a second, the detector time of its newest frame);
- **gaps**: no sequence gap whose messages were lost outside a fault's window (from its injection to 2 s
  after it was over, on the cameras it touched; lost between the message before them and the one that
  showed them missing): every gap is explained by a fault, and counted;
- **faults**: every fault asked for was injected, detected and over within its bounds, and what it
  requires held (:mod:`~streamad.bench.live_soak.faults`);
- **states**: every camera's final state loads and resumes identically (:mod:`~streamad.bench.live_soak.resume`);
- **stop**: serve exited 0 on SIGTERM, and no worker process and no soak thread is left;
- **web**: every request to the page got its answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from streamad.bench.live_soak.faults import GRACE_S, fault_line

MEMORY_LIMIT = 0.05   # growth of resident memory after the warm-up
LATENCY_LIMIT = 1.25  # p99 of the last sixth over the first sixth
MIN_SAMPLES = 5       # latency samples each sixth needs for the camera to be judged


def _median(values: Sequence[float]) -> float | None:
    return float(np.median(values)) if len(values) else None


def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


# -- attribution of gaps ------------------------------------------------------------------------------------


def fault_window(fault: dict[str, Any]) -> tuple[float, float] | None:
    """(start, end) of the time a fault's gaps may fall in (None: it was not injected)."""
    start = fault.get("injected_s")
    if start is None:
        return None
    over = fault.get("recovered_s")
    end = over if over is not None else start + fault.get("recover_bound_s", 0.0)
    return start, end + GRACE_S


def attribute(gap: dict[str, Any], faults: Sequence[dict[str, Any]]) -> str | None:
    """The fault that explains ``gap`` (its name), or None: an unexplained gap.

    The lost messages were published between the message before them (``since``) and the one that showed
    the gap (``t``); the gap is the fault's when that span meets the fault's window on a camera it touched.

    >>> kill = {"name": "kill", "injected_s": 100.0, "recovered_s": 104.0, "recover_bound_s": 46, "cameras": ["c1"]}
    >>> gap = {"t": 105.0, "since": 99.5, "camera": "c1"}
    >>> attribute(gap, [kill]), attribute({**gap, "camera": "c0"}, [kill])
    ('kill', None)
    >>> attribute({"t": 107.0, "since": 106.5, "camera": "c1"}, [kill]) is None   # lost after the fault's window
    True
    >>> attribute({"t": 140.0, "since": 95.0, "camera": "c1"}, [kill])             # a sparse kind, seen late
    'kill'
    """
    found = None
    since = gap.get("since", gap["t"])
    for fault in faults:  # the latest fault whose window meets the gap's span (a window ends 2 s after its fault)
        window = fault_window(fault)
        meets = window is not None and since <= window[1] and window[0] <= gap["t"]
        if meets and gap["camera"] in fault.get("cameras", ()):
            if found is None or fault["injected_s"] > found["injected_s"]:
                found = fault
    return None if found is None else str(found["name"])


# -- rows per interval --------------------------------------------------------------------------------------


def interval_row(number: int, start: float, end: float, data: dict[str, Any],
                 faults: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The row of interval ``number`` ([start, end), seconds) from the run's ``data``: ``procs`` (t, role,
    pid, rss_mib, threads), ``frames`` (t, camera, index), ``events`` (t, camera), ``statuses`` (dicts
    with t, camera, state, lag_s, admissions_per_s), ``gaps`` (dicts), ``web`` (t, route, status, ms, ok),
    ``cameras`` (names) and ``soak_threads``."""
    def inside(t: float) -> bool:
        return start <= t < end

    span = max(1e-9, end - start)
    procs: dict[str, dict[str, Any]] = {}
    for role in sorted({p[1] for p in data["procs"] if inside(p[0])}, key=_role_order):
        mine = [p for p in data["procs"] if p[1] == role and inside(p[0])]
        procs[role] = {"pid": mine[-1][2], "rss_mib": _median([p[3] for p in mine]), "threads": mine[-1][4]}
    last_round = max((p[0] for p in data["procs"] if inside(p[0])), default=None)
    alive = sum(1 for p in data["procs"] if p[0] == last_round)
    gaps = [g for g in data["gaps"] if inside(g["t"])]
    cams: dict[str, dict[str, Any]] = {}
    for cam in data["cameras"]:
        frames = sum(1 for f in data["frames"] if f[1] == cam and inside(f[0]))
        st = [s for s in data["statuses"] if s["camera"] == cam and inside(s["t"])]
        lat = [s["lag_s"] * 1e3 for s in st if s["state"] == "running" and s["lag_s"] is not None]
        adm = [s["admissions_per_s"] for s in st if s["admissions_per_s"] is not None]
        cams[cam] = {"frames": frames, "fps": frames / span, "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
                     "latency_samples": len(lat), "admissions_per_s": float(np.mean(adm)) if adm else None,
                     "gaps": sum(g["missed"] for g in gaps if g["camera"] == cam)}
    messages = (sum(1 for f in data["frames"] if inside(f[0])) + sum(1 for e in data["events"] if inside(e[0]))
                + sum(1 for s in data["statuses"] if inside(s["t"])))
    web = [w for w in data["web"] if inside(w[0])]
    return {"interval": number, "start_s": start, "end_s": end, "processes": procs, "alive": alive,
            "soak_threads": data.get("soak_threads"), "cameras": cams, "messages": messages,
            "gaps": {"missed": sum(g["missed"] for g in gaps),
                     "unexplained": sum(g["missed"] for g in gaps if attribute(g, faults) is None)},
            "web": {"requests": len(web), "failed": sum(1 for w in web if not w[4])},
            "faults": [f["name"] for f in faults if f.get("injected_s") is not None and inside(f["injected_s"])]}


def _role_order(role: str) -> tuple[int, int]:
    return (0, 0) if role == "serve" else (1, int(role[1:]) if role[1:].isdigit() else 0)


# -- the checks ---------------------------------------------------------------------------------------------


def _check(name: str, passed: bool, value: str, limit: str, detail: str) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "value": value, "limit": limit, "detail": detail}


def memory_check(report: dict[str, Any]) -> dict[str, Any]:
    d, warm, step = report["duration_s"], report["warmup_s"], report["interval_s"]
    judged, skipped = [], []
    for p in report["processes"]:
        label = f"{p['role']} (pid {p['pid']})"
        samples = p["samples"]
        base_start = max(warm, p["first_s"] + warm)
        base = [s[1] for s in samples if base_start <= s[0] < base_start + step]
        final = [s[1] for s in samples if s[0] >= d - step]
        if p["last_s"] < d - step:
            skipped.append(f"{label}: ended at {p['last_s']:.0f} s")
        elif not base or not final or base_start + step > d - step:
            skipped.append(f"{label}: started at {p['first_s']:.0f} s, too late to judge")
        else:
            judged.append((label, _median(final) / _median(base) - 1.0, _median(base), _median(final)))
    worst = max((g for _, g, _, _ in judged), default=None)
    detail = "; ".join(f"{label}: {b:.1f} -> {f:.1f} MiB ({g:+.1%})" for label, g, b, f in judged)
    if skipped:
        detail += ("; " if detail else "") + "not judged: " + ", ".join(skipped)
    return _check("memory", bool(judged) and worst is not None and worst <= MEMORY_LIMIT,
                  "-" if worst is None else f"{worst:+.1%}", f"<= +{MEMORY_LIMIT:.0%} per process", detail)


def latency_check(report: dict[str, Any]) -> dict[str, Any]:
    d, warm = report["duration_s"], report["warmup_s"]
    ratios, skipped = [], []
    for cam, info in report["cameras"].items():
        first = [ms for t, ms in info["latency"] if 0 <= t < warm]
        last = [ms for t, ms in info["latency"] if t >= d - warm]
        if len(first) < MIN_SAMPLES or len(last) < MIN_SAMPLES:
            skipped.append(f"{cam} ({len(first)} and {len(last)} samples)")
            continue
        a, b = _pct(first, 99), _pct(last, 99)
        ratios.append((cam, b / a if a else float("inf"), a, b))
    worst = max((r for _, r, _, _ in ratios), default=None)
    detail = "; ".join(f"{cam}: p99 {a:.0f} -> {b:.0f} ms (x{r:.2f})" for cam, r, a, b in ratios)
    if skipped:
        detail += ("; " if detail else "") + "not judged: " + ", ".join(skipped)
    return _check("latency", bool(ratios) and worst is not None and worst <= LATENCY_LIMIT,
                  "-" if worst is None else f"x{worst:.2f}", f"<= x{LATENCY_LIMIT} (last sixth / first sixth)", detail)


def gaps_check(report: dict[str, Any]) -> dict[str, Any]:
    faults = report["faults"]
    explained: dict[str, int] = {}
    unexplained = []
    for g in report["gaps"]:
        by = attribute(g, faults)
        if by is None:
            unexplained.append(g)
        else:
            explained[by] = explained.get(by, 0) + g["missed"]
    detail = ", ".join(f"{n} messages at the {name} fault" for name, n in explained.items()) or "no gap"
    if unexplained:
        detail = "unexplained: " + ", ".join(f"{g['missed']} {g['kind']} of {g['camera']} at {g['t']:.1f} s"
                                             for g in unexplained[:10]) + "; explained: " + detail
    return _check("gaps", not unexplained, f"{sum(g['missed'] for g in unexplained)} unexplained",
                  "0 unexplained", detail)


def fault_ok(fault: dict[str, Any]) -> bool:
    """Injected, detected and over within its bounds, and everything it requires held."""
    t = fault.get("injected_s")
    if t is None or fault.get("detected_s") is None or fault.get("recovered_s") is None:
        return False
    return (fault["detected_s"] - t <= fault["detect_bound_s"] and fault["recovered_s"] - t <= fault["recover_bound_s"]
            and all(fault.get("required", {}).values()))


def faults_check(report: dict[str, Any]) -> dict[str, Any]:
    asked = list(report["settings"]["faults"])
    by_name = {f["name"]: f for f in report["faults"]}
    good = [n for n in asked if n in by_name and fault_ok(by_name[n])]
    bad = [f"{n}: " + (fault_line(by_name[n]) if n in by_name else "not run") for n in asked if n not in good]
    return _check("faults", len(good) == len(asked), f"{len(good)}/{len(asked)}", "all detected and over in bound",
                  "; ".join(bad) if bad else ", ".join(asked) or "none asked for")


def states_check(report: dict[str, Any]) -> dict[str, Any]:
    states = report["states"]
    cams = list(report["cameras"])
    good = [s["camera"] for s in states if s["ok"]]
    bad = [s for s in states if not s["ok"]]
    missing = [c for c in cams if c not in {s["camera"] for s in states}]
    detail = "; ".join(f"{s['camera']}: " + (s["error"] or ", ".join(
        what for what, ok in (("at its last frame", s["at_last_frame"]), ("same scores", s["same_scores"]),
                              ("same state", s["same_state"])) if not ok) + " failed") for s in bad)
    if missing:
        detail += ("; " if detail else "") + "no state checked: " + ", ".join(missing)
    return _check("states", not bad and not missing and bool(states), f"{len(good)}/{len(cams)}",
                  "all load and resume identically", detail or "every state loads and resumes identically")


def stop_check(report: dict[str, Any]) -> dict[str, Any]:
    serve = report["serve"]
    left = serve.get("workers_left", []) + report.get("soak_threads_left", [])
    ok = serve.get("exit_code") == 0 and not left
    return _check("stop", ok, f"exit {serve.get('exit_code')}", "exit 0, nothing left",
                  f"stopped in {serve.get('stop_s', 0):.1f} s" + (f"; left: {left}" if left else ""))


def web_check(report: dict[str, Any]) -> dict[str, Any]:
    web = report["web"]
    return _check("web", web["requests"] > 0 and web["failed"] == 0, f"{web['failed']} failed",
                  "0 failed", f"{web['requests']} requests, slowest {web['max_ms']:.0f} ms")


CHECKS = (memory_check, latency_check, gaps_check, faults_check, states_check, stop_check, web_check)


def evaluate(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every check of the module docstring on ``report``."""
    return [check(report) for check in CHECKS]


# -- tables -------------------------------------------------------------------------------------------------


def _num(v: Any, digits: int = 1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], markdown: bool, note: bool = False,
           fixed: bool = False) -> str:
    """A table; with ``note``, the last column is long text: in plain text it goes on a line of its own under
    its row; ``fixed``: plain-text columns as wide as their headings (at least 8), so that rows printed one
    at a time line up under one heading."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(cells[0]) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells[1:]])
    notes = [r.pop() for r in cells] if note else None
    widths = ([max(8, len(h)) for h in cells[0]] if fixed else
              [max(len(r[i]) for r in cells) for i in range(len(cells[0]))])
    lines = []
    for k, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) for c, w in zip(r, widths)))
        if notes is not None and k and notes[k] not in ("", "-"):
            lines.append("      " + notes[k])
    return "\n".join(lines)


def roles_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    return sorted({role for row in rows for role in row["processes"]}, key=_role_order)


def interval_table(rows: Sequence[dict[str, Any]], markdown: bool = False, roles: Sequence[str] | None = None,
                   fixed: bool = False) -> str:
    roles = list(roles or roles_of(rows))
    header = ["min", *(f"{r} MiB" for r in roles), "threads " + "/".join(roles), "procs", "msgs", "gaps (unexpl.)",
              "web GETs (failed)", "faults"]
    out = []
    for row in rows:
        procs = row["processes"]
        out.append([f"{row['end_s'] / 60:.1f}", *(_num(procs.get(r, {}).get("rss_mib")) for r in roles),
                    "/".join(str(procs.get(r, {}).get("threads", "-")) for r in roles), row["alive"],
                    f"{row['messages']:,}", f"{row['gaps']['missed']} ({row['gaps']['unexplained']})",
                    f"{row['web']['requests']} ({row['web']['failed']})", ", ".join(row["faults"]) or "-"])
    return _table(header, out, markdown, fixed=fixed)


def camera_table(rows: Sequence[dict[str, Any]], markdown: bool = False, fixed: bool = False) -> str:
    header = ["min", "camera", "frames", "fps", "p50 ms", "p99 ms", "samples", "admissions/s", "gaps"]
    out = [[f"{row['end_s'] / 60:.1f}", cam, c["frames"], _num(c["fps"], 2), _num(c["p50_ms"]), _num(c["p99_ms"]),
            c["latency_samples"], _num(c["admissions_per_s"], 2), c["gaps"]]
           for row in rows for cam, c in row["cameras"].items()]
    return _table(header, out, markdown, fixed=fixed)


def fault_table(faults: Sequence[dict[str, Any]], markdown: bool, gaps: Sequence[dict[str, Any]]) -> str:
    """One row per injected fault; a fault's missed messages are every gap the run attributed to it.

    >>> sub = {"name": "subscriber", "injected_s": 10.0, "detected_s": 20.0, "recovered_s": 20.5,
    ...        "detect_bound_s": 15.0, "recover_bound_s": 15.0, "cameras": ["c0"], "extra": {"missed": 20}}
    >>> gaps = [{"fault": "subscriber", "missed": 20}, {"fault": "subscriber", "missed": 10}]
    >>> "30 messages missed (counted)" in fault_table([sub], False, gaps)
    True
    """
    counted: dict[str, int] = {}
    for g in gaps:
        if g.get("fault"):
            counted[g["fault"]] = counted.get(g["fault"], 0) + int(g["missed"])
    header = ["fault", "target", "cameras", "at s", "detected after s (bound)", "over after s (bound)", "ok", "also"]
    out = []
    for f in faults:
        t = f.get("injected_s")
        det = "-" if t is None or f.get("detected_s") is None else f"{f['detected_s'] - t:.1f}"
        rec = "-" if t is None or f.get("recovered_s") is None else f"{f['recovered_s'] - t:.1f}"
        also = "; ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in f.get("required", {}).items())
        extra = f.get("extra", {})
        missed = counted.get(f["name"], 0)
        if missed or "missed" in extra:  # a fault that loses messages says so, even when it lost none
            also = (also + "; " if also else "") + f"{missed} messages missed (counted)"
        if "previous_state_frames" in extra:
            also += f"; previous state: {extra['previous_state_frames']} frames"
        out.append([f["name"], f.get("target", ""), ", ".join(f.get("cameras", [])) or "-", _num(t),
                    f"{det} ({f['detect_bound_s']:.1f})", f"{rec} ({f['recover_bound_s']:.1f})",
                    "yes" if fault_ok(f) else "NO", also or "-"])
    return _table(header, out, markdown, note=True)


def state_table(states: Sequence[dict[str, Any]], markdown: bool = False) -> str:
    header = ["camera", "frames seen", "last published", "loads", "same scores", "same state", "s"]

    def yn(v: bool) -> str:
        return "yes" if v else "NO"
    out = [[s["camera"], _num(s["frames_seen"], 0), _num(s["last_published"], 0), yn(s["loads"]),
            yn(s["same_scores"]), yn(s["same_state"]), _num(s["seconds"])] for s in states]
    return _table(header, out, markdown)


def check_table(checks: Sequence[dict[str, Any]], markdown: bool = False) -> str:
    out = [[c["name"], c["value"], c["limit"], "PASS" if c["passed"] else "FAIL", c["detail"]] for c in checks]
    return _table(["check", "value", "limit", "", "detail"], out, markdown, note=True)


def render(report: dict[str, Any], markdown: bool = False) -> str:
    """Every table of ``report``, and its verdict."""
    s = report["settings"]
    head = "#### " if markdown else ""
    parts = [f"{head}live soak: {report['duration_s'] / 60:.1f} min, {len(report['cameras'])} cameras "
             f"({s['preset']}, {s['extractor']} extractor, {s['fps']:g} fps each), {s['workers']} workers, faults: "
             f"{', '.join(s['faults']) or 'none'}" + (" (INTERRUPTED)" if report.get("interrupted") else ""),
             f"{head}intervals", interval_table(report["intervals"], markdown),
             f"{head}cameras (p50 / p99: scoring time of the newest frame, sampled once a second from its status)",
             camera_table(report["intervals"], markdown),
             f"{head}faults", fault_table(report["faults"], markdown, report["gaps"]) if report["faults"] else "none",
             f"{head}states", state_table(report["states"], markdown) if report["states"] else "none",
             f"{head}checks", check_table(report["checks"], markdown),
             f"soak verdict: {'PASS' if report['passed'] else 'FAIL'}"]
    return "\n\n".join(parts) + "\n"
