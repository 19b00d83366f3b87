"""`eval --stream`: the training stream replayed through the streaming engine gives exactly the batch
nominal set when the window holds everything (real bottle images), the engine equals the oracle on a
smaller window, and the CLI writes the documented keys."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from streamad.core.channels import nominal_mask
from streamad.cli import main
from streamad.config import ChannelConfig, FeatureConfig, InReachConfig, StreamConfig
from streamad.evaluation.datasets import load_dataset, read_image, training_stream
from streamad.evaluation.stream_eval import evaluate_stream, replay_stream
from streamad.vision.features import PatchFeatureExtractor
from streamad.batch.inreach import InReaChPatchModel

# The batch eval keys, and what --stream / --check-batch add.
KEYS = {"image_auroc", "pixel_auroc", "filter_precision", "filter_recall", "nominal_patches", "fit_seconds",
        "predict_seconds_per_image"}
STREAM_KEYS = {"mode", "window", "window_holds_all", "seeds_at_end", "promotions", "replay_seconds"}
CHECK_KEYS = {"batch_nominal_patches", "nominal_sets_identical", "batch_image_auroc", "batch_pixel_auroc",
              "window_oracle_identical", "nominal_sets_symmetric_difference"}
SMALL = FeatureConfig(image_size=(96, 96), grid=(12, 12))  # 144 patches a frame: exact search in both


def link_real_subset(src: Path, dst: Path, n_train: int, defect: str, n_good: int, n_bad: int) -> Path:
    """A small MVTec-layout dataset of symlinks to real images (nothing copied)."""
    for sub in ("train/good", "test/good", f"test/{defect}", f"ground_truth/{defect}"):
        (dst / sub).mkdir(parents=True)
    picks = [("train/good", n_train), ("test/good", n_good), (f"test/{defect}", n_bad)]
    for sub, count in picks:
        for name in sorted(os.listdir(src / sub))[:count]:
            os.symlink(src / sub / name, dst / sub / name)
            if sub.startswith("test/") and sub != "test/good":
                mask = f"{Path(name).stem}_mask.png"
                os.symlink(src / "ground_truth" / defect / mask, dst / "ground_truth" / defect / mask)
    return dst


@pytest.fixture(scope="module")
def real_bottles(tmp_path_factory, bottle_dir) -> Path:
    return link_real_subset(bottle_dir, tmp_path_factory.mktemp("bottle") / "bottle", 10, "broken_large", 2, 3)


@pytest.fixture(scope="module")
def real_descriptors(real_bottles):
    """Descriptors of the corrupted training stream (in stream order) and of the test set."""
    ds = load_dataset(str(real_bottles))
    order, added = training_stream(ds, corrupt=2, seed=0)
    ex = PatchFeatureExtractor(SMALL)
    train = ex([read_image(s.path) for s in order])
    test = ex([read_image(s.path) for s in ds.test])
    return ex, train, test, order, added


def test_replay_holding_everything_gives_the_batch_nominal_set_on_real_images(real_descriptors):
    ex, train, test, order, added = real_descriptors
    channels = ChannelConfig(seeds=3)
    batch = InReaChPatchModel(channels).fit_descriptors(train, ex.grid)
    n = len(train)
    replay = replay_stream(train, test, StreamConfig(window=n, channels=channels, features=SMALL), ex)
    assert replay.window_frames == list(range(n)) and replay.detector.channels.seeds == [0, 1, 2]
    assert 0 < batch.nominal_count_ < batch.nominal_mask_.size  # the filter really filters
    assert replay.nominal_mask.sum() == batch.nominal_count_
    assert (replay.nominal_mask == batch.nominal_mask_).all()
    # the index holds that set, so test scores equal batch scores (both exact below 2000 vectors)
    want = batch.patch_scores(test).reshape(replay.patch_scores.shape)
    np.testing.assert_allclose(replay.patch_scores, want, rtol=0, atol=1e-5)
    # corrupt frames lose patches: some of their patches are not nominal
    corrupt_rows = [i for i, s in enumerate(order) if s in added]
    assert corrupt_rows and (~replay.nominal_mask[corrupt_rows]).sum() > 0


def test_replay_with_a_small_window_equals_the_oracle_on_its_final_window(real_descriptors):
    ex, train, test, _, _ = real_descriptors
    channels = ChannelConfig(seeds=3)
    replay = replay_stream(train, test, StreamConfig(window=6, channels=channels, features=SMALL), ex)
    frames = replay.window_frames
    assert frames == list(range(len(train) - 6, len(train)))
    seeds = replay.detector.channels.seeds
    assert replay.promotions > 0 and all(s in frames for s in seeds)
    oracle = nominal_mask(train[frames], [frames.index(s) for s in seeds], channels)
    assert oracle.any() and (replay.nominal_mask == oracle).all()
    # ... and that is not the batch set of the whole stream
    batch = InReaChPatchModel(channels).fit_descriptors(train, ex.grid)
    assert replay.nominal_mask.sum() != batch.nominal_count_


def test_evaluate_stream_check_batch_on_real_bottles(real_bottles):
    config = InReachConfig(features=SMALL, channels=ChannelConfig(seeds=3), seed=0)
    r = evaluate_stream(str(real_bottles), corrupt=2, config=config, progress=False, check_batch=True)
    assert KEYS | STREAM_KEYS | CHECK_KEYS <= set(r)
    assert r["mode"] == "stream" and r["window"] == r["train_images"] == 12 and r["window_holds_all"]
    assert r["seeds_at_end"] == [0, 1, 2] and r["promotions"] == 0
    assert r["nominal_sets_identical"] and r["nominal_sets_symmetric_difference"] == 0
    assert r["nominal_patches"] == r["batch_nominal_patches"] > 0 and r["window_oracle_identical"]
    assert r["image_auroc"] == r["batch_image_auroc"] and r["pixel_auroc"] == r["batch_pixel_auroc"]
    assert r["held_out_test_images"] == r["test_images"] - 2 and 0.0 <= r["held_out_image_auroc"] <= 1.0
    assert r["filter_precision"] == r["batch_filter_precision"] and r["filter_recall"] == r["batch_filter_recall"]
    assert r["pixel_auroc"] > 0.8  # it finds the broken bottles' defects


def test_cli_stream_json_keys_positions_cache_and_small_window(tiny_dataset, tmp_path, capsys):
    out, cache = tmp_path / "s.json", tmp_path / "cache"
    base = ["eval", str(tiny_dataset), "--corrupt", "1", "--seed-frames", "2", "--min-span", "2", "--image-size", "64",
            "--quiet", "--stream", "--check-batch", "--positional", "on", "--cache", str(cache), "--json", str(out)]
    assert main(base + ["--exact-reference"]) == 0
    r = json.loads(out.read_text())
    # below 2000 nominal patches the index searches exactly: the exact reference agrees to the bit
    assert r["exact_patch_scores_share_equal"] == 1.0 and r["exact_image_auroc"] == r["image_auroc"]
    assert KEYS | STREAM_KEYS | CHECK_KEYS <= set(r)
    assert r["mode"] == "stream" and r["window"] == r["train_images"] == 7 and not r["descriptors_cached"]
    assert r["held_out_test_images"] == r["test_images"] - 1
    # positions appended in both, as the batch decision says, and the sets agree
    assert r["uses_positions"] and r["nominal_sets_identical"] and r["window_oracle_identical"]
    assert r["image_auroc"] == r["batch_image_auroc"] and r["pixel_auroc"] == r["batch_pixel_auroc"]
    table = capsys.readouterr().out
    assert "holds the whole training stream" in table and "identical to stream: yes" in table
    stored = np.load(next(cache.glob("*.train.npy")))
    assert stored.shape[0] == 7 and stored.shape[2] + 2 == 154  # cached without positions
    assert main(base + ["--window", "5"]) == 0
    s = json.loads(out.read_text())
    assert s["descriptors_cached"] and len(list(cache.glob("*.train.npy"))) == 1
    assert s["window"] == 5 and s["window_frames"] == 5 and not s["window_holds_all"] and s["promotions"] > 0
    assert not s["nominal_sets_identical"] and s["window_oracle_identical"]
    assert "identical to stream: no" in capsys.readouterr().out
    assert main(base + ["--window", "100000"]) == 0  # more than the stream: holds it all, costs what it holds
    big = json.loads(out.read_text())
    assert big["window"] == 7 and big["window_holds_all"] and big["nominal_sets_identical"]


@pytest.mark.parametrize("extra, message", [
    (["--window", "8"], "--window only apply with --stream"),
    (["--check-batch"], "--check-batch only apply with --stream"),
    (["--stream", "--method", "spade"], "--method spade has no streaming engine"),
    (["--stream", "--window", "2"], "StreamConfig.window must be an int > channels.seeds (2)"),
])
def test_cli_stream_option_errors(tiny_dataset, capsys, extra, message):
    argv = ["eval", str(tiny_dataset), "--seed-frames", "2", "--min-span", "1", "--image-size", "64", "--quiet"] + extra
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
