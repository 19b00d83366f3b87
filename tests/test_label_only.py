"""Data sets with image labels only: `eval` (batch and --stream) and `compare` measure what the labels allow.

The fixture is a handful of real MVTec bottle images copied into a temporary folder, with the defect
masks removed, or replaced by masks whose defect lies only in the border the 0.875 centre crop cuts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamad.cli import main
from streamad.errors import UserError
from streamad.evaluation.datasets import load_dataset, read_mask

SMALL = ["--seed-frames", "3", "--min-span", "2", "--quiet"]


def _copy_bottle(bottle: Path, root: Path, masks: str) -> Path:
    """12 training, 3 good and 3 broken_large test images of bottle; ``masks``: 'keep', 'none' (removed),
    'border' (the defect only in a 12-pixel frame outside the centre crop), 'some' (one removed)."""
    for split, n in (("train/good", 12), ("test/good", 3), ("test/broken_large", 3)):
        (root / split).mkdir(parents=True)
        for src in sorted((bottle / split).glob("*.png"))[:n]:
            shutil.copy(src, root / split / src.name)
    if masks == "none":
        return root
    gt = root / "ground_truth" / "broken_large"
    gt.mkdir(parents=True)
    for i, img in enumerate(sorted((root / "test" / "broken_large").glob("*.png"))):
        name = f"{img.stem}_mask.png"
        if masks == "some" and i == 0:
            continue
        if masks == "border":
            h, w = cv2.imread(str(img)).shape[:2]
            m = np.full((h, w), 255, np.uint8)
            m[12:h - 12, 12:w - 12] = 0
            cv2.imwrite(str(gt / name), m)
        else:
            shutil.copy(bottle / "ground_truth" / "broken_large" / name, gt / name)
    return root


@pytest.fixture
def bottle_sets(bottle_dir, tmp_path):
    return lambda masks: _copy_bottle(bottle_dir, tmp_path / f"bottle_{masks}", masks)


def _eval(root: Path, tmp_path: Path, *extra: str) -> tuple[int, dict, str]:
    out = tmp_path / "r.json"
    code = main(["eval", str(root), "--corrupt", "1", "--json", str(out), *SMALL, *extra])
    return code, (json.loads(out.read_text()) if out.exists() else {}), ""


def test_missing_masks_mean_image_labels_only(bottle_sets):
    ds = load_dataset(str(bottle_sets("some")))
    assert len(ds.missing_masks) == 1 and ds.missing_masks[0].endswith("000_mask.png")
    assert ds.pixel_labels_missing().startswith("1 of 3 anomalous test images have no mask")
    bad = [s for s in ds.test if s.label and s.mask_path is None]
    with pytest.raises(ValueError, match="has no mask"):
        read_mask(bad[0], (224, 224))
    assert load_dataset(str(bottle_sets("keep"))).pixel_labels_missing() is None


@pytest.mark.parametrize("stream", [False, True])
def test_eval_without_masks_reports_image_auroc_and_why_no_pixel_auroc(bottle_sets, tmp_path, capsys, stream):
    root = bottle_sets("none")
    code, result, _ = _eval(root, tmp_path, *(["--stream"] if stream else []))
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.err
    assert 0.0 <= result["image_auroc"] <= 1.0
    assert result["pixel_auroc"] is None
    assert result["pixel_auroc_unavailable"].startswith("3 of 3 anomalous test images have no mask")
    # the corrupt training image has no mask either: the filter cannot be judged
    assert result["filter_precision"] is None and "no masks" in result["filter_unavailable"]
    lines = [ln for ln in captured.out.splitlines() if ln.startswith("pixel AUROC")]
    assert len(lines) == 1 and "not available: 3 of 3 anomalous test images have no mask" in lines[0]


def test_eval_with_masks_empty_after_the_crop_does_not_die(bottle_sets, tmp_path, capsys):
    root = bottle_sets("border")
    code, result, _ = _eval(root, tmp_path)
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.err and "both positive and negative" not in captured.err
    assert 0.0 <= result["image_auroc"] <= 1.0 and result["pixel_auroc"] is None
    assert result["pixel_auroc_unavailable"] == "the masks hold no defect pixel inside the 0.875 centre crop"
    assert "pixel AUROC" in captured.out and "no defect pixel inside the 0.875 centre crop" in captured.out
    # the whole image (--center-crop 1) does hold the defects: pixel AUROC is measured again
    code, result, _ = _eval(root, tmp_path, "--center-crop", "1")
    assert code == 0 and 0.0 <= result["pixel_auroc"] <= 1.0 and "pixel_auroc_unavailable" not in result


def test_label_only_image_auroc_equals_the_fully_labelled_one(bottle_sets, tmp_path):
    """Removing the masks changes nothing but the pixel measures."""
    _, full, _ = _eval(bottle_sets("keep"), tmp_path)
    _, bare, _ = _eval(bottle_sets("none"), tmp_path)
    assert full["pixel_auroc"] is not None and full["filter_precision"] is not None
    assert bare["image_auroc"] == full["image_auroc"]
    assert bare["nominal_patches"] == full["nominal_patches"]


def test_compare_without_masks_marks_pixel_auroc_and_says_why(bottle_sets, tmp_path):
    root = bottle_sets("none")
    out = tmp_path / "t.md"
    assert main(["compare", str(root), "--methods", "inreach,spade", "--corrupt", "0,1", "--out", str(out),
                 *SMALL]) == 0
    table = out.read_text()
    rows = [ln for ln in table.splitlines() if ln.startswith("| inreach") or ln.startswith("| spade")]
    assert len(rows) == 2 and all(ln.count("| - ") == 2 for ln in rows)
    assert "Pixel AUROC not available on bottle_none: 3 of 3 anomalous test images have no mask" in table


def test_a_test_set_without_anomalous_images_is_still_refused(bottle_sets):
    root = bottle_sets("none")
    shutil.rmtree(root / "test" / "broken_large")
    with pytest.raises(UserError, match="needs both good and anomalous"):
        load_dataset(str(root))
