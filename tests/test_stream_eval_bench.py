"""`bench-engine --mode hnsw --descriptors`: recall against exact search on descriptors from a file."""

from __future__ import annotations

import json

import numpy as np

from streamad.cli import main
from streamad.bench.streams import RealDescriptors


def test_real_descriptors_repeat_with_noise_past_the_end(tmp_path):
    path = tmp_path / "d.npy"
    x = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)
    np.save(path, x)
    src = RealDescriptors(str(path), noise=0.1, hold_out=1)
    assert src.patches == 4 and src.dim == 5 and np.array_equal(src.held_out, x[2])
    first, second, again = src.next(), src.next(), src.next()
    assert np.array_equal(first, x[0]) and np.array_equal(second, x[1])
    assert not np.array_equal(again, x[0]) and np.abs(again - x[0]).max() < 1.0  # a noisy copy


def test_bench_hnsw_on_descriptors_from_files(tmp_path, capsys):
    rng = np.random.default_rng(1)
    places = rng.normal(size=(16, 8)).astype(np.float32)
    train = places[None] + 0.1 * rng.normal(size=(40, 16, 8)).astype(np.float32)
    test = places[None] + 0.1 * rng.normal(size=(3, 16, 8)).astype(np.float32)
    np.save(tmp_path / "train.npy", train)
    np.save(tmp_path / "test.npy", test)
    out = tmp_path / "h.json"
    assert main(["bench-engine", "--mode", "hnsw", "--descriptors", str(tmp_path / "train.npy"), "--queries",
                 str(tmp_path / "test.npy"), "--hnsw-sizes", "320", "1000", "--hnsw-ef", "64",
                 "--json", str(out)]) == 0
    h = json.loads(out.read_text())["hnsw"]
    assert h["dim"] == 8 and h["patches"] == 16 and h["real_vectors_available"] == 640
    small, big = h["sizes"]["320"], h["sizes"]["1008"]
    assert small["queries"] == 48 and small["tiled_vectors"] == 0 and big["tiled_vectors"] == 1008 - 640
    assert small["graph_elements"] > 0  # the graph answered, not exact search
    assert 0.9 <= small["ef"]["64"]["recall_at_1_by_distance"] <= 1.0
    assert "on " in capsys.readouterr().out
