"""The drifting stream (builder, per-run metrics) and `streamad eval-stream` end to end on real MTD images."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from streamad.cli import main
from streamad.evaluation.datasets import read_image
from streamad.evaluation.drift_stream import ManifestRow, build_drift_stream, read_manifest
from streamad.errors import UserError
from streamad.evaluation.stream_metrics import ROW_KEYS, per_run_metrics

MANIFEST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mtd" / "manifest.csv"


def require(path: Path) -> Path:
    """The real data must be there (as in conftest): fail loudly, never skip."""
    assert path.exists(), f"real test data missing at {path}: the suite expects ../shared/data beside the checkout"
    return path


def synthetic_rows(runs=("r1", "r2", "r3"), good=38, bad=6) -> list[ManifestRow]:
    rows = []
    for run in runs:
        # acquisition numbers deliberately out of file-name order: 'num_9' must come before 'num_10'
        rows += [ManifestRow(f"/d/{run}_num_{n}.jpg", 0, "good", None, run) for n in range(good, 0, -1)]
        rows += [ManifestRow(f"/d/{run}_num_{900 + i}.jpg", 1, "crack", f"/m/{run}_num_{900 + i}_mask.png", run)
                 for i in range(bad)]
    return rows


def number(path: str) -> int:
    return int(os.path.basename(path).split("num_")[1].split(".")[0])


def test_stream_order_is_run_then_acquisition_number():
    stream = build_drift_stream(synthetic_rows(), runs=["r2", "r1", "r3"], seed=1)
    runs = [f.run for f in stream]
    assert runs == sorted(runs, key=["r2", "r1", "r3"].index)  # runs contiguous, in the order asked
    for run in ("r1", "r2", "r3"):
        goods = [number(f.sample.path) for f in stream if f.run == run and not f.sample.label]
        assert goods == list(range(1, 39))
        assert all(f.sample.path.startswith(f"/d/{run}_") for f in stream if f.run == run)


@pytest.mark.parametrize("rate", [0.0, 0.05, 0.1, 0.135])
def test_defects_are_interleaved_at_the_rate_with_their_own_masks(rate):
    stream = build_drift_stream(synthetic_rows(), defect_rate=rate, seed=0)
    for run in ("r1", "r2", "r3"):
        frames = [f for f in stream if f.run == run]
        n_bad = sum(f.sample.label for f in frames)
        assert n_bad == round(rate * 38 / (1 - rate))
        assert abs(n_bad / len(frames) - rate) <= 0.5 / len(frames) + 1e-9
        for f in frames:
            if f.sample.label:  # the mask belongs to this very image
                stem = os.path.splitext(os.path.basename(f.sample.path))[0]
                assert f.sample.mask_path == f"/m/{stem}_mask.png"
            else:
                assert f.sample.mask_path is None
    bad_positions = [i for i, f in enumerate(stream) if f.sample.label]
    if rate >= 0.1:  # interleaved, not appended: some defect sits before the last nominal frame of its run
        assert any(stream[i + 1].run == stream[i].run and not stream[i + 1].sample.label for i in bad_positions)


def test_stream_is_seeded():
    a = build_drift_stream(synthetic_rows(), defect_rate=0.1, seed=3)
    b = build_drift_stream(synthetic_rows(), defect_rate=0.1, seed=3)
    c = build_drift_stream(synthetic_rows(), defect_rate=0.1, seed=4)
    assert a == b
    assert [f.sample.label for f in a] != [f.sample.label for f in c] or \
        [f.sample.path for f in a] != [f.sample.path for f in c]


def test_stream_refuses_impossible_rates():
    with pytest.raises(UserError, match="defect_rate must be in"):
        build_drift_stream(synthetic_rows(), defect_rate=0.6)
    with pytest.raises(UserError, match="run r1 has 1 defective images"):
        build_drift_stream(synthetic_rows(bad=1), defect_rate=0.2)


def test_real_mtd_stream_follows_the_manifest_and_really_drifts():
    require(MANIFEST.parent)
    rows = read_manifest(str(MANIFEST), runs=[f"exp{i}" for i in range(1, 7)])
    stream = build_drift_stream(rows, runs=[f"exp{i}" for i in range(1, 7)], defect_rate=0.05, seed=0)
    with open(MANIFEST, newline="") as fh:
        manifest = list(csv.DictReader(fh))
    nominal = Counter(r["run"] for r in manifest if r["label"] == "0" and r["run"] != "exp0")
    got = Counter(f.run for f in stream if not f.sample.label)
    assert got == nominal  # every nominal image of exp1..exp6, train and test alike, exactly once
    assert len({f.sample.path for f in stream}) == len(stream)
    assert 0.04 <= sum(f.sample.label for f in stream) / len(stream) <= 0.06
    for f in stream:
        assert os.path.isfile(f.sample.path)
        if f.sample.label:
            assert os.path.basename(f.sample.mask_path) == \
                os.path.splitext(os.path.basename(f.sample.path))[0] + "_mask.png"
            assert os.path.isfile(f.sample.mask_path)
    # the drift is real: nominal frames of exp6 are brighter than those of exp1
    def brightness(run):
        paths = [f.sample.path for f in stream if f.run == run and not f.sample.label][:6]
        return np.mean([read_image(p).mean() for p in paths])
    assert brightness("exp6") > brightness("exp1") + 5


def test_per_run_metrics_known_answer():
    runs = ["a"] * 5 + ["b"] * 5
    labels = [0, 0, 0, 1, 1, 0, 1, 0, 0, 0]
    scores = [None, 1.0, 2.0, 3.0, 0.5, 9.0, 8.0, 7.0, 1.0, 2.0]
    thresholds = [None, None, 1.5, 1.5, 1.5, 5.0, 5.0, 5.0, 5.0, 5.0]
    rows = per_run_metrics("m", runs, labels, scores, thresholds, pixel_auroc_of=lambda idx: float(len(idx)))
    a, b = rows
    assert set(ROW_KEYS) <= set(a)
    # run a: scored frames 1..4 (labels 0,0,1,1 scores 1,2,3,0.5): AUROC = pairs (3>1,3>2,0.5<1,0.5<2) = 2/4
    assert a["frame_auroc"] == 0.5 and a["frames_scored"] == 4 and a["pixel_auroc"] == 4.0
    # alarms in a: frame 2 (2 > 1.5) and frame 3 (3 > 1.5); frame 1 has no threshold yet
    assert a["false_alarm_rate"] == pytest.approx(1 / 3) and a["detection_rate"] == 0.5
    # run b: defect 8 against 9, 7, 1, 2 -> 3/4; alarms 9, 8, 7 -> FAR 2/4, detection 1/1
    assert b["frame_auroc"] == 0.75 and b["false_alarm_rate"] == 0.5 and b["detection_rate"] == 1.0
    one_class = per_run_metrics("m", ["a", "a"], [0, 0], [1.0, 2.0], [0.0, 0.0])
    assert one_class[0]["frame_auroc"] is None and one_class[0]["detection_rate"] is None
    with pytest.raises(ValueError, match="scores has 1 entries for 2 frames"):
        per_run_metrics("m", ["a", "a"], [0, 1], [1.0], [0.0, 0.0])


def small_mtd_copy(root: Path, runs=("exp1", "exp6"), good=14, bad=3) -> tuple[Path, Path]:
    """A small drifting dataset of real MTD images (links) with its own manifest."""
    rows = read_manifest(str(require(MANIFEST.parent) / "manifest.csv"), runs=list(runs))
    data = root / "tiles"
    out = []
    for run in runs:
        picked = [r for r in rows if r.run == run and not r.label][:good] + \
                 [r for r in rows if r.run == run and r.label][:bad]
        for r in picked:
            rel = Path("tiles") / ("good" if not r.label else "bad") / os.path.basename(r.path)
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(r.path, root / rel)
            mask = ""
            if r.label:
                mask = str(Path("tiles") / "masks" / os.path.basename(r.mask_path))
                (root / mask).parent.mkdir(parents=True, exist_ok=True)
                os.symlink(r.mask_path, root / mask)
            out.append({"image": str(rel), "label": r.label, "mask": mask, "run": run, "defect": r.defect})
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["image", "label", "mask", "run", "defect"])
        w.writeheader()
        w.writerows(out)
    return data, manifest


def test_eval_stream_command_end_to_end(tmp_path):
    data, manifest = small_mtd_copy(tmp_path)
    js, md, png = tmp_path / "r.json", tmp_path / "t.md", tmp_path / "p.png"
    argv = ["eval-stream", str(data), "--manifest", str(manifest), "--runs", "exp1,exp6", "--defect-rate", "0.15",
            "--windows", "6,9", "--seed-frames", "2", "--min-span", "2", "--image-size", "64", "--quantile", "0.9", "--warmup", "5",
            "--cache", str(tmp_path / "cache"), "--json", str(js), "--out", str(md), "--plot", str(png), "--quiet"]
    assert main(argv) == 0
    result = json.loads(js.read_text())
    methods = ["stream-6", "stream-6+quantile", "stream-9", "stream-9+quantile", "static-inreach", "static-patchcore",
               "static-inreach+auto", "static-inreach+quantile", "static-patchcore+auto",
               "static-patchcore+quantile"]
    assert [(r["run"], r["method"]) for r in result["runs"]] == [(run, m) for m in methods for run in ("exp1", "exp6")]
    for r in result["runs"]:
        assert set(ROW_KEYS) <= set(r)
    labels = [f["label"] for f in result["stream"]]
    runs = [f["run"] for f in result["stream"]]
    assert sum(labels) == 2 * round(0.15 * 14 / 0.85) and len(labels) == 2 * 14 + sum(labels)
    for m in methods:  # each row is what the method's own trace gives
        tr = result["traces"][m]
        again = per_run_metrics(m, runs, labels, tr["scores"], tr["thresholds"])
        got = [r for r in result["runs"] if r["method"] == m]
        for x, y in zip(got, again):
            for key in ("frame_auroc", "false_alarm_rate", "detection_rate"):
                assert x[key] == y[key], (m, key)
    st = result["traces"]["stream-6+quantile"]
    assert st["scores"][0] is None and st["scores"][-1] is not None  # warm-up, then scores
    assert len(set(result["traces"]["static-inreach"]["thresholds"])) == 1  # fixed threshold
    assert len(set(t for t in st["thresholds"] if t is not None)) > 1  # the engine's moves
    default = result["traces"]["stream-6"]
    assert default["rule"] == "auto" and default["trusted_frames"] >= 0   # (too few frames here to calibrate)
    ruled = result["traces"]["static-inreach+quantile"]
    assert ruled["scores"] == result["traces"]["static-inreach"]["scores"]       # the same scores, another rule
    assert ruled["thresholds"][0] is None and len(set(t for t in ruled["thresholds"] if t is not None)) > 1
    assert "stream-6 vs stream-6+quantile" in md.read_text()
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| stream-6 |" in md.read_text() and "false alarm rate" in md.read_text()
    # a second run reuses the cached descriptors and gives the same rows
    assert main(argv[:-7] + ["--json", str(tmp_path / "again.json"), "--quiet"]) == 0
    assert json.loads((tmp_path / "again.json").read_text())["runs"] == result["runs"]


def test_eval_stream_with_long_term_memory_only_lowers_the_engine_scores(tmp_path):
    """--memory gives the engines a memory beyond the window: scoring takes the nearer of the window's
    nominal set and the memory, so no frame scores higher than without it, and once frames have left the
    window some score lower; static models are untouched."""
    data, manifest = small_mtd_copy(tmp_path)
    base = ["eval-stream", str(data), "--manifest", str(manifest), "--runs", "exp1,exp6", "--defect-rate", "0.15",
            "--windows", "6", "--rules", "quantile", "--methods", "stream", "--seed-frames", "2", "--min-span", "2",
            "--image-size", "64", "--quantile", "0.9", "--warmup", "5", "--cache", str(tmp_path / "cache"), "--quiet"]
    traces = {}
    for name, extra in (("plain", ["--memory", "0"]), ("memory", ["--memory", "5000"])):
        assert main(base + extra + ["--json", str(tmp_path / f"{name}.json")]) == 0
        traces[name] = json.loads((tmp_path / f"{name}.json").read_text())["traces"]["stream-6+quantile"]
    assert "memory" not in traces["plain"]
    held = traces["memory"]["memory"]
    assert held["capacity"] == 5000 and 0 < held["patches"] <= 5000 and held["epsilon"] > 0
    pairs = [(a, b) for a, b in zip(traces["plain"]["scores"], traces["memory"]["scores"]) if a is not None]
    assert all(b <= a + 1e-6 for a, b in pairs)
    assert sum(b < a - 1e-6 for a, b in pairs) >= 3
    assert main(base + ["--memory", "-2"]) == 2


def test_eval_stream_rejects_bad_options(tmp_path, capsys):
    data, manifest = small_mtd_copy(tmp_path, good=4, bad=1)
    base = ["eval-stream", str(data), "--manifest", str(manifest), "--runs", "exp1,exp6"]
    assert main(base + ["--methods", "stream,magic"]) == 2
    assert "unknown magic" in capsys.readouterr().err
    assert main(base + ["--runs", "exp1,exp9"]) == 2
    assert "no images of run(s) exp9" in capsys.readouterr().err
    assert main(base + ["--defect-rate", "0.4"]) == 2
    assert "lower --defect-rate" in capsys.readouterr().err
    assert main(base + ["--positional", "on"]) == 2
    assert "plain patch descriptors" in capsys.readouterr().err


def test_static_patchcore_scores_frames_as_patchcore_does_elsewhere():
    """The drift benchmark's static PatchCore gives the image score of `streamad eval --method patchcore`
    (paper eq. 7 reweighting), not a plain heatmap maximum."""
    from streamad.batch.baselines import make_patch_model
    from streamad.config import HeatmapConfig
    from streamad.evaluation.drift_eval import trace_static
    from streamad.evaluation.descriptor_cache import PrecomputedDescriptors
    from streamad.batch.image_detector import ImageAnomalyDetector

    rng = np.random.default_rng(0)
    desc = (rng.normal(size=(1, 16, 8)) + 0.2 * rng.normal(size=(30, 16, 8))).astype(np.float32)
    desc[25, 3] += 4.0  # a defect
    fit, cal = np.arange(20), np.arange(20, 24)
    trace = trace_static("static-patchcore", make_patch_model("patchcore", coreset_fraction=0.5), desc, fit, cal,
                         (4, 4), (32, 32), blur=1.0, quantile=0.9, drift="none", chunk=7)
    ref = ImageAnomalyDetector(make_patch_model("patchcore", coreset_fraction=0.5), PrecomputedDescriptors((4, 4), (32, 32)),
                               HeatmapConfig(blur_sigma=1.0)).fit_descriptors(desc[fit])
    want = ref.predict_descriptors(desc)
    np.testing.assert_allclose(trace.scores, want.scores, rtol=1e-6)
    np.testing.assert_allclose(trace.patch_scores, want.patch_scores, rtol=1e-6)
    assert int(np.argmax(trace.scores)) == 25
    assert trace.thresholds[0] == pytest.approx(np.quantile(want.scores[cal], 0.9))
