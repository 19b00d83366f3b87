"""--corrupt-list: the corrupting test images named in a list (the InReaCh paper's MVTec protocol)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamad.cli import main
from streamad.errors import UserError
from streamad.evaluation.datasets import load_dataset, read_corrupt_list, training_stream

PAPER_BOTTLE = Path(__file__).resolve().parents[1] / "docs" / "splits" / "inreach_paper_bottle.txt"


def test_the_listed_images_join_the_training_set_good_ones_too(tiny_dataset, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("# a comment\ngood/001.png\n\nscratch/000.png  # defective\nscratch/001.png\n")
    chosen = read_corrupt_list(str(listing))
    assert chosen == ["good/001.png", "scratch/000.png", "scratch/001.png"]
    ds = load_dataset(str(tiny_dataset))
    order, added = training_stream(ds, 2, seed=0, chosen=chosen)
    assert [Path(s.path).relative_to(tiny_dataset / "test").as_posix() for s in added] == chosen[:2]
    assert [s.label for s in added] == [0, 1] and len(order) == len(ds.train) + 2
    assert training_stream(ds, 2, seed=0, chosen=chosen)[0] == order  # seeded
    out = tmp_path / "r.json"
    assert main(["eval", str(tiny_dataset), "--corrupt", "2", "--corrupt-list", str(listing), "--seed-frames", "2",
                 "--min-span", "1", "--image-size", "64", "--json", str(out), "--quiet"]) == 0
    r = json.loads(out.read_text())
    assert r["train_images"] == 8 and r["corrupt_defective"] == 1 and r["corrupt_from_list"] is True


def test_bad_lists_are_refused_in_one_line(tiny_dataset, tmp_path, capsys):
    ds = load_dataset(str(tiny_dataset))
    with pytest.raises(UserError, match="not in the test set .*e.g. scratch/009.png"):
        training_stream(ds, 1, 0, chosen=["scratch/009.png"])
    with pytest.raises(UserError, match="between 0 and 1 \\(the images of --corrupt-list\\), got 2"):
        training_stream(ds, 2, 0, chosen=["scratch/000.png"])
    with pytest.raises(UserError, match="names a test image twice"):
        training_stream(ds, 2, 0, chosen=["scratch/000.png", "scratch/000.png"])
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    assert main(["eval", str(tiny_dataset), "--corrupt", "1", "--corrupt-list", str(empty), "--quiet"]) == 2
    assert "names no test image" in capsys.readouterr().err
    assert main(["eval", str(tiny_dataset), "--corrupt", "1", "--corrupt-list", str(tmp_path / "no.txt"),
                 "--quiet"]) == 2
    assert "cannot read --corrupt-list" in capsys.readouterr().err


def test_the_paper_s_bottle_list_names_real_test_images(bottle_dir):
    chosen = read_corrupt_list(str(PAPER_BOTTLE))
    assert len(chosen) == 40 and sum(c.startswith("good/") for c in chosen) == 12
    assert sum(c.startswith("good/") for c in chosen[:10]) == 4
    order, added = training_stream(load_dataset(str(bottle_dir)), 40, 0, chosen=chosen)
    assert len(added) == 40 and sum(s.label for s in added) == 28
