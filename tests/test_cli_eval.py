"""`streamad eval` end to end on a tiny generated dataset, and its error messages."""

import json
import subprocess
import sys

import numpy as np
import pytest

from streamad.cli import main

KEYS = {"image_auroc", "pixel_auroc", "filter_precision", "filter_recall", "nominal_patches", "fit_seconds",
        "predict_seconds_per_image"}


def test_eval_writes_json_with_the_documented_keys(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["eval", str(tiny_dataset), "--corrupt", "1", "--seed-frames", "2", "--min-span", "2",
                 "--image-size", "64", "--json", str(out), "--quiet"])
    assert code == 0
    result = json.loads(out.read_text())
    assert KEYS <= set(result)
    assert 0.0 <= result["image_auroc"] <= 1.0 and 0.0 <= result["pixel_auroc"] <= 1.0
    assert result["train_images"] == 7 and result["nominal_patches"] > 0
    table = capsys.readouterr().out
    assert "image AUROC" in table and "filter precision" in table


@pytest.mark.parametrize("argv, message", [
    (["eval", "does/not/exist"], "dataset folder not found"),
    (["eval", "{tiny}", "--corrupt", "99"], "--corrupt must be between 0 and 2"),
    (["eval", "{tiny}", "--seed-frames", "0"], "--seed-frames must be >= 1, got 0"),
    (["eval", "{tiny}", "--backbone", "vgg99"], "unknown backbone 'vgg99'"),
    (["eval", "{tiny}", "--json", "no/such/dir/r.json"], "folder no/such/dir does not exist"),
])
def test_eval_errors_are_one_clear_line(tiny_dataset, capsys, argv, message):
    argv = [a.replace("{tiny}", str(tiny_dataset)) for a in argv]
    assert main(argv + ["--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_help_explains_itself():
    out = subprocess.run([sys.executable, "-m", "streamad.cli", "eval", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "--corrupt K" in out.stdout and "MVTec AD layout" in out.stdout


def _eval_args(data_dir: str, out) -> list[str]:
    return ["eval", data_dir, "--corrupt", "1", "--seed-frames", "2", "--min-span", "2", "--image-size", "64",
            "--json", str(out), "--quiet"]


def test_data_dir_relative_to_streamad_data_or_data_root(tiny_dataset, tmp_path, monkeypatch):
    """DATA_DIR may be given relative to $STREAMAD_DATA or --data-root (which wins); an existing path is
    used as given."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("STREAMAD_DATA", str(tiny_dataset.parent))
    assert main(_eval_args("tiny", elsewhere / "env.json")) == 0
    by_env = json.loads((elsewhere / "env.json").read_text())
    assert by_env["dataset"] == str(tiny_dataset)
    monkeypatch.setenv("STREAMAD_DATA", str(elsewhere))  # holds no "tiny": --data-root must win
    assert main(_eval_args("tiny", elsewhere / "root.json") + ["--data-root", str(tiny_dataset.parent)]) == 0
    by_root = json.loads((elsewhere / "root.json").read_text())
    assert by_root["dataset"] == str(tiny_dataset) and by_root["image_auroc"] == by_env["image_auroc"]
    assert main(_eval_args(str(tiny_dataset), elsewhere / "abs.json")) == 0  # absolute: the root is not used
    assert json.loads((elsewhere / "abs.json").read_text())["pixel_auroc"] == by_env["pixel_auroc"]


@pytest.mark.parametrize("command", ["eval", "compare", "eval-stream"])
def test_a_missing_data_dir_says_where_it_looked_and_what_to_set(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STREAMAD_DATA", raising=False)
    assert main([command, "mvtec_ad/bottle", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"dataset folder not found: mvtec_ad/bottle (looked in {tmp_path / 'mvtec_ad' / 'bottle'})" in err
    assert "set STREAMAD_DATA (or --data-root)" in err and "Traceback" not in err
    assert main([command, "mvtec_ad/bottle", "--data-root", str(tmp_path / "data"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'data' / 'mvtec_ad' / 'bottle'} (--data-root={tmp_path / 'data'})" in err


def test_compare_and_eval_stream_take_data_root(tiny_dataset, tmp_path, monkeypatch, capsys):
    from streamad.evaluation import comparison

    seen = []
    monkeypatch.setattr(comparison, "evaluate_shared", lambda shared, method, k, seed: seen.append(shared.data_dir)
                        or {"dataset": shared.data_dir, "method": method, "corrupt": k, "image_auroc": 1.0,
                            "pixel_auroc": 1.0})
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["compare", "tiny", "--data-root", str(tiny_dataset.parent), "--methods", "spade",
                 "--corrupt", "0", "--quiet"]) == 0
    assert seen == [str(tiny_dataset)]
    # eval-stream finds DATA_DIR under the root, then its manifest beside it (none here: that is the error)
    assert main(["eval-stream", "tiny", "--data-root", str(tiny_dataset.parent), "--quiet"]) == 2
    assert f"manifest not found: {tiny_dataset.parent / 'manifest.csv'}" in capsys.readouterr().err


def test_eval_reports_the_test_images_not_in_training_apart(tiny_dataset, tmp_path, capsys):
    """With --corrupt K the K added test images are scored too (as in the paper); the figures on the other
    test images are reported beside, and when every defective one was added, why there are none."""
    from streamad.evaluation.batch_eval import held_out_auroc
    from streamad.evaluation.metrics import auroc

    out = tmp_path / "r.json"
    assert main(_eval_args(str(tiny_dataset), out)) == 0
    result = json.loads(out.read_text())
    assert result["held_out_test_images"] == result["test_images"] - 1
    assert 0.0 <= result["held_out_image_auroc"] <= 1.0 and 0.0 <= result["held_out_pixel_auroc"] <= 1.0
    assert f"the {result['test_images'] - 1} test images not in training" in capsys.readouterr().out

    assert main(["eval", str(tiny_dataset), "--corrupt", "2", "--seed-frames", "2", "--min-span", "2", "--image-size", "64",
                 "--json", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["held_out_image_auroc"] is None
    assert "not available: every defective test image is also a training image" in capsys.readouterr().out

    scores, labels = np.array([0.3, 0.1, 0.9, 0.2, 0.8]), np.array([0, 0, 1, 1, 1])
    heat = np.zeros((5, 2, 2), np.float32)
    split = held_out_auroc(scores, heat, labels, None, "no masks", 1.0, np.array([0, 0, 0, 1, 0], bool))
    assert split["held_out_image_auroc"] == auroc(scores[[0, 1, 2, 4]], labels[[0, 1, 2, 4]]) == 1.0
    assert auroc(scores, labels) < 1.0  # the added image (score 0.2) is what pulls the whole set down
    assert held_out_auroc(scores, heat, labels, None, "x", 1.0, np.zeros(5, bool)) == {}
