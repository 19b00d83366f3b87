"""Leave-one-out scoring of training images (``InReaCh.fit_predict``, ``predict(..., leave_out=...)``,
``eval --leave-one-out``): each against the other images' nominal patches, checked by brute force."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamad.batch.inreach import InReaCh, InReaChPatchModel
from streamad.cli import main
from streamad.core.reweight import reweighted_scores
from streamad.config import ChannelConfig, IndexConfig, InReachConfig, PositionalConfig
from streamad.testing.standin import BlockMeans


def _train(n: int = 14, grid: int = 6, d: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    looks = rng.normal(size=(grid * grid, d)).astype(np.float32)  # one look per position, jittered per image
    return (looks[None] + 0.05 * rng.normal(size=(n, grid * grid, d))).astype(np.float32)


def _brute_force(model: InReaChPatchModel, train: np.ndarray, test: np.ndarray, leave_out: np.ndarray) -> np.ndarray:
    nominal = train[model.nominal_mask_]
    owner = np.nonzero(model.nominal_mask_)[0]
    out = np.empty(test.shape[:2], np.float32)
    for m in range(len(test)):
        pool = nominal[owner != leave_out[m]] if leave_out[m] >= 0 else nominal
        out[m] = np.sqrt(((test[m][:, None] - pool[None]) ** 2).sum(-1)).min(1)
    return out


@pytest.mark.parametrize("index", [IndexConfig(), IndexConfig(exact_below=1)], ids=["exact", "hnsw"])
def test_leave_one_out_patch_scores_equal_brute_force(index):
    train = _train()
    model = InReaChPatchModel(ChannelConfig(seeds=3, min_span=2), index=index).fit_descriptors(train, (6, 6))
    leave_out = np.array([0, 5, -1, 13])
    test = train[[0, 5, 2, 13]]
    got = model.patch_scores(test, leave_out)
    np.testing.assert_allclose(got, _brute_force(model, train, test, leave_out), rtol=1e-5, atol=1e-5)
    # without leave-out a training image's trusted patches match themselves; left out, none does
    plain = model.patch_scores(test)
    assert (plain[0][model.nominal_mask_[0]] < 1e-3).all() and (got[0][model.nominal_mask_[0]] > 1e-2).all()
    np.testing.assert_array_equal(got[2], plain[2])  # -1: scored against everything, as before
    np.testing.assert_array_equal(model.patch_scores(test, np.full(4, -1)), plain)


def test_reweighted_image_score_leaves_the_image_out_too():
    """Eq. 7 with leave-out, on a trusted worst patch (patch scores given: 1 on the image's first trusted
    patch): its nearest nominal patch among the other images, that patch's neighbourhood, by brute force."""
    train, b = _train(), 3
    model = InReaChPatchModel(ChannelConfig(seeds=3, min_span=2), reweight_neighbors=b).fit_descriptors(train, (6, 6))
    x, lo = train[:2], np.array([0, 1])
    given = model.nominal_mask_[:2].astype(np.float32)
    nominal, owner = train[model.nominal_mask_], np.nonzero(model.nominal_mask_)[0]
    m = x[[0, 1], given.argmax(1)]
    want = []
    for i in range(2):
        d = np.linalg.norm(nominal - m[i], axis=1)
        d[owner == lo[i]] = np.inf
        near = nominal[int(d.argmin())]
        hood = nominal[np.argsort(np.linalg.norm(nominal - near, axis=1), kind="stable")[:b]]
        want.append(reweighted_scores(m[i:i + 1], d.min(keepdims=True), hood[None])[0])
    np.testing.assert_allclose(model.image_scores(x, patch_scores=given, leave_out=lo), want, rtol=1e-4)
    assert (model.image_scores(x, patch_scores=given) == 0).all()  # not left out: the patch matches itself


def test_fit_predict_finds_the_defective_training_image_that_predict_hides():
    """A defect seen in three images forms a channel of its own and is trusted: predict then scores those
    images' defect patches 0 (they match themselves); fit_predict scores them against the others."""
    rng = np.random.default_rng(1)
    images = [np.clip(rng.normal(105, 3, (32, 32, 3)), 0, 255).astype(np.uint8) for _ in range(12)]
    for i in (0, 4, 7):
        images[i][8:16, 8:16] = (250, 40 + 6 * i, 40)  # alike, not identical
    config = InReachConfig(channels=ChannelConfig(seeds=2, min_span=2), positional=PositionalConfig(mode="off"),
                           seed_choice="first")  # image 0, defective, seeds the channels
    detector = InReaCh(config, extractor=BlockMeans((4, 4), (32, 32)))
    loo = detector.fit_predict(images)
    assert detector.nominal_mask_[[0, 4, 7], 5].all()  # the defect patch (block 1, 1) is trusted
    plain = detector.predict(images)
    assert plain.patch_scores[0, 1, 1] == 0.0
    assert loo.patch_scores[0, 1, 1] > 0.0
    np.testing.assert_array_equal(detector.predict(images, leave_out=list(range(12))).patch_scores, loo.patch_scores)


@pytest.mark.parametrize("leave_out, message", [([0, 1], "one int per image (3)"), ([0, 1, 99], "0 to 11"),
                                                 ([0, 1, -2], "each -1"), ([0.5, 1, 2], "one int per image")])
def test_bad_leave_out_is_refused_naming_it(leave_out, message):
    detector = InReaCh(InReachConfig(channels=ChannelConfig(seeds=2, min_span=2)), extractor=BlockMeans())
    train = _train(n=12, grid=4, d=3)
    detector.fit_descriptors(train)
    with pytest.raises(ValueError, match="leave_out") as err:
        detector.predict_descriptors(train[:3], leave_out=leave_out)
    assert message in str(err.value)


def test_eval_leave_one_out_scores_the_added_images_against_the_others(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "r.json"
    base = ["eval", str(tiny_dataset), "--corrupt", "2", "--seed-frames", "2", "--min-span", "2", "--image-size", "64",
            "--json", str(out), "--quiet"]
    assert main(base) == 0
    plain = json.loads(out.read_text())
    assert main(base + ["--leave-one-out"]) == 0
    loo = json.loads(out.read_text())
    assert loo["leave_one_out"] and not plain["leave_one_out"]
    assert loo["nominal_patches"] == plain["nominal_patches"]  # the same fit; only the scoring differs
    assert "leave-one-out" in capsys.readouterr().out
    for extra, message in ((["--stream"], "--leave-one-out applies to batch"),
                           (["--method", "patchcore"], "--leave-one-out applies to --method inreach")):
        assert main(base + ["--leave-one-out"] + extra) == 2
        assert message in capsys.readouterr().err
