"""Saving and loading the full engine state (streamad.stream.persistence): exact resume, atomic saves,
clear refusals of unusable states, and ``streamad watch --state`` (resume, periodic and shutdown
saves, failed saves that never stop the loop)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamad import cli
from streamad.index import graph_state as graph_io
from streamad.stream import persistence
from streamad.config import ChannelConfig, DecisionConfig, IndexConfig, MemoryConfig, StreamConfig
from streamad.stream.decisions import ScoreDecisions
from streamad.stream.detector import StreamDetector
from streamad.stream.persistence import StateError
from streamad.testing.standin import StandInDetector

watch_cmd = importlib.import_module("streamad.cli.watch")

GRID, P, D = (4, 4), 16, 8
SHAPE = (16, 16)


class Toy:
    """Enough of an extractor for ``process_descriptors``."""

    grid, image_size = GRID, SHAPE


def config(exact_below: int = 10 ** 6, drift: str = "adwin", rule: str = "trusted", **kw) -> StreamConfig:
    return StreamConfig(window=10, channels=ChannelConfig(seeds=2, min_span=2),
                        decisions=DecisionConfig(rule=rule, warmup=3, calibration_size=20, drift=drift, quantile=0.9,
                                                 drift_delta=0.2),
                        index=IndexConfig(exact_below=exact_below, M=4, ef_construction=16, ef=8), **kw)


def stream(n: int = 100, seed: int = 0, shift_at: int = 40) -> list[np.ndarray]:
    """A static scene with a defect patch every 9th frame; from ``shift_at`` on the scene gets noisier,
    so scores rise for good (ADWIN flags it at frame 73)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(P, D))
    out = []
    for i in range(n):
        f = base + (0.05 if i < shift_at else 0.3) * rng.normal(size=(P, D))
        if i % 9 == 4:
            f[rng.integers(P)] += 2.0
        out.append(f.astype(np.float32))
    return out


def run(det: StreamDetector, frames: list[np.ndarray], start: int = 0) -> list:
    return [det.process_descriptors(f, SHAPE, timestamp=float(start + i)) for i, f in enumerate(frames)]


def assert_same_results(got: list, want: list) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert (a.index, a.ready, a.score, a.threshold, a.anomalous, a.drift, a.admitted, a.timestamp) == (
            b.index, b.ready, b.score, b.threshold, b.anomalous, b.drift, b.admitted, b.timestamp), a.index
        for x, y in ((a.patch_scores, b.patch_scores), (a.heatmap, b.heatmap)):
            assert (x is None and y is None) or np.array_equal(x, y), a.index


def assert_same_state(a: StreamDetector, b: StreamDetector, skip: tuple[str, ...] = ()) -> None:
    """Every saved item of the two engines is equal (arrays exactly, inf included)."""
    assert a.channels.nominal_keys() == b.channels.nominal_keys()
    assert (a.channels.window_frames(), a.channels.seeds) == (b.channels.window_frames(), b.channels.seeds)
    parts = (("detector", a.state_dict(), b.state_dict()),
             ("channels", a.channels.state_dict(), b.channels.state_dict()),
             ("decisions", a.decisions.state_dict(), b.decisions.state_dict()),
             ("index", a.index.state_dict(), b.index.state_dict()))
    for name, sa, sb in parts:
        assert sa.keys() == sb.keys(), name
        if "hnsw.label_lookup_external" in sa:   # a hash map, saved in its iteration order: compare as a map
            for s in (sa, sb):
                s["label_map"] = sorted(zip(s.pop("hnsw.label_lookup_external").tolist(),
                                            s.pop("hnsw.label_lookup_internal").tolist()))
        for key in sa:
            if key in skip:
                continue
            if isinstance(sa[key], np.ndarray):
                assert sa[key].dtype == sb[key].dtype and np.array_equal(sa[key], sb[key]), f"{name}.{key}"
            else:
                assert sa[key] == sb[key], f"{name}.{key}"
    assert a.decisions.threshold == b.decisions.threshold


def resumed_run(tmp_path: Path, cfg: StreamConfig, frames: list, stops: list[int]) -> tuple[StreamDetector, list]:
    """Process ``frames``, saving and reloading (a new detector each time) at every index in ``stops``."""
    det = StreamDetector(cfg, extractor=Toy())
    results: list = []
    for lo, hi in zip([0, *stops], [*stops, len(frames)]):
        if lo:
            det.save(tmp_path / "state")
            det = StreamDetector.load(tmp_path / "state", extractor=Toy(), config=cfg)
        results += run(det, frames[lo:hi], lo)
    return det, results


# -- exact resume ------------------------------------------------------------------------------------


@pytest.mark.parametrize("admit_every, admit_interval_s, rule", [(1, None, "quantile"), (3, None, "quantile"),
                                                                 (1, 1.5, "quantile"), (1, None, "trusted")])
def test_resume_with_exact_search_gives_the_same_results_and_state(tmp_path: Path, admit_every: int,
                                                                   admit_interval_s: float | None, rule: str) -> None:
    cfg, frames = config(admit_every=admit_every, admit_interval_s=admit_interval_s, rule=rule), stream()
    ref = StreamDetector(cfg, extractor=Toy())
    want = run(ref, frames)
    assert sum(r.anomalous for r in want[31:]) >= 3 and want[60].threshold is not None  # the test has teeth
    assert ref.decisions.trusted > 20 if rule == "trusted" else ref.decisions.trusted == 0
    assert sum(r.admitted for r in want) == {1: 100, 3: 34, 1.5: 50}[admit_interval_s or admit_every]
    assert not ref.index.uses_graph
    det, got = resumed_run(tmp_path, cfg, frames, [5, 31, 62])   # stops between admissions, too
    assert_same_results(got, want)
    assert_same_state(det, ref)
    assert det.frames_seen == 100 and det.decisions.drifts == ref.decisions.drifts
    if admit_every == 1 and admit_interval_s is None and rule == "quantile":
        assert sum(r.drift for r in want[62:]) >= 1           # ADWIN's flag after a restart depends on its replay


def test_resume_with_the_hnsw_graph_grows_the_same_graph(tmp_path: Path) -> None:
    cfg, frames = config(exact_below=0), stream()
    ref = StreamDetector(cfg, extractor=Toy())
    want = run(ref, frames[:5])
    at_first_stop = ref.index._hnsw.get_current_count()
    want += run(ref, frames[5:], 5)
    assert ref.index.uses_graph and ref.index._hnsw.get_current_count() > at_first_stop  # new elements after a stop
    det, got = resumed_run(tmp_path, cfg, frames, [5, 30, 60])   # three restarts: the seed is fast-forwarded each time
    assert det.index.uses_graph
    assert_same_results(got, want)
    assert_same_state(det, ref)      # index.hnsw.* included: levels, links and data of every element


def test_without_fast_forward_the_restored_graph_would_differ(tmp_path: Path, monkeypatch) -> None:
    """The check above can fail: a graph restored with the plain seed grows differently."""
    monkeypatch.setattr(graph_io, "levels_resume_exactly", lambda: False)
    cfg, frames = config(exact_below=0), stream()
    ref = StreamDetector(cfg, extractor=Toy())
    run(ref, frames)
    det, _ = resumed_run(tmp_path, cfg, frames, [5])
    levels = "hnsw.element_levels"
    assert not np.array_equal(det.index.state_dict()[levels], ref.index.state_dict()[levels])


def test_a_failing_level_probe_warns_once_and_still_saves(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(graph_io, "_RESUMES_EXACTLY", None)
    monkeypatch.setattr(graph_io, "_probe", lambda: False)
    det = StreamDetector(config(exact_below=0), extractor=Toy())
    run(det, stream(8))
    with pytest.warns(RuntimeWarning, match="HNSW answers may differ within its recall"):
        det.save(tmp_path / "a")
    det.save(tmp_path / "b")                   # no second warning (pytest's filter would turn one into an error)
    assert graph_io.graph_state(det.index._hnsw, 0)["seed"] == 0
    back = StreamDetector.load(tmp_path / "b", extractor=Toy())
    assert back.index.uses_graph and len(back.index) == len(det.index)


def test_the_real_level_probe_passes_here() -> None:
    assert graph_io._probe() is True
    assert graph_io.fast_forward_seed(5, 0) == 5 and graph_io.fast_forward_seed(2 ** 31 - 1, 0) == 1


@pytest.mark.parametrize("drift", ["adwin", "kswin", "page_hinkley"])
def test_decisions_replay_gives_the_same_thresholds_and_drift_flags(drift: str) -> None:
    rng = np.random.default_rng(1)
    scores = np.concatenate([0.2 + 0.02 * rng.normal(size=150), 1.0 + 0.2 * rng.normal(size=150)]).tolist()
    cfg = DecisionConfig(rule="quantile", warmup=5, calibration_size=30, drift=drift, drift_delta=0.05)
    ref = ScoreDecisions(cfg, seed=3)
    want = [ref.update(s) for s in scores]
    assert sum(d.drift for d in want[160:]) >= 1
    dec = ScoreDecisions(cfg, seed=3)
    got = [dec.update(s) for s in scores[:160]]
    dec = ScoreDecisions.from_state(dec.state_dict(), cfg, seed=3)
    got += [dec.update(s) for s in scores[160:]]
    assert got == want and (dec.count, dec.drifts) == (ref.count, ref.drifts)


def test_decision_history_is_bounded_and_the_threshold_stays_exact(monkeypatch) -> None:
    import streamad.stream.decisions as decisions

    monkeypatch.setattr(decisions, "DRIFT_HISTORY_MAX", 50)
    cfg = DecisionConfig(rule="quantile", warmup=5, calibration_size=20, drift="adwin")
    scores = np.random.default_rng(2).random(130).tolist()
    ref = ScoreDecisions(cfg)
    for s in scores[:120]:
        ref.update(s)
    state = ref.state_dict()
    assert len(state["history"]) == 50 and state["history"].tolist() == scores[70:120] and state["count"] == 120
    back = ScoreDecisions.from_state(state, cfg)
    assert [back.update(s).threshold for s in scores[120:]] == [ref.update(s).threshold for s in scores[120:]]
    assert back.history().tolist() == ref.history().tolist() == scores[80:130]


def test_fresh_and_warming_up_detectors_round_trip(tmp_path: Path) -> None:
    cfg = config()
    det = StreamDetector(cfg, extractor=Toy())
    det.save(tmp_path / "fresh")
    back = StreamDetector.load(tmp_path / "fresh", extractor=Toy())
    assert back.index is None and back.frames_seen == 0 and back.config == cfg
    frames = stream(20)
    assert_same_results(run(back, frames), run(det, frames))


# -- atomic saves ------------------------------------------------------------------------------------


def saved(tmp_path: Path, n: int = 20, name: str = "state") -> tuple[StreamDetector, Path]:
    det = StreamDetector(config(), extractor=Toy())
    run(det, stream(n))
    return det, det.save(tmp_path / name)


def test_saving_twice_replaces_the_state_and_leaves_nothing_behind(tmp_path: Path) -> None:
    det, path = saved(tmp_path)
    run(det, stream(10, seed=5), 20)
    det.save(path)
    assert StreamDetector.load(path, extractor=Toy()).frames_seen == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format_version"] == persistence.FORMAT_VERSION and manifest["summary"]["frames_seen"] == 30
    assert {p.name for p in path.iterdir()} == {"manifest.json"} | {m["file"] for m in manifest["arrays"].values()}


def test_an_interrupted_save_keeps_the_old_state(tmp_path: Path, monkeypatch) -> None:
    det, path = saved(tmp_path)
    run(det, stream(5, seed=5), 20)
    real_save, calls = np.save, []

    def failing_save(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        det.save(path)
    monkeypatch.setattr(np, "save", real_save)
    assert len(calls) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]          # no temporary directory left
    assert StreamDetector.load(path, extractor=Toy()).frames_seen == 20     # the old state, intact


def test_a_crash_between_the_two_renames_is_recovered(tmp_path: Path) -> None:
    det, path = saved(tmp_path)
    os.rename(path, tmp_path / ".state.previous")       # as if the process died right after the first rename
    assert persistence.has_state(path)
    assert StreamDetector.load(path, extractor=Toy()).frames_seen == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


def test_saving_over_a_directory_that_is_not_a_state_is_refused(tmp_path: Path) -> None:
    det = StreamDetector(config(), extractor=Toy())
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    with pytest.raises(StateError, match=r"holds no streamad state \(manifest.json is missing\); refusing"):
        det.save(tmp_path / "photos")
    assert [p.name for p in (tmp_path / "photos").iterdir()] == ["a.jpg"]
    (tmp_path / "empty").mkdir()
    det.save(tmp_path / "empty")                         # an empty directory is fine
    assert (tmp_path / "empty" / "manifest.json").is_file()


def test_saving_under_a_file_raises_oserror(tmp_path: Path) -> None:
    det, _ = saved(tmp_path)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OSError):
        det.save(tmp_path / "afile" / "state")
    assert (tmp_path / "afile").read_text() == "x"


def test_saving_into_a_read_only_directory_raises_and_keeps_the_old_state(tmp_path: Path) -> None:
    det, path = saved(tmp_path)
    os.chmod(tmp_path, 0o500)
    try:
        if os.access(tmp_path, os.W_OK):
            pytest.skip("running as root: chmod does not make the directory read-only")
        with pytest.raises(PermissionError):
            det.save(path)
        assert StreamDetector.load(path, extractor=Toy()).frames_seen == 20
    finally:
        os.chmod(tmp_path, 0o700)


# -- refusals ----------------------------------------------------------------------------------------


def edit_manifest(path: Path, change) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_another_format_version_is_refused(tmp_path: Path) -> None:
    _, path = saved(tmp_path)
    edit_manifest(path, lambda m: m.update(format_version=99))
    with pytest.raises(StateError, match="format_version 99, but this streamad reads format_version 1: load it"):
        StreamDetector.load(path, extractor=Toy())


def test_an_incompatible_configuration_is_refused_naming_the_field_and_both_values(tmp_path: Path) -> None:
    det, path = saved(tmp_path)
    cfg = det.config
    with pytest.raises(StateError, match=r"saved with StreamConfig.window=10, but the configuration given has "
                                         r"window=12\. Resume with the saved settings"):
        StreamDetector.load(path, extractor=Toy(), config=dataclasses.replace(cfg, window=12))
    other = dataclasses.replace(cfg, features=dataclasses.replace(cfg.features, dim=128, grid=(8, 8)))
    with pytest.raises(StateError, match=r"StreamConfig.features.grid=\[28, 28\], .* grid=\[8, 8\] \(and 1 other "
                                         r"field\(s\): features.dim\)"):
        StreamDetector.load(path, extractor=Toy(), config=other)
    runtime = dataclasses.replace(cfg, features=dataclasses.replace(cfg.features, device="cuda", batch_size=2),
                                  index=dataclasses.replace(cfg.index, threads=1))
    back = StreamDetector.load(path, extractor=Toy(), config=runtime)   # run-time settings may change
    assert back.config == runtime and back.index.threads == 1


def test_another_grid_or_descriptor_dimension_is_refused(tmp_path: Path) -> None:
    _, path = saved(tmp_path)

    class Wide(Toy):
        grid = (4, 5)

    class Deep(Toy):
        dim = 16

    with pytest.raises(StateError, match="saved with a 4x4 descriptor grid, but the extractor gives 4x5"):
        StreamDetector.load(path, extractor=Wide())
    with pytest.raises(StateError, match="it holds 8-d descriptors, but the extractor gives 16-d ones"):
        StreamDetector.load(path, extractor=Deep())
    back = StreamDetector.load(path, extractor=Toy())
    with pytest.raises(ValueError, match="have dimension 5, but the detector learned 8-d descriptors"):
        back.process_descriptors(np.zeros((P, 5), np.float32))


def test_a_truncated_npy_is_refused_naming_the_file(tmp_path: Path) -> None:
    _, path = saved(tmp_path)
    file = path / "channels.x.npy"
    file.write_bytes(file.read_bytes()[:200])
    with pytest.raises(StateError, match=r"channels\.x\.npy is truncated or was altered: 200 bytes, the manifest "
                                         r"says \d+; restore it"):
        StreamDetector.load(path, extractor=Toy())


def test_an_altered_npy_is_refused_by_its_checksum(tmp_path: Path) -> None:
    _, path = saved(tmp_path)
    file = path / "index.vectors.npy"
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(StateError, match=r"index\.vectors\.npy is corrupt \(its CRC-32 does not match"):
        StreamDetector.load(path, extractor=Toy())


def test_garbage_manifest_is_refused(tmp_path: Path) -> None:
    _, path = saved(tmp_path)
    (path / "manifest.json").write_bytes(b'{"format": "streamad-engine-state", \x00\xff garbage')
    with pytest.raises(StateError, match=r"manifest\.json is not valid JSON .*the state is corrupt; restore it "
                                         r"from a backup, or start fresh"):
        StreamDetector.load(path, extractor=Toy())
    (path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(StateError, match="is not a streamad engine state"):
        StreamDetector.load(path, extractor=Toy())


def test_missing_files_and_directories_are_refused(tmp_path: Path) -> None:
    _, path = saved(tmp_path)
    (path / "channels.pair_dist.npy").unlink()
    with pytest.raises(StateError, match=r"channels\.pair_dist\.npy is missing: the state in .* is incomplete"):
        StreamDetector.load(path, extractor=Toy())
    (path / "manifest.json").unlink()
    with pytest.raises(StateError, match=r"manifest\.json is missing: .* holds no streamad state"):
        StreamDetector.load(path, extractor=Toy())
    with pytest.raises(StateError, match="no saved state at .*nowhere: the directory does not exist"):
        StreamDetector.load(tmp_path / "nowhere", extractor=Toy())


def test_arrays_of_the_wrong_shape_are_refused(tmp_path: Path) -> None:
    _, path = saved(tmp_path)
    bad = np.zeros((10, 16, 3), np.float32)              # a valid .npy, consistently listed, wrong dimension
    np.save(path / "channels.x.npy", bad, allow_pickle=False)
    data = (path / "channels.x.npy").read_bytes()

    def relist(m: dict) -> None:
        m["arrays"]["channels.x"].update(shape=[10, 16, 3], bytes=len(data), crc32=zlib.crc32(data))

    edit_manifest(path, relist)
    with pytest.raises(StateError, match="inconsistent state .*window holds 3-d descriptors, the nominal index 8-d"):
        StreamDetector.load(path, extractor=Toy())
    edit_manifest(path, lambda m: m["state"]["channels"].update(head="x"))
    with pytest.raises(StateError, match=r"channels\.head is 'x', expected int"):
        StreamDetector.load(path, extractor=Toy())


def relist(path: Path, name: str, array: np.ndarray) -> None:
    """Replace array ``name`` of the state in ``path`` by ``array``, consistently listed in the manifest."""
    file = path / f"{name}.npy"
    np.save(file, array, allow_pickle=False)
    data = file.read_bytes()
    edit_manifest(path, lambda m: m["arrays"][name].update(shape=list(array.shape), dtype=array.dtype.str,
                                                           bytes=len(data), crc32=zlib.crc32(data)))


@pytest.mark.parametrize("name, change, message", [
    ("channels.pair_dist", lambda a: a.astype(np.float32),
     r"channels\.pair_dist\.npy has shape \(2, 10, 16\) and dtype float32, but this state needs shape "
     r"\(2, 10, 16\) and dtype float64; restore it"),
    ("channels.ids", lambda a: a + 1, r"inconsistent state \(the window's frame ids do not match its ring buffer\)"),
    ("index.free", lambda a: np.array([10 ** 6], np.int64), r"the nominal index's slot bookkeeping does not agree"),
    ("index.hnsw.link_lists", lambda a: a[:-1], r"index\.hnsw\.link_lists\.npy has shape \(\d+,\) .* needs "
                                                r"shape \(\d+\)"),
    ("decisions.history", lambda a: np.where(np.arange(len(a)) == 3, np.nan, a),
     r"inconsistent state \(a saved score is not a finite number\)"),
    ("decisions.history_index", lambda a: a[:-1], r"inconsistent state \(\d+ entries in history_index for \d+ saved"),
])
def test_each_part_is_checked_by_its_owner(tmp_path: Path, name: str, change, message: str) -> None:
    det = StreamDetector(config(exact_below=0), extractor=Toy())
    run(det, stream(20))
    path = det.save(tmp_path / "state")
    relist(path, name, change(np.load(path / f"{name}.npy")))
    with pytest.raises(StateError, match=message):
        StreamDetector.load(path, extractor=Toy())


def test_broken_scalars_and_parts_are_refused_naming_the_field(tmp_path: Path) -> None:
    _, path = saved(tmp_path)
    edit_manifest(path, lambda m: m["state"]["detector"].update(frame_size=[0, 3]))
    with pytest.raises(StateError, match=r"manifest\.json: detector\.frame_size is \[0, 3\], expected pair\?"):
        StreamDetector.load(path, extractor=Toy())
    edit_manifest(path, lambda m: m["state"]["detector"].update(frame_size=None))
    edit_manifest(path, lambda m: m["state"]["decisions"].update(drifts=True))
    with pytest.raises(StateError, match=r"decisions\.drifts is True, expected int"):
        StreamDetector.load(path, extractor=Toy())
    edit_manifest(path, lambda m: m["state"].pop("decisions"))
    with pytest.raises(StateError, match=r"unexpected array 'decisions\.history'"):
        StreamDetector.load(path, extractor=Toy())
    edit_manifest(path, lambda m: [m["arrays"].pop(f"decisions.{k}") for k in ("history", "history_index",
                                                                               "history_time")])
    with pytest.raises(StateError, match=r"manifest\.json: state part 'decisions' is missing; restore it"):
        StreamDetector.load(path, extractor=Toy())
    edit_manifest(path, lambda m: m["state"].update(decisions=[1]))
    with pytest.raises(StateError, match=r"state part 'decisions' is not a dict"):
        StreamDetector.load(path, extractor=Toy())


def test_component_checks_work_on_states_in_memory() -> None:
    class Wide(Toy):
        grid = (4, 5)

    det = StreamDetector(config(exact_below=0), extractor=Toy())
    run(det, stream(20))
    cfg = det.config
    assert det.channels.check_state(det.channels.state_dict(), cfg.window, cfg.channels, P) == D
    det.index.check_state(det.index.state_dict())
    det.decisions.check_state(det.decisions.state_dict())
    parts = {"detector": det.state_dict(), "channels": det.channels.state_dict(), "index": det.index.state_dict(),
             "decisions": det.decisions.state_dict()}
    StreamDetector.check_state(parts, cfg, Toy())
    with pytest.raises(StateError, match=r"channels\.x\.npy has shape \(10, 16, 8\) .* needs shape \(n, 20, n\)"):
        StreamDetector.check_state({**parts, "detector": {**parts["detector"], "grid": [4, 5]}}, cfg, Wide())
    index = dict(parts["index"], **{"hnsw.dim": 3})
    with pytest.raises(StateError, match=r"the HNSW graph does not fit the index \(dim 3 vs 8"):
        det.index.check_state(index)
    assert StreamDetector.from_state(parts, cfg, Toy()).nominal_count == det.nominal_count


def test_persistence_reads_and_writes_parts_without_knowing_them(tmp_path: Path) -> None:
    cfg = config()
    parts = {"a": {"n": 1, "xs": np.arange(4, dtype=np.int16), "dotted.key": np.ones((2, 2))}, "b": None, "c": {}}
    path = persistence.write_state(tmp_path / "s", parts, cfg, {"note": "hello"})
    back = persistence.read_state(path)
    assert back.path == path and back.config == cfg and back.manifest["summary"] == {"note": "hello"}
    assert back.parts.keys() == parts.keys() and back.parts["b"] is None and back.parts["c"] == {}
    assert back.parts["a"]["n"] == 1 and back.parts["a"]["xs"].dtype == np.int16
    assert np.array_equal(back.parts["a"]["dotted.key"], np.ones((2, 2)))
    assert (path / "a.dotted.key.npy").is_file()
    runtime = dataclasses.replace(cfg, index=dataclasses.replace(cfg.index, threads=3))
    assert persistence.read_state(path, runtime).config is runtime
    with pytest.raises(ValueError, match="no '.'"):
        persistence.write_state(tmp_path / "t", {"a.b": {}}, cfg, {})


def test_persistence_does_not_import_the_detector() -> None:
    """The detector calls persistence, never the reverse (not even inside a function)."""
    import ast

    tree = ast.parse(Path(persistence.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not [m for m in imported if m and m.startswith("streamad.stream")], imported
    assert {m for m in imported if m and m.startswith("streamad")} <= {"streamad.config", "streamad.errors",
                                                                      "streamad.state_schema", "streamad.version"}


V1_SCALARS = {
    "detector": ["grid", "frames_seen", "next_frame_id", "since_admission", "last_admission_time", "frame_size"],
    "channels": ["batched_trim", "admissions", "last_promotion", "head", "last_id", "allocated", "stats"],
    "index": ["dim", "M", "ef_construction", "ef", "exact_below", "seed", "threads", "insert_threads", "capacity",
              "used", "graph", "kind"],  # kind: optional (added later; a state without it is HNSW)
    "decisions": ["count", "drifts", "rule", "fed", "trusted", "verdicts", "start"]}  # rule ..: optional (added later)
V1_ARRAYS = (["channels.ids", "channels.eligible", "channels.pending_removed"]
             + [f"channels.{k}" for k in ("x", "frame", "seed_j", "seed_frame", "pair_patch", "pair_dist", "members",
                                          "assign_j", "assign_a", "nominal", "published", "dirty")]
             + [f"index.{k}" for k in ("vectors", "label_of_slot", "live", "free", "slot_of_labels", "slot_of_slots")]
             + [f"index.hnsw.{k}" for k in ("label_lookup_external", "label_lookup_internal", "element_levels",
                                            "data_level0", "link_lists")]
             + ["decisions.history", "decisions.history_index", "decisions.history_time"])  # _index, _time: optional


def test_the_saved_layout_is_format_version_1(tmp_path: Path) -> None:
    """What format_version 1 holds, part by part and in order: a change here makes states saved before it
    unreadable, so it needs a new FORMAT_VERSION (or a reader that still accepts version 1)."""
    det = StreamDetector(config(exact_below=0, memory=MemoryConfig(capacity=0)), extractor=Toy())
    run(det, stream(12))
    manifest = persistence.read_manifest(det.save(tmp_path / "state"))
    assert persistence.FORMAT_VERSION == 1
    assert list(manifest)[:5] == ["format", "format_version", "streamad_version", "hnswlib_version", "saved_at"]
    assert list(manifest)[5:] == ["summary", "config", "state", "arrays"]
    assert list(manifest["summary"]) == ["frames_seen", "window_frames", "window", "nominal_patches",
                                         "memory_patches", "graph"]  # memory_patches: added later
    # the long-term memory's parts (added later, None without a memory) may be absent from older states
    assert manifest["state"].pop("memory") is None and manifest["state"].pop("memory_index") is None
    state = {part: [k for k in keys if not k.startswith("hnsw.")] for part, keys in manifest["state"].items()}
    assert state == V1_SCALARS
    assert list(manifest["arrays"]) == V1_ARRAYS
    assert all(m["file"] == f"{name}.npy" for name, m in manifest["arrays"].items())


def test_a_state_saved_before_the_memory_parts_existed_still_loads(tmp_path: Path) -> None:
    """Version-1 states written before the long-term memory could be saved have no memory parts."""
    det = StreamDetector(config(exact_below=0, memory=MemoryConfig(capacity=0)), extractor=Toy())
    run(det, stream(12))
    path = det.save(tmp_path / "state")
    manifest_path = path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["state"]["memory"], manifest["state"]["memory_index"]
    manifest_path.write_text(json.dumps(manifest))
    back = StreamDetector.load(path, extractor=Toy())
    assert back.memory is None and back.frames_seen == det.frames_seen


def test_a_state_saved_when_calibration_size_was_called_window_still_loads(tmp_path: Path) -> None:
    """States saved before ``DecisionConfig.window`` was renamed ``calibration_size`` name it the old way."""
    det, path = saved(tmp_path)
    edit_manifest(path, lambda m: m["config"]["decisions"].update(
        window=m["config"]["decisions"].pop("calibration_size")))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # read as the new name, not through the old alias
        back = StreamDetector.load(path, extractor=Toy())
    assert back.config == det.config and back.frames_seen == det.frames_seen


# -- streamad watch --state ----------------------------------------------------------------------------


class ToyImages:
    """A cheap stand-in for the backbone: per 8x8 block of the 32x32 frame, channel means and spreads.
    With ``delay``, sleeps that long per frame and touches ``marker`` after ``marker_after`` frames."""

    grid, image_size, dim = GRID, (32, 32), 6

    def __init__(self, delay: float = 0.0, marker: str | None = None, marker_after: int = 5) -> None:
        self.delay, self.marker, self.marker_after, self.calls = delay, marker, marker_after, 0

    def __call__(self, frames: list[np.ndarray]) -> np.ndarray:
        self.calls += 1
        if self.marker and self.calls == self.marker_after:
            Path(self.marker).touch()
        time.sleep(self.delay)
        out = []
        for f in frames:
            blocks = cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32).reshape(4, 8, 4, 8, 3)
            out.append(np.concatenate([blocks.mean(axis=(1, 3)), blocks.std(axis=(1, 3))], axis=2).reshape(P, 6))
        return np.stack(out) / 255.0


WATCH_CONFIG = StreamConfig(window=8, channels=ChannelConfig(seeds=2, min_span=2),
                            decisions=DecisionConfig(rule="quantile", warmup=3, calibration_size=20), index=IndexConfig(exact_below=0, M=4))


def use_toy_detector(target, window: int = 8, **toy) -> None:
    """Make ``streamad watch`` build a StreamDetector on ToyImages (``target``: a monkeypatch or the module)."""
    cfg = dataclasses.replace(WATCH_CONFIG, window=window)

    def make(config):
        return StreamDetector(cfg, extractor=ToyImages(**toy))

    if isinstance(target, pytest.MonkeyPatch):
        target.setattr(watch_cmd, "make_detector", make)
        target.setattr(watch_cmd, "build_config", lambda args: None)
    else:
        target.make_detector, target.build_config = make, (lambda args: None)


def make_images(folder: Path, n: int, offset: int = 0) -> Path:
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.integers(40, 200, size=(32, 32, 3))
    for i in range(n):
        img = np.clip(base + rng.integers(-6, 7, size=base.shape), 0, 255).astype(np.uint8)
        if i % 7 == 5:
            img[8:16, 8:16] = 255
        cv2.imwrite(str(folder / f"{offset + i:04d}.png"), img)
    return folder


def watch(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["watch", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_watch_state_resumes_where_it_stopped(tmp_path: Path, monkeypatch, capsys) -> None:
    use_toy_detector(monkeypatch)
    images, state = make_images(tmp_path / "img", 24), tmp_path / "state"
    code, out, err = watch(capsys, str(images), "--state", str(state), "--state-every", "10", "--quiet")
    assert code == 0, err
    assert f"no saved state in {state}: starting fresh" in err
    assert "frames 24 in" in out and f"state saved 3 times to {state}" in out        # at 10, 20 and at the end
    code, out, err = watch(capsys, str(images), "--state", str(state), "--quiet")
    assert code == 0, err
    assert f"resumed from {state}: 24 frames seen, window 8/8 frames" in err and "nominal patches" in err
    assert f"state saved 1 time to {state}" in out
    twice = StreamDetector.load(state, extractor=ToyImages())
    assert twice.frames_seen == 48 and twice.decisions.count > 24
    # the same 48 frames in one run give the same engine
    both = make_images(tmp_path / "both", 24)
    make_images(both, 24, offset=24)
    assert watch(capsys, str(both), "--state", str(tmp_path / "once"), "--quiet")[0] == 0
    once = StreamDetector.load(tmp_path / "once", extractor=ToyImages())
    assert_same_state(twice, once, skip=("last_admission_time", "history_time"))  # wall-clock timestamps differ


def test_watch_refuses_a_corrupt_or_incompatible_state_unless_reset(tmp_path: Path, monkeypatch, capsys) -> None:
    use_toy_detector(monkeypatch)
    images, state = make_images(tmp_path / "img", 12), tmp_path / "state"
    assert watch(capsys, str(images), "--state", str(state), "--quiet")[0] == 0
    use_toy_detector(monkeypatch, window=9)
    code, _, err = watch(capsys, str(images), "--state", str(state), "--quiet")
    assert code == 2 and "saved with StreamConfig.window=8, but the configuration given has window=9" in err
    use_toy_detector(monkeypatch)
    (state / "manifest.json").write_text("{not json")
    code, out, err = watch(capsys, str(images), "--state", str(state), "--quiet")
    assert code == 2 and "manifest.json is not valid JSON" in err and "--state-reset moves it aside" in err
    assert out == "" and (state / "manifest.json").read_text() == "{not json"        # nothing touched
    code, out, err = watch(capsys, str(images), "--state", str(state), "--state-reset", "--quiet")
    assert code == 0, err
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("state.bad-")]
    assert len(aside) == 1 and (aside[0] / "manifest.json").read_text() == "{not json"
    assert f"moved the unusable state to {aside[0]}; starting fresh" in err
    assert StreamDetector.load(state, extractor=ToyImages()).frames_seen == 12
    code, _, err = watch(capsys, str(images), "--state-every", "3")
    assert code == 2 and "use them with --state DIR" in err


def test_watch_goes_on_when_the_state_cannot_be_written(tmp_path: Path, monkeypatch, capsys) -> None:
    use_toy_detector(monkeypatch)
    images = make_images(tmp_path / "img", 12)
    (tmp_path / "afile").write_text("x")
    code, out, err = watch(capsys, str(images), "--state", str(tmp_path / "afile" / "state"), "--state-every", "4",
                           "--quiet")
    assert code == 0, err
    assert "frames 12 in" in out and "state saved 0 times to" in out and "4 failed saves" in out
    assert err.count("cannot save the state to") == 1 and "the loop goes on and retries in 4 frames" in err


class Interrupting(StandInDetector):
    """A detector stand-in that counts saves and raises KeyboardInterrupt inside ``process`` at frame 3."""

    def __init__(self, inside: bool) -> None:
        self.inside, self.saves, self.calls = inside, 0, 0

    def process(self, frame, timestamp=None):
        self.calls += 1
        if self.inside and self.calls == 3:
            raise KeyboardInterrupt
        return StreamDetector(config(), extractor=Toy()).process_descriptors(np.zeros((P, D), np.float32))

    def save(self, directory) -> None:
        self.saves += 1


@pytest.mark.parametrize("inside", [True, False])
def test_run_watch_does_not_save_a_detector_interrupted_mid_frame(tmp_path: Path, inside: bool) -> None:
    from streamad.runtime.live import StateSaver, run_watch
    from streamad.adapters.sources import FolderSource

    def interrupt_after(frame, result) -> None:
        if not inside and result.index == 0 and det.calls == 3:
            raise KeyboardInterrupt

    det, notes = Interrupting(inside), []
    with FolderSource(make_images(tmp_path / "img", 6)) as source:
        summary = run_watch(source, det, saver=StateSaver(det, tmp_path / "s", every=None, on_event=notes.append),
                            on_result=interrupt_after)
    assert summary.stopped == "interrupted" and summary.frames == (2 if inside else 3)
    assert det.saves == (0 if inside else 1) and summary.state_saves == det.saves
    assert notes == (["not saving the state: interrupted in the middle of a frame (the state saved last is kept)"]
                     if inside else [])


RUNNER = """
import importlib.util, resource, signal, sys
spec = importlib.util.spec_from_file_location("persistence_tests", {test_file!r})
tests = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tests)
from streamad import cli
from streamad.cli import watch
tests.use_toy_detector(watch, delay={delay}, marker={marker!r})
if {limit}:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # writes past the limit fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
sys.exit(cli.main(sys.argv[1:]))
"""


def runner(tmp_path: Path, limit: int = 0, delay: float = 0.0, marker: str | None = None) -> list[str]:
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(test_file=__file__, limit=limit, delay=delay, marker=marker))
    return [sys.executable, str(script), "watch"]


def test_watch_with_a_full_disk_keeps_going_and_keeps_the_old_state(tmp_path: Path, monkeypatch, capsys) -> None:
    use_toy_detector(monkeypatch)
    images, state = make_images(tmp_path / "img", 12), tmp_path / "states" / "state"
    assert watch(capsys, str(images), "--state", str(state), "--quiet")[0] == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(runner(tmp_path, limit=2048) + [str(images), "--state", str(state), "--state-every", "5",
                                                         "--quiet"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "frames 12 in" in proc.stdout and "state saved 0 times" in proc.stdout and "3 failed saves" in proc.stdout
    assert proc.stderr.count("File too large") == 1, proc.stderr                     # told once
    assert f"resumed from {state}: 12 frames seen" in proc.stderr
    assert StreamDetector.load(state, extractor=ToyImages()).frames_seen == 12       # the old state, intact
    assert [p.name for p in state.parent.iterdir()] == ["state"]                      # no temporary directories


def test_watch_saves_the_state_on_sigterm(tmp_path: Path) -> None:
    images, state, marker = make_images(tmp_path / "img", 200), tmp_path / "state", tmp_path / "started"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(runner(tmp_path, delay=0.05, marker=str(marker)) + [str(images), "--state", str(state),
                                                                                "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), proc.communicate(timeout=10)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped: signal SIGTERM" in out and "state saved 1 time to" in out and "SIGTERM: stopping" in err
    frames = int(out.split("frames ", 1)[1].split()[0])
    assert 5 <= frames < 200
    assert StreamDetector.load(state, extractor=ToyImages()).frames_seen == frames


# -- crash consistency: SIGKILL at random points of repeated saves --------------------------------------------

CRASH_KILLS = 50


def _saving_child(target: Path, log_fd: int) -> None:
    """Resume the state in ``target`` (if any) and save after every frame, forever; before each save log
    ``saving K FINGERPRINT`` and after it ``saved K`` (K: frames seen)."""
    from streamad.bench.fuzz import small_detector, state_fingerprint

    det = small_detector()
    if persistence.has_state(target):
        det = StreamDetector.load(target, extractor=det.extractor)
    k = det.frames_seen
    while True:
        desc = np.random.default_rng(k).uniform(0.3, 0.6, (16, 3)).astype(np.float32)
        det.process_descriptors(desc, timestamp=float(k))
        k += 1
        os.write(log_fd, f"saving {k} {state_fingerprint(det)}\n".encode())
        det.save(target)
        os.write(log_fd, f"saved {k}\n".encode())


def _first_bytes(fd: int, timeout: float) -> bytes:
    """What a pipe holds once it holds something (waiting at most ``timeout`` seconds)."""
    import select

    ready, _, _ = select.select([fd], [], [], timeout)
    return os.read(fd, 65536) if ready else b""


def _kill_saves(tmp_path: Path, kills: int) -> tuple[int, int, float]:
    """Fork a child that saves after every frame (``_saving_child``), SIGKILL it after a random time
    (seeded), check the directory, ``kills`` times: (kills inside a save, saves completed, seconds)."""
    import random

    from streamad.bench.fuzz import small_detector, state_fingerprint

    rng = random.Random(27)
    target = tmp_path / "state"
    det = small_detector()
    det.save(target)
    saved = {state_fingerprint(StreamDetector.load(target, extractor=det.extractor))}  # every state ever written
    last_complete, mid_save, t0 = 0, 0, time.monotonic()
    for _ in range(kills):
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            try:
                os.close(read_fd)
                _saving_child(target, write_fd)
            finally:
                os._exit(1)
        os.close(write_fd)
        first = _first_bytes(read_fd, timeout=60.0)  # the child has started saving (a loaded machine is slow)
        time.sleep(rng.uniform(0.0, 0.25))
        os.kill(pid, signal.SIGKILL)
        assert os.waitpid(pid, 0)[1] != 0
        with os.fdopen(read_fd, "rb") as fh:
            lines = (first + fh.read()).decode().splitlines()
        for line in lines:
            words = line.split()
            if words[0] == "saving":
                saved.add(words[2])
            else:
                last_complete = int(words[1])
        mid_save += bool(lines) and lines[-1].startswith("saving")
        back = StreamDetector.load(target, extractor=det.extractor)   # never a broken state
        assert state_fingerprint(back) in saved, "the directory holds a state no save wrote"
        assert back.frames_seen >= last_complete, "a completed save was lost"
    return mid_save, last_complete, time.monotonic() - t0


def test_sigkill_at_random_points_of_saves_always_leaves_the_old_or_the_new_state(tmp_path: Path) -> None:
    """A child process saves a real detector's state to one directory after every frame and is killed
    (SIGKILL) at a random moment (seeded), 50 times; after every kill the directory loads, and holds exactly
    a state the child saved: the one being written or an earlier one, never older than the last save that
    completed. Each child resumes from what the previous one left."""
    mid_save, completed, elapsed = _kill_saves(tmp_path, CRASH_KILLS)
    assert completed >= 10   # the children resumed and saved, again and again
    assert mid_save >= 5, f"only {mid_save} of {CRASH_KILLS} kills landed inside a save"
    print(f"{CRASH_KILLS} kills, {mid_save} inside a save, {completed} saves completed, {elapsed:.1f} s")


def test_the_crash_test_catches_a_save_that_is_not_atomic(tmp_path: Path, monkeypatch) -> None:
    """Proof that the test above can fail: a save that deletes the old state before moving the new one in
    leaves, when killed between the two, nothing to load."""
    import shutil

    def careless_swap(tmp: Path, target: Path) -> None:
        shutil.rmtree(target, ignore_errors=True)
        time.sleep(0.1)   # the window a crash can hit
        os.rename(tmp, target)

    monkeypatch.setattr(persistence, "_swap_into_place", careless_swap)
    with pytest.raises(StateError, match="no saved state"):
        _kill_saves(tmp_path, 20)
