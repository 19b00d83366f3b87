"""streamad/bench/scripts/quality_table.py: the rule of docs/quality.md applied to lever figures (no fitting here)."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def qt():
    from streamad.bench.scripts import quality_table

    return quality_table


def _rows(image: float, pixel: float, bump: dict | None = None) -> list[dict]:
    rows = []
    for ds in ("bottle", "magnetic_tile"):
        for k in (0, 10, 40):
            i, p = (bump or {}).get((ds, k), (0.0, 0.0))
            for rule in ("max", "top_mean k=30"):
                rows.append({"dataset": ds, "corrupt": k, "image_score": rule, "image_auroc": image + i,
                             "pixel_auroc": pixel + p, "nominal_patches": 1000, "fit_seconds_on_descriptors": 1.0})
    return rows


LEVERS = [("default", [], "-"), ("a", ["--a"], "-"), ("b", ["--b"], "-"), ("lite1", ["--l1"], "-"),
          ("lite2", ["--l2"], "-"), ("c", ["--c"], "-")]


def test_the_combination_keeps_gains_that_lose_nowhere_one_per_group(qt, tmp_path):
    figures = {
        "default": _rows(0.8, 0.8),
        "a": _rows(0.8, 0.8, {("bottle", 0): (0.02, 0.0)}),                                 # a gain: kept
        "b": _rows(0.8, 0.8, {("bottle", 0): (0.1, 0.0), ("magnetic_tile", 40): (-0.02, 0)}),  # loses 0.02: out
        "lite1": _rows(0.8, 0.8, {("bottle", 10): (0.01, 0.0)}),                              # same group as lite2
        "lite2": _rows(0.8, 0.8, {("bottle", 10): (0.03, 0.0)}),                              # the better: kept
        "c": _rows(0.8, 0.8, {("bottle", 10): (-0.005, 0.0)}),                                # below default: out
    }
    for name, rows in figures.items():
        (tmp_path / f"{name}.json").write_text(json.dumps({"rows": rows}))
    measured = qt.load(str(tmp_path), qt_levers := LEVERS)
    assert qt.combination(measured, qt_levers) == ["a", "lite2"]
    text = qt.table(str(tmp_path), LEVERS)
    assert "one per group of levers that set the same option: `a`, `lite2`." in text
    assert "| b | 0.8067 | +0.0067 | -0.020 (MTD K=40 image) | no: loses > 0.01 on one number |" in text


def test_no_default_no_combination(qt, tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"rows": _rows(0.9, 0.9)}))
    assert qt.combination(qt.load(str(tmp_path), LEVERS), LEVERS) == []


def test_levers_run_reports_the_test_images_not_in_training(tiny_dataset, tmp_path):
    """One real quality_levers run on a tiny data set: K = 1 rows carry the split of the test images that
    are not also training images, K = 0 rows do not (nothing is in training), and the table shows it."""
    from streamad.bench.scripts import quality_levers as levers

    out, table = tmp_path / "r.json", tmp_path / "r.md"
    assert levers.main([str(tiny_dataset), "--corrupt", "0,1", "--top-ks", "30", "--seed-frames", "2", "--min-span", "2",
                        "--image-size", "64", "--json", str(out), "--out", str(table)]) == 0
    rows = json.loads(out.read_text())["rows"]
    by_k = {k: [r for r in rows if r["corrupt"] == k] for k in (0, 1)}
    assert all("held_out_test_images" not in r for r in by_k[0])
    assert all(r["held_out_test_images"] == 3 and 0.0 <= r["held_out_pixel_auroc"] <= 1.0 for r in by_k[1])
    assert all(0.0 <= r["leave_one_out_pixel_auroc"] <= 1.0 for r in by_k[1])
    assert all("leave_one_out_image_auroc" not in r for r in by_k[0])
    text = table.read_text()
    assert "| (pixel AUROC, test images not in training) | - | " in text
    assert "| (pixel AUROC, leave-one-out) | - | " in text
