"""streamad.bench.trust_share's record of the channels' verdicts, through the detector's public hook."""

from __future__ import annotations

import numpy as np

from streamad.bench.trust_share import kept_records
from streamad.config import ChannelConfig, DecisionConfig, FeatureConfig, HeatmapConfig, StreamConfig
from streamad.evaluation.descriptor_cache import PrecomputedDescriptors
from streamad.stream.detector import StreamDetector


def test_kept_records_are_the_verdicts_of_each_admitted_frame() -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(size=(16, 6)).astype(np.float32)
    frames = base[None] + rng.normal(scale=0.05, size=(40, 16, 6)).astype(np.float32)
    frames[25, 3] += 5.0                                                   # a defect on one patch
    config = StreamConfig(window=8, learn_in_background=False,
                          features=FeatureConfig(image_size=(32, 32), grid=(4, 4), dim=6),
                          channels=ChannelConfig(seeds=2, min_span=2), heatmap=HeatmapConfig(image_score="max"),
                          decisions=DecisionConfig(rule="quantile", warmup=3, drift="none"))
    scores, patch, kept, judged = kept_records(frames, config, (4, 4), (32, 32))

    # the same stream through the public hook directly: the same verdicts, frame by frame
    det = StreamDetector(config, extractor=PrecomputedDescriptors((4, 4), (32, 32), config.features))
    seen: dict = {}
    det.on_kept = seen.__setitem__
    results = [det.process_descriptors(f, frame_shape=(32, 32)) for f in frames]
    want = np.stack([seen.get(r.index, np.zeros(16, bool)) for r in results])
    assert (kept == want).all()
    assert judged.sum() == 40 - 8 and not judged[:8].any()           # judged once the window is full
    assert kept[judged].mean() > 0.5 and not kept[25, 3]              # normal patches kept, the defect not
    assert np.isfinite(scores[judged]).all() and scores[25] == np.nanmax(scores[judged])
