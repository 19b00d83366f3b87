"""Methods on a drifting stream: the streaming engine against static models fitted once.

Every method sees the same per-frame descriptors in stream order and leaves a :class:`MethodTrace`:
per frame its score (None while not ready), the threshold it judged the frame by, its drift flag,
and its patch scores.

- :func:`trace_stream`: a :class:`~streamad.stream.detector.StreamDetector` with window ``W`` processes the
  frames one by one (score, then admit); thresholds are its river quantile, drift flags its detector.
- :func:`trace_static`: a batch model (InReaCh or a baseline) fitted on ``fit`` frames only (the first
  run, less a held-out calibration part); its threshold is the ``quantile`` of its scores on the
  ``calibrate`` frames, fixed for the rest of the stream; a drift detector of the same kind as the
  engine's watches its scores, so both panels of a plot can show where the scores drift.
- :func:`apply_rule`: a static model's scores judged by the engine's own decision rule instead (the
  rolling quantile, or the trusted rule with the engine's trust verdicts), so a table can separate what
  the sliding window buys from what the threshold rule buys.

Frame scores are what each method gives an image elsewhere in streamad: the engine's ``FrameResult``
score, and a static model's ``ImageAnomalyDetector.predict_descriptors`` score (the heatmap maximum,
or PatchCore's reweighted score, paper eq. 7), so ``static-patchcore`` here is the PatchCore of
``streamad eval --method patchcore``.

    >>> import numpy as np
    >>> from streamad.config import ChannelConfig, DecisionConfig, StreamConfig
    >>> rng = np.random.default_rng(0)
    >>> desc = (rng.normal(size=(1, 16, 4)) + 0.05 * rng.normal(size=(30, 16, 4))).astype(np.float32)
    >>> cfg = StreamConfig(window=8, channels=ChannelConfig(seeds=2, min_span=2),
    ...                    decisions=DecisionConfig(warmup=5, drift="none"))
    >>> trace = trace_stream("stream-8", desc, cfg, grid=(4, 4), size=(16, 16))
    >>> trace.scores[0] is None, trace.scores[-1] is not None, trace.patch_scores.shape
    (True, True, (30, 4, 4))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from streamad.config import ChannelConfig, DecisionConfig, HeatmapConfig, IndexConfig, StreamConfig
from streamad.stream.decisions import make_decisions, make_drift_detector
from streamad.stream.detector import StreamDetector
from streamad.batch.image_detector import ImageAnomalyDetector
from streamad.evaluation.descriptor_cache import PrecomputedDescriptors


@dataclass
class MethodTrace:
    """What one method did on the stream, frame by frame."""

    method: str
    scores: list[float | None]
    thresholds: list[float | None]
    drift: list[bool]
    patch_scores: np.ndarray  # (N, h, w) float32; NaN where the method gave no score
    info: dict[str, Any] = field(default_factory=dict)
    # the engine with the trusted rule: (frame, score, top patches kept) of each admitted frame judged
    verdicts: list[tuple[int, float, int]] = field(default_factory=list)

    @property
    def alarms(self) -> list[bool]:
        return [s is not None and t is not None and s > t for s, t in zip(self.scores, self.thresholds)]


def trace_stream(method: str, descriptors: np.ndarray, config: StreamConfig, grid: tuple[int, int],
                 size: tuple[int, int], progress: bool = False) -> MethodTrace:
    """Run a fresh streaming detector over ``descriptors`` (N, P, d) in order: ``process`` per frame."""
    det = StreamDetector(config, extractor=PrecomputedDescriptors(grid, size, config.features))
    n = len(descriptors)
    scores: list[float | None] = []
    thresholds: list[float | None] = []
    drift: list[bool] = []
    patches = np.full((n,) + tuple(grid), np.nan, np.float32)
    stage_ms: dict[str, float] = {}
    verdicts: list[tuple[int, float, int]] = []
    for i in tqdm(range(n), desc=method, unit="frame", disable=not progress, leave=False):
        r = det.process_descriptors(np.asarray(descriptors[i]), frame_shape=size)
        verdicts += det.decisions.last_verdicts
        scores.append(r.score)
        thresholds.append(r.threshold)
        drift.append(r.drift)
        if r.patch_scores is not None:
            patches[i] = r.patch_scores
        for k, v in r.timings.items():
            stage_ms[k] = stage_ms.get(k, 0.0) + v
    info = {"window": config.window, "ready_from_frame": next((i for i, s in enumerate(scores) if s is not None), None),
            "drift_flags": int(sum(drift)), "nominal_patches_at_end": det.nominal_count,
            "stage_ms_per_frame": {k: v / n for k, v in stage_ms.items()}, "rule": config.decisions.rule,
            "trusted_frames": det.decisions.trusted}
    memory = det.memory
    if config.memory.enabled:  # the long-term memory at the end (absorbed, reinforcements, forgotten)
        empty = {"patches": 0, "epsilon": None, "absorbed": 0, "reinforced": 0, "forgotten": 0}
        info["memory"] = {"capacity": config.memory.capacity, **(empty if memory is None else memory.summary())}
    return MethodTrace(method, scores, thresholds, drift, patches, info, verdicts)


def make_static_model(kind: str, channels: ChannelConfig, index: IndexConfig, seed: int) -> Any:
    """``inreach`` (batch InReaCh patch model) or a baseline name (``patchcore``, ``spade``, ``pni``)."""
    if kind == "inreach":
        from streamad.batch.inreach import InReaChPatchModel

        return InReaChPatchModel(channels, seed=seed, index=index)
    from streamad.batch.baselines import make_patch_model

    return make_patch_model(kind, seed=seed)


def trace_static(method: str, model: Any, descriptors: np.ndarray, fit: np.ndarray, calibrate: np.ndarray,
                 grid: tuple[int, int], size: tuple[int, int], blur: float, quantile: float,
                 drift: str = "adwin", drift_delta: float = 0.002, seed: int = 0, chunk: int = 64,
                 progress: bool = False) -> MethodTrace:
    """Fit ``model`` on ``descriptors[fit]``, score every frame, threshold at ``quantile`` of the scores of
    ``descriptors[calibrate]`` (frames not fitted on)."""
    fit, calibrate = np.asarray(fit, int), np.asarray(calibrate, int)
    if not len(fit) or not len(calibrate):
        raise ValueError(f"{method}: needs fitting frames and calibration frames, got {len(fit)} and {len(calibrate)}")
    if np.intersect1d(fit, calibrate).size:
        raise ValueError(f"{method}: calibration frames must not be fitted on")
    detector = ImageAnomalyDetector(model, PrecomputedDescriptors(grid, size), HeatmapConfig(blur_sigma=blur))
    detector.fit_descriptors(np.ascontiguousarray(descriptors[fit]))
    n = len(descriptors)
    patches = np.empty((n,) + tuple(grid), np.float32)
    scores = np.empty(n)
    for s in tqdm(range(0, n, chunk), desc=method, unit="chunk", disable=not progress, leave=False):
        pred = detector.predict_descriptors(np.ascontiguousarray(descriptors[s:s + chunk]))
        patches[s:s + len(pred.scores)], scores[s:s + len(pred.scores)] = pred.patch_scores, pred.scores
    threshold = float(np.quantile(scores[calibrate], quantile))
    watcher = make_drift_detector(drift, drift_delta, seed)
    flags = []
    for s in scores:
        if watcher is None:
            flags.append(False)
            continue
        watcher.update(float(s))
        flags.append(bool(watcher.drift_detected))
    info = {"fit_frames": int(len(fit)), "calibration_frames": int(len(calibrate)), "threshold": threshold,
            "drift_flags": int(sum(flags))}
    return MethodTrace(method, [float(s) for s in scores], [threshold] * n, flags, patches, info)


def apply_rule(method: str, static: MethodTrace, decisions: DecisionConfig, start: int,
               verdicts: Sequence[tuple[int, float, int]] = (), seed: int = 0) -> MethodTrace:
    """``static``'s scores judged by the engine's decision rule (``decisions``) from frame ``start`` on
    (the frames before it were fitted on: their scores are in-sample). ``quantile``: every score from
    ``start`` joins the rolling quantile after it is judged; ``trusted``: a frame's score joins the
    calibration set when the engine's verdict on that frame (``verdicts``: (frame, engine score, top patches
    kept), from a trusted-rule engine run) says the channels kept its top ``trust_patches`` patches.

        >>> tr = MethodTrace("m", [1.0, 1.0, 2.0, 9.0, 2.0], [0.0] * 5, [False] * 5, np.zeros((5, 1, 1)))
        >>> out = apply_rule("m+trusted", tr, DecisionConfig(false_alarm_rate=0.5, warmup=1, drift="none"),
        ...                  start=1, verdicts=[(1, 0.0, 9), (2, 0.0, 9), (3, 0.0, 0)])
        >>> out.thresholds, out.alarms
        ([None, None, 1.0, 2.0, 2.0], [False, False, True, True, False])
    """
    dec = make_decisions(decisions, seed=seed)
    kept = {int(i): int(top) for i, _, top in verdicts}
    thresholds: list[float | None] = []
    flags: list[bool] = []
    for i, score in enumerate(static.scores):
        if i < start or score is None:
            thresholds.append(None)
            flags.append(False)
            continue
        d = dec.update(score, index=i)
        drift = d.drift
        if dec.trusting and i in kept:
            drift = dec.trust(score, kept[i] >= decisions.trust_patches, index=i) is not None or drift
        thresholds.append(d.threshold)
        flags.append(bool(drift))
    info = {"rule": decisions.rule, "judged_from_frame": int(start), "drift_flags": int(sum(flags)),
            "trusted_frames": dec.trusted}
    return MethodTrace(method, list(static.scores), thresholds, flags, static.patch_scores, info)
