"""`streamad bench-engine --mode soak`: rows per interval, the JSON file, the verdict, on a tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from streamad.bench import soak
from streamad.bench.streams import WanderingStream
from streamad.cli import main

TINY = ["--mode", "soak", "--frames", "60", "--report-every", "20", "--soak-patches", "16", "--soak-dim", "8",
        "--soak-window", "16", "--seed-frames", "3"]


def test_soak_prints_a_row_per_interval_writes_json_and_a_verdict(tmp_path: Path, capsys) -> None:
    out = tmp_path / "soak.json"
    assert main(["bench-engine", *TINY, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:3] == ["frames", "RSS", "MiB"])
    rows = [line.split() for line in lines[head + 1: head + 4]]
    assert [r[0] for r in rows] == ["20", "40", "60"]
    assert all(float(r[1]) > 10 and float(r[2]) > 0 and float(r[3]) >= float(r[2]) for r in rows)
    verdict = [line for line in lines if line.startswith("soak verdict: ")]
    assert len(verdict) == 1 and "frames 60 vs 40 (first interval after warm-up)" in verdict[0]
    soak = json.loads(out.read_text())["soak"]
    assert [r["frames"] for r in soak["rows"]] == [20, 40, 60]
    assert set(soak["rows"][0]) == {"frames", "rss_mib", "median_ms", "p99_ms", "nominal", "seconds"}
    assert soak["verdict"]["compared"] == [40, 60] and soak["grid"] == [4, 4] and soak["rows"][-1]["nominal"] > 0
    v = soak["verdict"]
    assert v["rss_ratio"] == soak["rows"][2]["rss_mib"] / soak["rows"][1]["rss_mib"]
    assert v["median_ratio"] == soak["rows"][2]["median_ms"] / soak["rows"][1]["median_ms"]


def test_soak_verdict_flags_growing_memory(monkeypatch, capsys) -> None:
    readings = iter([100.0, 100.0, 130.0])
    monkeypatch.setattr(soak, "rss_mib", lambda: next(readings))
    assert main(["bench-engine", *TINY]) == 0
    verdict = capsys.readouterr().out.splitlines()[-1]
    assert verdict.startswith("soak verdict: GROWING") and "memory x1.300" in verdict


def test_soak_needs_a_warm_up_and_two_intervals(capsys) -> None:
    assert main(["bench-engine", "--mode", "soak", "--frames", "50", "--report-every", "20"]) == 2
    assert "--frames >= 3 x --report-every" in capsys.readouterr().err


def test_wandering_stream_keeps_moving_but_stays_on_one_scale() -> None:
    s = WanderingStream(200, 16, seed=0, tau=500.0, spread=0.5)
    start = s.next().copy()
    for _ in range(3000):
        s.next()
    assert 0.4 < float(s.offset.std()) < 0.6               # stationary spread of the walk
    moved = np.linalg.norm(s.places - s.home, axis=1).mean()
    assert moved > 1.0                                       # the normal places have moved (noise is 0.3 / dim)
    again = WanderingStream(200, 16, seed=0, tau=500.0, spread=0.5)
    np.testing.assert_array_equal(again.next(), start)      # seeded
