"""`streamad bench`: backbone-only, live and synchronous rates on the same frames, JSON keys, refusals."""

from __future__ import annotations

import json

import numpy as np

import pytest

from streamad.cli import main


def test_bench_reports_both_rates_on_the_same_frames(bottle_dir, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", str(bottle_dir / "test" / "good"), "--frames", "32", "--window", "24", "--device", "cpu",
                 "--warmup", "1", "--json", str(out), "--quiet"]) == 0
    r = json.loads(out.read_text())
    for key in ("backbone_fps", "pipeline_fps", "ratio", "p50_ms", "p99_ms", "sync_fps", "admissions_per_s"):
        assert isinstance(r[key], float) and r[key] >= 0, key
    assert r["ratio"] == pytest.approx(r["pipeline_fps"] / r["backbone_fps"])
    assert r["frames_timed"] == 8 and r["sync_frames_timed"] == 8  # timed once the window is full
    assert r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert r["device"] == "cpu" and r["window"] == 24 and r["nominal_patches_at_end"] > 0
    assert r["timed_frames_ready"] == 8 and r["sync_frames_ready"] == 8  # every timed frame was scored
    assert {"features", "score", "heatmap"} <= set(r["stage_ms"])  # live: the scorer's stages ...
    assert "associate" not in r["stage_ms"]  # ... the admission work is the learner's
    tails = r["stage_p50_p99_ms"]  # each stage's spread, over the same frames as its mean
    assert set(tails) == set(r["stage_ms"]) and all(0 <= a <= b for a, b in tails.values())
    assert r["score_time_vs_score_r"] is None or -1.0 <= r["score_time_vs_score_r"] <= 1.0
    assert {"features", "score", "associate", "index"} <= set(r["sync_stage_ms"])
    assert r["threads"]["live"]["blas"] == 1 and r["index"]["kind"] == "ivf"
    printed = capsys.readouterr().out
    assert "backbone only" in printed and "live" in printed and "ratio live / backbone" in printed
    assert "live scorer stage ms p50 / p99: features" in printed
    assert "synchronous" in printed


def test_bench_with_memory_times_both_passes_with_a_filled_memory(bottle_dir, tmp_path, capsys):
    base = ["bench", str(bottle_dir / "test" / "good"), "--frames", "30", "--window", "20", "--device", "cpu",
            "--warmup", "0", "--modes", "live,sync", "--quiet"]
    out = tmp_path / "memory.json"
    assert main(base + ["--memory", "5000", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert 0 < r["memory_patches_at_start"] <= 5000  # the 10 frames that left the window were remembered
    assert 0 < r["sync_memory_patches_at_start"] <= 5000  # the sync pass too: a running stream's memory
    assert r["sync_frames_timed"] == 10
    printed = capsys.readouterr().out
    assert "when the live pass started" in printed and "when the sync pass started" in printed
    plain = tmp_path / "plain.json"
    assert main(base + ["--memory", "0", "--json", str(plain)]) == 0  # 0: no memory (the default has one)
    r = json.loads(plain.read_text())
    assert "memory_patches_at_start" not in r and "sync_memory_patches_at_start" not in r
    assert r["sync_frames_timed"] == 10  # timed once the window is full, from the first frame


def test_bench_refuses_too_few_frames_and_empty_folders(tmp_path, capsys):
    assert main(["bench", str(tmp_path), "--frames", "10", "--window", "12"]) == 2
    assert "must exceed --window" in capsys.readouterr().err
    assert main(["bench", str(tmp_path), "--frames", "20", "--window", "12"]) == 2
    assert "no images" in capsys.readouterr().err


def test_bench_without_a_folder_runs_on_the_demo_stream(tmp_path, capsys):
    # the fewest frames the command allows: a window must exceed the 10 seeds, and one frame is timed after it
    out = tmp_path / "demo.json"
    assert main(["bench", "--frames", "12", "--window", "11", "--device", "cpu", "--weights", "random",
                 "--warmup", "0", "--json", str(out), "--quiet"]) == 0
    r = json.loads(out.read_text())
    for key in ("backbone_fps", "pipeline_fps", "ratio", "p50_ms", "p99_ms"):
        assert isinstance(r[key], float) and r[key] > 0, key
    assert r["frames_timed"] == 1 and r["window"] == 11
    assert "the first 12 of the built-in demo stream (384x384)" in capsys.readouterr().out


def test_bench_engine_index_mode_compares_the_options_on_real_window_changes(tmp_path, capsys):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(1, 64, 6))
    frames = (base + 0.05 * rng.normal(size=(30, 64, 6))).astype(np.float32)
    np.save(tmp_path / "train.npy", frames)
    np.save(tmp_path / "test.npy", (base + 0.05 * rng.normal(size=(3, 64, 6))).astype(np.float32))
    out = tmp_path / "index.json"
    assert main(["bench-engine", "--mode", "index", "--descriptors", str(tmp_path / "train.npy"), "--queries",
                 str(tmp_path / "test.npy"), "--windows", "20", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["index"]["rows"]
    assert {r["option"] for r in rows} >= {"hnsw efc200 ef256 (before)", "ivf nprobe 32 (default)"}
    for r in rows:
        assert r["window"] == 20 and r["nominal"] > 0 and 0.99 <= r["recall_at_1"] <= 1.0  # small sets: exact
        assert r["score_error_max"] <= 1e-4 and r["update_ms_median"] >= 0
    assert "recall@1" in capsys.readouterr().out
    assert main(["bench-engine", "--mode", "index"]) == 2


def test_bench_measures_the_feature_levers_it_is_given(tmp_path):
    out = tmp_path / "levers.json"
    assert main(["bench", "--frames", "12", "--window", "11", "--device", "cpu", "--weights", "random",
                 "--warmup", "0", "--modes", "live", "--image-size", "160", "--dim", "64", "--aggregate", "5",
                 "--layers", "stride4,stride8,stride16", "--json", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text())["image_size"] == [160, 160]
    assert main(["bench", "--frames", "12", "--window", "11", "--device", "cpu", "--weights", "random",
                 "--warmup", "0", "--modes", "sync", "--blur", "8", "--k-sigma", "2", "--json", str(out), "--quiet"]) == 0
    r = json.loads(out.read_text())
    assert (r["blur_sigma"], r["k_sigma"]) == (8.0, 2.0)
    assert main(["bench", "--frames", "12", "--window", "11", "--aggregate", "4"]) == 2


def test_bench_engine_measures_each_window_with_its_memory_full():
    """The steady state: the long-term memory (its size its capacity, not W) fills before the timing, so a
    small window is not measured with a young memory against a large window with a full one."""
    from streamad.bench.engine import bench_engine

    res = bench_engine([12], frames=4, patches=16, dim=8, seeds=3, memory=300)
    r = res["windows"]["12"]
    assert r["memory"] == 300 and r["warmup_frames"] > 12 + 6  # warmed past 1.5 W until the memory was full
    assert set(r["stages_ms"]) == {"associate", "trim", "index", "score", "heatmap"}
    alone = bench_engine([12], frames=4, patches=16, dim=8, seeds=3, memory=0)["windows"]["12"]
    assert alone["memory"] == 0 and alone["warmup_frames"] == 18


def test_the_score_time_correlation_follows_the_frames_pairs():
    """The live pass's correlation of a frame's score stage with its image score: the pairs it was given,
    nothing when there is no spread."""
    from streamad.bench.throughput import _LoopRun

    run = object.__new__(_LoopRun)  # only the pairs matter here
    run.score_pairs = [(10.0, 1.0), (20.0, 2.0), (31.0, 3.0), (40.0, 4.5)]
    assert run.score_time_correlation() == pytest.approx(float(np.corrcoef([10, 20, 31, 40], [1, 2, 3, 4.5])[0, 1]))
    run.score_pairs = [(10.0, 3.0), (20.0, 2.0), (30.0, 1.0)]
    assert run.score_time_correlation() == pytest.approx(-1.0)
    run.score_pairs = [(10.0, 1.0), (10.0, 2.0), (10.0, 3.0)]
    assert run.score_time_correlation() is None
    run.score_pairs = [(10.0, 1.0), (20.0, 2.0)]
    assert run.score_time_correlation() is None
