"""The image score from the heatmap as a lever: maximum, mean of the top-k patches, PatchCore's eq. 7."""

from __future__ import annotations

import numpy as np
import pytest

from streamad.batch.baselines.patchcore import PatchCore, PatchCoreConfig
from streamad.batch.inreach import InReaCh, InReaChPatchModel
from streamad.config import ChannelConfig, HeatmapConfig, InReachConfig, StreamConfig
from streamad.core.reweight import reweighted_scores
from streamad.evaluation.descriptor_cache import PrecomputedDescriptors
from streamad.index.hnsw import exact_knn
from streamad.stream.detector import StreamDetector
from streamad.vision.heatmap import frame_scores, image_score


def _train(seed: int = 0, n: int = 12, p: int = 16, d: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(1, p, d)).astype(np.float32)
    return base + 0.05 * rng.normal(size=(n, p, d)).astype(np.float32)


@pytest.mark.parametrize("kwargs, message", [
    ({"image_score": "median"}, "HeatmapConfig.image_score must be one of"),
    ({"top_k": 0}, "HeatmapConfig.top_k must be an int >= 1 (patches), got 0"),
    ({"reweight_neighbors": 1}, "HeatmapConfig.reweight_neighbors must be an int >= 2"),
])
def test_bad_score_settings_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        HeatmapConfig(**kwargs)


def test_the_stream_refuses_reweight_by_name():
    with pytest.raises(ValueError, match="StreamConfig.heatmap must be a HeatmapConfig with image_score 'max' or"):
        StreamConfig(heatmap=HeatmapConfig(image_score="reweight"))


def test_top_mean_is_the_mean_of_the_k_highest_patch_scores():
    rng = np.random.default_rng(1)
    patch = rng.random((5, 4, 4)).astype(np.float32)
    heat = rng.random((5, 32, 32)).astype(np.float32)
    want = np.sort(patch.reshape(5, -1), axis=1)[:, -3:].mean(axis=1)
    assert np.allclose(frame_scores(heat, patch, "top_mean", 3), want)
    assert np.allclose(frame_scores(heat, patch, "top_mean", 1), patch.reshape(5, -1).max(1))
    assert np.allclose(frame_scores(heat, patch, "top_mean", 99), patch.reshape(5, -1).mean(1))  # k > P: all
    assert np.array_equal(frame_scores(heat, patch, "max"), image_score(heat))
    with pytest.raises(ValueError, match="'reweight' needs the nominal set"):
        frame_scores(heat, patch, "reweight")


def test_reweight_equals_patchcore_eq7_on_the_same_nominal_set():
    """InReaCh's eq. 7 against its nominal set = PatchCore's eq. 7 with a memory bank of that same set."""
    train = _train()
    model = InReaChPatchModel(ChannelConfig(seeds=2, min_span=2), reweight_neighbors=4).fit_descriptors(train, (4, 4))
    bank = model.vectors_
    assert len(bank) == model.nominal_count_ and callable(model.image_scores)
    test = _train(n=16)[12:].copy()
    test[1, 3] += 1.5  # one odd patch
    ours = model.image_scores(test)
    pc = PatchCore(PatchCoreConfig(coreset_fraction=1.0, reweight_neighbors=4)).fit_descriptors(
        bank[None], (1, len(bank)))
    assert np.allclose(ours, pc.image_scores(test), rtol=1e-5, atol=1e-5)
    # and by hand: s*, the neighbourhood of m*, the weight
    worst = model.patch_scores(test).argmax(1)
    q = test[np.arange(4), worst]
    s_star, nn = exact_knn(bank, q, k=1)
    _, hood = exact_knn(bank, bank[nn[:, 0]], k=4)
    assert np.allclose(ours, reweighted_scores(q, s_star[:, 0], bank[hood]), rtol=1e-5)
    assert np.all(ours <= s_star[:, 0] + 1e-6) and ours[1] == ours.max()


def test_the_detector_uses_the_configured_rule():
    both = _train(n=15)
    train, test = both[:12], both[12:].copy()
    test[0, 2] += 2.0
    scores = {}
    for rule in ("max", "top_mean", "reweight"):
        cfg = InReachConfig(channels=ChannelConfig(seeds=2, min_span=2),
                            heatmap=HeatmapConfig(image_score=rule, top_k=3))
        det = InReaCh(cfg, extractor=PrecomputedDescriptors((4, 4), (32, 32))).fit_descriptors(train)
        pred = det.predict_descriptors(test)
        scores[rule] = pred.scores
        if rule == "top_mean":
            assert np.allclose(pred.scores, np.sort(pred.patch_scores.reshape(3, -1), 1)[:, -3:].mean(1))
        if rule == "max":
            assert np.array_equal(pred.scores, image_score(pred.heatmaps))
        assert int(np.argmax(pred.scores)) == 0
    assert len({tuple(np.round(v, 5)) for v in scores.values()}) == 3  # three different scores


def test_the_stream_scores_frames_by_top_mean():
    class Toy:
        grid, image_size = (4, 4), (32, 32)

    cfg = StreamConfig(window=8, channels=ChannelConfig(seeds=2, min_span=2),
                       heatmap=HeatmapConfig(image_score="top_mean", top_k=4))
    det = StreamDetector(cfg, extractor=Toy())
    train = _train()
    for frame in train[:6]:
        det.process_descriptors(frame, frame_shape=(32, 32))
    odd = train[6].copy()
    odd[5] += 1.0
    r = det.score_descriptors(odd, frame_shape=(32, 32))
    assert r.ready and r.score == pytest.approx(float(np.sort(r.patch_scores.ravel())[-4:].mean()), rel=1e-6)
