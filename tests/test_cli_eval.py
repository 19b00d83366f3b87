"""`streamad eval` end to end on a tiny generated dataset, and its error messages."""

import json
import subprocess
import sys

import pytest

from streamad.cli import main

KEYS = {"image_auroc", "pixel_auroc", "filter_precision", "filter_recall", "nominal_patches", "fit_seconds",
        "predict_seconds_per_image"}


def test_eval_writes_json_with_the_documented_keys(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["eval", str(tiny_dataset), "--corrupt", "1", "--seeds", "2", "--min-span", "2",
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
    (["eval", "{tiny}", "--seeds", "0"], "ChannelConfig.seeds must be >= 1, got 0"),
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
