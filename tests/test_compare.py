"""`streamad compare`: the method x K grid, its Markdown table, and equality with `streamad eval`."""

from __future__ import annotations

import argparse
import json

import pytest

from streamad.cli import compare, main
from streamad.cli.eval import config_from_args
from streamad.errors import UserError
from streamad.evaluation import batch_eval, comparison
from streamad.evaluation.comparison import evaluate_shared
from streamad.evaluation.descriptor_cache import SharedDescriptors

TINY = ["--image-size", "64", "--seed-frames", "2", "--min-span", "2", "--quiet"]


def compare_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    compare.add_arguments(parser)
    return compare.run(parser.parse_args(argv))


def fake_runs(monkeypatch, score) -> list:
    calls = []

    def fake(shared, method, corrupt, seed):
        calls.append((method, corrupt, seed, shared.config.seed))
        return {"dataset": shared.data_dir, "method": method, "corrupt": corrupt,
                **score(shared.data_dir, method, corrupt)}

    monkeypatch.setattr(comparison, "evaluate_shared", fake)
    return calls


def test_compare_gives_the_results_of_eval_for_every_method(tiny_dataset, tmp_path):
    """Descriptors extracted once and shared: each method's AUROCs equal `streamad eval --method M`'s."""
    parser = argparse.ArgumentParser()
    compare.add_arguments(parser)
    config = config_from_args(parser.parse_args([str(tiny_dataset)] + TINY))
    shared = SharedDescriptors(str(tiny_dataset), config, cache=str(tmp_path / "cache"))
    for method in compare.METHODS:
        got = evaluate_shared(shared, method, 1, 3)
        want = batch_eval.evaluate(str(tiny_dataset), method=method, corrupt=1, seed=3, config=config, progress=False)
        for key in ("image_auroc", "pixel_auroc", "train_images", "test_images", "filter_recall", "nominal_patches"):
            assert got.get(key) == want.get(key), (method, key)
        assert got["descriptors_shared"] is True
    assert evaluate_shared(shared, "pni", 1, 3)["refinement_network"] is False
    # a second run on the same settings reads the cache, descriptors included
    again = SharedDescriptors(str(tiny_dataset), config, cache=str(tmp_path / "cache"),
                              extractor_factory=lambda *a: pytest.fail("the cached descriptors must be reused"))
    assert evaluate_shared(again, "spade", 1, 3)["pixel_auroc"] == evaluate_shared(shared, "spade", 1, 3)["pixel_auroc"]
    assert again.stream(1, 3)[1].shape[0] == 7


def test_compare_runs_the_grid_and_writes_table_and_json(tiny_dataset, tmp_path, monkeypatch):
    calls = fake_runs(monkeypatch, lambda ds, m, k: {"image_auroc": 0.5 + k / 10,
                                                      "pixel_auroc": 0.25 + (m == "spade") / 2})
    out, js = tmp_path / "t.md", tmp_path / "r.json"
    assert compare_main([str(tiny_dataset), "--methods", "patchcore,spade", "--corrupt", "0,2", "--seed", "4",
                         "--out", str(out), "--json", str(js), "--quiet"]) == 0
    assert calls == [("patchcore", 0, 4, 4), ("spade", 0, 4, 4), ("patchcore", 2, 4, 4), ("spade", 2, 4, 4)]
    table = out.read_text()
    assert "| method | image AUROC K=0 | image AUROC K=2 | pixel AUROC K=0 | pixel AUROC K=2 |" in table
    assert "| patchcore | 0.500 | 0.700 | 0.250 | 0.250 |" in table
    assert "| spade | 0.500 | 0.700 | 0.750 | 0.750 |" in table
    assert len(json.loads(js.read_text())["results"]) == 4


def test_compare_averages_a_folder_of_datasets(make_dataset, tmp_path, monkeypatch, capsys):
    for name in ("a", "b"):
        make_dataset(tmp_path / "root" / name)
    fake_runs(monkeypatch, lambda ds, m, k: {"image_auroc": {"a": 0.6, "b": 0.8}[ds[-1]], "pixel_auroc": 0.5})
    assert compare_main([str(tmp_path / "root"), "--methods", "pni", "--corrupt", "0", "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "| a | pni | 0.600 | 0.500 |" in table and "| mean | pni | 0.700 | 0.500 |" in table


@pytest.mark.parametrize("argv, message", [
    (["{tiny}", "--corrupt", "0,5"], "--corrupt 5 is more than the 2 anomalous test images"),
    (["{tiny}", "--out", "no/such/dir/t.md"], "folder no/such/dir does not exist"),
    (["{tmp}"], "is neither a dataset"),
])
def test_compare_user_errors_come_before_the_run(tiny_dataset, tmp_path, argv, message, monkeypatch):
    monkeypatch.setattr(comparison, "evaluate_shared", lambda *a, **k: pytest.fail("nothing must run"))
    (tmp_path / "empty").mkdir()
    argv = [a.replace("{tiny}", str(tiny_dataset)).replace("{tmp}", str(tmp_path / "empty")) for a in argv]
    with pytest.raises(UserError, match=message):
        compare_main(argv + ["--quiet"])


def test_compare_rejects_unknown_methods_and_bad_counts(capsys):
    for argv in (["x", "--methods", "patchcore,knn"], ["x", "--corrupt", "0,-1"]):
        with pytest.raises(SystemExit):
            compare_main(argv)
    err = capsys.readouterr().err
    assert "unknown method 'knn'" in err and "integers >= 0" in err


def test_compare_is_a_streamad_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["compare", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--methods" in out and "--corrupt" in out and "--cache" in out
