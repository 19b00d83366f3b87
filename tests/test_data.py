from pathlib import Path

import numpy as np
import pytest

from streamad.evaluation.datasets import load_dataset, patch_truth, read_image, read_mask, training_stream
from streamad.errors import UserError


def test_loads_real_mvtec_bottle(bottle_dir):
    ds = load_dataset(str(bottle_dir))
    assert len(ds.train) == 209
    assert sum(s.label == 0 for s in ds.test) == 20 and sum(s.label == 1 for s in ds.test) == 63
    bad = next(s for s in ds.test if s.label == 1)
    img = read_image(bad.path)
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8
    mask = read_mask(bad, (224, 224))
    assert mask.shape == (224, 224) and mask.any()


def test_loads_real_mtd_grayscale_jpgs(mtd_dir):
    ds = load_dataset(str(mtd_dir))
    assert len(ds.train) == 762
    assert sum(s.label == 0 for s in ds.test) == 190 and sum(s.label == 1 for s in ds.test) == 392
    img = read_image(ds.train[0].path)  # a grayscale JPEG becomes RGB
    assert img.ndim == 3 and img.shape[2] == 3 and (img[..., 0] == img[..., 1]).all()


def test_tiny_png_and_grayscale_jpg(tmp_path, make_dataset):
    for gray in (False, True):
        ds = load_dataset(str(make_dataset(tmp_path / f"d{gray}", gray=gray)))
        assert len(ds.train) == 6 and len(ds.test) == 4
        assert read_image(ds.train[0].path).shape == (64, 64, 3)


def test_clear_errors(tmp_path, make_dataset):
    with pytest.raises(UserError, match="dataset folder not found"):
        load_dataset(str(tmp_path / "nope"))
    (tmp_path / "empty" / "train" / "good").mkdir(parents=True)
    (tmp_path / "empty" / "test").mkdir()
    with pytest.raises(UserError, match="no training images"):
        load_dataset(str(tmp_path / "empty"))
    root = make_dataset(tmp_path / "nomask")
    (root / "ground_truth" / "scratch" / "000_mask.png").unlink()
    # a missing mask is no longer an error: the data set has image labels only (tests/test_label_only.py)
    assert "1 of 2 anomalous test images have no mask" in load_dataset(str(root)).pixel_labels_missing()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(UserError, match="cannot read image"):
        read_image(str(bad))


def test_corruption_protocol_is_seeded_and_adds_anomalous_images(tiny_dataset):
    ds = load_dataset(str(tiny_dataset))
    order, added = training_stream(ds, corrupt=2, seed=3)
    again, _ = training_stream(ds, corrupt=2, seed=3)
    other, _ = training_stream(ds, corrupt=2, seed=4)
    assert order == again and order != other
    assert len(order) == 8 and all(s.label == 1 for s in added) and set(added) <= set(order)
    with pytest.raises(UserError, match="--corrupt must be between 0 and 2"):
        training_stream(ds, corrupt=3, seed=0)


def test_patch_truth_marks_cells_touching_the_mask():
    m = np.zeros((2, 8, 8), bool)
    m[1, 5, 6] = True
    truth = patch_truth(m, (4, 4))
    assert truth[0].all()
    assert (~truth[1]).sum() == 1 and not truth[1][2 * 4 + 3]


def test_resolve_data_dir(tmp_path, monkeypatch):
    from streamad.evaluation.datasets import resolve_data_dir

    (tmp_path / "root" / "mvtec_ad" / "bottle").mkdir(parents=True)
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    monkeypatch.setenv("STREAMAD_DATA", str(tmp_path / "root"))
    assert resolve_data_dir("mvtec_ad/bottle") == str(tmp_path / "root" / "mvtec_ad" / "bottle")
    assert resolve_data_dir("mvtec_ad/bottle", str(tmp_path / "root")) == str(tmp_path / "root" / "mvtec_ad" / "bottle")
    (tmp_path / "here" / "mvtec_ad" / "bottle").mkdir(parents=True)  # an existing path is used as given
    assert resolve_data_dir("mvtec_ad/bottle") == "mvtec_ad/bottle"
    assert resolve_data_dir("/no/such/place") == "/no/such/place"  # absolute: load_dataset names it
    monkeypatch.delenv("STREAMAD_DATA")
    with pytest.raises(UserError, match="looked in .*other.*set STREAMAD_DATA"):
        resolve_data_dir("other")
