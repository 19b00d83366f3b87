"""StreamDetector with a tiny stand-in extractor: warm-up, score-before-admit, admission policy,
result fields, heatmap size, determinism, and the index staying equal to the engine's nominal set."""

from __future__ import annotations

import numpy as np
import pytest

import streamad
from streamad.config import ChannelConfig, DecisionConfig, FeatureConfig, HeatmapConfig, IndexConfig, StreamConfig
from streamad.stream.detector import StreamDetector

STAGES = {"features", "score", "heatmap", "associate", "trim", "index", "memory"}  # memory: once frames leave


class BlockMeans:
    """Stand-in extractor: 4x4 grid of block means (RGB) of the frame resized to 32x32, plus position."""

    grid = (4, 4)
    image_size = (32, 32)

    def __call__(self, frames):
        import cv2

        out = []
        for f in frames:
            small = cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
            blocks = small.reshape(4, 8, 4, 8, 3).mean(axis=(1, 3)).reshape(16, 3)
            pos = np.stack(np.meshgrid(np.arange(4), np.arange(4), indexing="ij"), -1).reshape(16, 2) * 0.5
            out.append(np.concatenate([blocks, pos], axis=1))
        return np.stack(out).astype(np.float32)


def scene(rng: np.random.Generator, defect: bool = False, shape=(48, 64)) -> np.ndarray:
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([y * 2.0, x * 2.0, (x + y) * 1.0], -1) + 60 + rng.normal(0, 2, size=(h, w, 3))
    if defect:
        img[5:17, 40:56] = 255
    return np.clip(img, 0, 255).astype(np.uint8)


def config(**kw) -> StreamConfig:
    # a 4x4 grid has 16 patches, fewer than top_mean's 30: the heatmap maximum is the image score here
    base = dict(window=12, channels=ChannelConfig(seeds=2, min_span=2, k_sigma=3.0, spread="zscore"),
                heatmap=HeatmapConfig(image_score="max"),
                decisions=DecisionConfig(rule="quantile", warmup=3, drift="none"))  # the trusted rule: test_alarms.py
    base.update(kw)
    return StreamConfig(**base)


def test_exported_from_the_package():
    assert streamad.StreamDetector is StreamDetector and "StreamDetector" in streamad.__all__


def test_warm_up_gives_no_score_until_channels_can_form():
    rng = np.random.default_rng(0)
    det = StreamDetector(config(), extractor=BlockMeans())
    results = [det.process(scene(rng)) for _ in range(6)]
    # seeds 0, 1; channels need > min_span = 2 members: seed + 2 frames, so after 4 admissions
    assert [r.ready for r in results] == [False, False, False, False, True, True]
    for r in results[:4]:
        assert r.score is None and r.threshold is None and r.heatmap is None and r.patch_scores is None
        assert not r.anomalous and not r.drift and r.admitted
    assert results[4].score is not None and results[4].score >= 0


def test_a_frame_is_scored_before_it_is_admitted():
    rng = np.random.default_rng(1)
    cfg = config(channels=ChannelConfig(seeds=1, min_span=1, spread="none"))
    det = StreamDetector(cfg, extractor=BlockMeans())
    for _ in range(5):
        det.process(scene(rng))
    odd = scene(rng, defect=True)
    first = det.process(odd)
    assert first.ready and first.admitted and first.score > 0.1  # judged against the others only
    again = det.process(odd)  # its own patches now vouch for it ("none" keeps every channel member)
    assert again.score < 0.25 * first.score


def test_admission_every_k_frames_and_every_t_seconds():
    rng = np.random.default_rng(2)
    det = StreamDetector(config(admit_every=3), extractor=BlockMeans())
    flags = [det.process(scene(rng)).admitted for _ in range(10)]
    assert flags == [True, False, False] * 3 + [True]
    assert len(det.channels) == 4
    det = StreamDetector(config(admit_interval_s=1.0), extractor=BlockMeans())
    times = [0.0, 0.4, 0.9, 1.0, 1.5, 2.2, 2.3, 3.3]
    flags = [det.process(scene(rng), timestamp=t).admitted for t in times]
    assert flags == [True, False, False, True, False, True, False, True]
    det = StreamDetector(config(admit_every=2, admit_interval_s=1.0), extractor=BlockMeans())
    flags = [det.process(scene(rng), timestamp=t).admitted for t in [0.0, 1.5, 1.6, 1.7, 3.0, 3.1]]
    assert flags == [True, False, True, False, True, False]  # both: two frames and one second


def test_frame_result_fields_heatmap_shape_and_timings():
    rng = np.random.default_rng(3)
    det = StreamDetector(config(), extractor=BlockMeans())
    for _ in range(16):  # the heatmap has the stream's frame size (its first frame's: see test_bad_input.py)
        det.process(scene(rng, shape=(50, 70)))
    r = det.process(scene(rng, defect=True, shape=(50, 70)), timestamp=123.5)
    assert r.index == 16 and r.timestamp == 123.5 and r.ready and r.admitted
    assert r.heatmap.shape == (50, 70) and r.heatmap.dtype == np.float32
    assert r.patch_scores.shape == (4, 4) and r.patch_scores.dtype == np.float32
    assert r.score == pytest.approx(float(r.heatmap.max()))
    assert r.threshold is not None and isinstance(r.anomalous, bool)
    assert set(r.timings) == STAGES and all(v >= 0 for v in r.timings.values())
    assert np.unravel_index(r.heatmap.argmax(), r.heatmap.shape)[1] > 35  # the defect is top right
    normal = det.process(scene(rng, shape=(50, 70)))
    assert normal.score < r.score


def test_centre_crop_heatmap_covers_the_crop_and_zeroes_the_border():
    class Cropped(BlockMeans):
        center_crop = 0.5  # as PatchFeatureExtractor.center_crop

    rng = np.random.default_rng(9)
    det = StreamDetector(config(), extractor=Cropped())
    for _ in range(6):
        det.process(scene(rng, shape=(40, 80)))
    r = det.process(scene(rng, defect=True, shape=(40, 80)))
    assert r.heatmap.shape == (40, 80)
    inside = r.heatmap[10:30, 20:60]
    assert (r.heatmap[:10] == 0).all() and (r.heatmap[:, :20] == 0).all() and (r.heatmap[30:] == 0).all()
    assert inside.max() == r.heatmap.max() > 0


def test_threshold_learns_only_once_the_window_is_full():
    rng = np.random.default_rng(10)
    det = StreamDetector(config(), extractor=BlockMeans())  # window 12, decision warm-up 3
    results = [det.process(scene(rng)) for _ in range(20)]
    ready = [i for i, r in enumerate(results) if r.ready]
    assert ready and ready[0] < 11
    assert all(r.threshold is None and not r.anomalous for r in results[:15])  # filling, then 3 scores
    assert det.decisions.count == 20 - 12
    assert all(r.threshold is not None for r in results[15:])


def test_score_one_changes_nothing_and_learn_one_admits():
    rng = np.random.default_rng(4)
    det = StreamDetector(config(), extractor=BlockMeans())
    for _ in range(6):
        det.learn_one(scene(rng))
    assert len(det.channels) == 6 and det.ready and det.frames_seen == 0
    nominal = det.nominal_count
    r = det.score_one(scene(rng, defect=True))
    assert r.ready and not r.admitted and r.index == 0
    assert len(det.channels) == 6 and det.nominal_count == nominal and det.decisions.count == 0


def test_same_seed_same_results_through_the_hnsw_path():
    def run() -> list:
        rng = np.random.default_rng(5)
        det = StreamDetector(config(index=IndexConfig(exact_below=50, ef=8, ef_construction=8, M=4)),
                             extractor=BlockMeans())
        out = [det.process(scene(rng, defect=(i % 7 == 6))) for i in range(30)]
        assert det.index is not None and det.index.uses_graph
        return out

    a, b = run(), run()
    for x, y in zip(a, b):
        assert (x.ready, x.score, x.threshold, x.anomalous, x.admitted) == (y.ready, y.score, y.threshold,
                                                                             y.anomalous, y.admitted)
        if x.heatmap is not None:
            assert (x.heatmap == y.heatmap).all()


def test_index_holds_exactly_the_engine_nominal_set():
    rng = np.random.default_rng(6)
    det = StreamDetector(config(window=6, channels=ChannelConfig(seeds=2, min_span=1)), extractor=BlockMeans())
    for i in range(25):  # the window slides, seeds are renewed
        det.process(scene(rng, defect=(i % 5 == 4)))
        keys = det.channels.nominal_keys()
        assert sorted(det.index.labels().tolist()) == sorted(det.channels.label(f, p) for f, p in keys)
    assert det.channels.seeds != [0, 1]


def test_descriptor_level_api_and_validation():
    det = StreamDetector(config(), extractor=BlockMeans())
    rng = np.random.default_rng(7)
    base = rng.normal(size=(16, 5)).astype(np.float32)
    for _ in range(5):
        det.learn_descriptors(base + 0.01 * rng.normal(size=(16, 5)).astype(np.float32))
    r = det.process_descriptors(base, frame_shape=(20, 30))
    assert r.ready and r.heatmap.shape == (20, 30) and "features" not in r.timings
    assert det.score_descriptors(base).heatmap.shape == (32, 32)  # default: the extractor's input size
    with pytest.raises(ValueError, match=r"shape \(16, d\)"):
        det.process_descriptors(np.zeros((15, 5), np.float32))
    with pytest.raises(ValueError, match="dimension 4"):
        det.process_descriptors(np.zeros((16, 4), np.float32))
    with pytest.raises(ValueError, match="finite"):
        det.process_descriptors(np.full((16, 5), np.nan, np.float32))


def test_bad_frames_are_rejected_with_a_reason_and_change_nothing():
    det = StreamDetector(config(), extractor=BlockMeans())
    with pytest.raises(ValueError, match="channels"):
        det.process(np.zeros((20, 20, 2), np.uint8))
    with pytest.raises(ValueError, match="None"):
        det.process(None)
    assert det.frames_seen == 0 and len(det.channels) == 0


def test_stream_config_validation_names_field_and_value():
    with pytest.raises(ValueError, match=r"StreamConfig.window must be an int > channels.seeds \(10\)"):
        StreamConfig(window=10)
    with pytest.raises(ValueError, match="StreamConfig.admit_every must be an int >= 1, got 0"):
        StreamConfig(admit_every=0)
    with pytest.raises(ValueError, match="StreamConfig.admit_interval_s"):
        StreamConfig(admit_interval_s=-1.0)
    with pytest.raises(ValueError, match="StreamConfig.index must be a IndexConfig"):
        StreamConfig(index={"M": 4})
    with pytest.raises(ValueError, match="IndexConfig.ef must be an int >= 1, got 0"):
        IndexConfig(ef=0)


def test_presets_build_a_stream_config():
    from streamad.stream.presets import stream_config

    cfg = stream_config("fast", {"window": 30})
    assert isinstance(cfg, StreamConfig) and cfg.window == 30 and cfg.channels.seeds == 5


@pytest.mark.slow
def test_real_backbone_end_to_end():
    cfg = StreamConfig(window=8, features=FeatureConfig(image_size=(64, 64), grid=(8, 8)),
                       channels=ChannelConfig(seeds=2, min_span=2), decisions=DecisionConfig(warmup=2))
    det = StreamDetector(cfg)
    rng = np.random.default_rng(8)
    results = [det.process(scene(rng, defect=(i == 9))) for i in range(10)]
    assert results[-1].ready and results[-1].heatmap.shape == (48, 64)
    assert results[-1].score > max(r.score for r in results[4:9])


def test_results_say_which_calibration_judged_them_and_on_how_many_scores():
    cfg = StreamConfig(window=10, channels=ChannelConfig(seeds=2, min_span=2),
                       decisions=DecisionConfig(false_alarm_rate=0.1, warmup=5, drift="none"))
    det = StreamDetector(cfg, extractor=BlockMeans())
    rng = np.random.default_rng(2)
    results = [det.process(scene(rng)) for _ in range(60)]
    warm = [r for r in results if r.threshold is None]
    judged = [r for r in results if r.threshold is not None]
    assert warm and judged and all(r.calibration is None and r.calibration_frames == 0 for r in warm)
    assert {r.calibration for r in judged} <= {"screened", "trusted"}
    assert judged[-1].calibration == det.decisions.active or judged[-1].calibration_frames > 0
    counts = [r.calibration_frames for r in judged if r.calibration == judged[0].calibration]
    assert counts[0] >= 5 and counts == sorted(counts)  # the calibration grows while the window fills it
    quantile = StreamDetector(StreamConfig(window=10, channels=ChannelConfig(seeds=2, min_span=2),
                                           decisions=DecisionConfig(rule="quantile", warmup=5, drift="none")),
                              extractor=BlockMeans())
    last = [quantile.process(scene(rng)) for _ in range(30)][-1]
    assert last.calibration == "quantile" and last.calibration_frames >= 5


@pytest.mark.parametrize("background", [False, True])
def test_on_kept_reports_each_admitted_frames_kept_patches_by_its_index(background: bool) -> None:
    """The channels' verdict on each admitted frame, by its result index: the mask is what the frame has in
    the nominal set once its admission is done (synchronous and background learning alike)."""
    rng = np.random.default_rng(8)
    det = StreamDetector(config(window=6, channels=ChannelConfig(seeds=2, min_span=1),
                                learn_in_background=background), extractor=BlockMeans())
    seen: dict[int | None, np.ndarray] = {}
    det.on_kept = seen.__setitem__
    det.learn_one(scene(rng))
    assert list(seen) == [None]                        # learn_one: no result index
    admitted = []
    for i in range(20):
        r = det.process(scene(rng, defect=(i % 5 == 4)))
        assert det.wait_learned(10.0)
        if r.admitted and r.index in seen:            # the background learner may skip a frame for a newer one
            newest = det.channels.window_frames()[-1]
            want = np.zeros(16, bool)
            want[det.channels.nominal_patches(newest)] = True
            assert (seen[r.index] == want).all(), r.index
            admitted.append(r.index)
    det.close()
    assert len(admitted) >= (15 if not background else 3)
    assert set(seen) - {None} == set(admitted)
    kept = np.stack([seen[i] for i in admitted])
    assert kept.dtype == bool and kept.any() and not kept.all()


