"""Configuration objects: frozen dataclasses that validate themselves.

Every bad value raises ``ValueError`` naming the field and the value, e.g.::

    >>> ChannelConfig(seeds=0)
    Traceback (most recent call last):
    ...
    ValueError: ChannelConfig.seeds must be >= 1, got 0
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field, fields
from typing import Any

SPREAD_RULES = ("std", "rms", "zscore", "mad", "none")


def _check(cls: str, name: str, ok: bool, value: Any, need: str) -> None:
    if not ok:
        raise ValueError(f"{cls}.{name} must be {need}, got {value!r}")


def _int_at_least(value: Any, low: int) -> bool:
    """``value`` is an int (not a bool) >= ``low``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def finite_number(value: Any) -> bool:
    """``value`` is a finite int or float (not a bool) that fits a float (10 ** 400 does not): the check of
    every number a user or a peer hands streamad (configuration, serve TOML, wire headers).

        >>> finite_number(1.5), finite_number(True), finite_number(10 ** 400), finite_number(float("nan"))
        (True, False, False, False)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


_finite_real = finite_number


def _check_sections(cls: str, config: Any) -> None:
    """Every field of ``config`` that defaults to a nested config must hold that config type."""
    for f in fields(config):
        if callable(f.default_factory):  # type: ignore[misc]
            want = type(f.default_factory())  # type: ignore[misc]
            value = getattr(config, f.name)
            _check(cls, f.name, isinstance(value, want), value, f"a {want.__name__}")


@dataclass(frozen=True)
class FeatureConfig:
    """How frames become patch descriptors.

    ``image_size`` is the (height, width) the frame is resized to before the backbone;
    ``grid`` the (H, W) descriptor grid; ``dim`` the descriptor dimension (channel pooling,
    data independent so it works on a stream). ``layers`` names backbone stages; empty means
    the backbone's default pair (stride 8 and 16). ``center_crop`` < 1 resizes the frame to
    ``image_size / center_crop`` and keeps the centre ``image_size`` (0.875 is the papers' protocol:
    256 then a 224 centre crop); the border is then not scored.
    """

    backbone: str = "efficientnet_lite0"
    layers: tuple[str, ...] = ()
    image_size: tuple[int, int] = (224, 224)
    grid: tuple[int, int] = (28, 28)
    dim: int = 256
    aggregate: int = 3
    center_crop: float = 1.0
    weights: str | None = None
    device: str = "cpu"
    batch_size: int = 16

    def __post_init__(self) -> None:
        c = "FeatureConfig"
        _check(c, "backbone", isinstance(self.backbone, str) and self.backbone != "", self.backbone, "a backbone name")
        _check(c, "image_size", len(self.image_size) == 2 and all(int(v) >= 32 for v in self.image_size),
               self.image_size, "(height, width) with both >= 32")
        _check(c, "grid", len(self.grid) == 2 and all(int(v) >= 1 for v in self.grid), self.grid,
               "(H, W) with both >= 1")
        _check(c, "dim", isinstance(self.dim, int) and self.dim >= 1, self.dim, "an int >= 1")
        _check(c, "aggregate", isinstance(self.aggregate, int) and self.aggregate >= 1 and self.aggregate % 2 == 1,
               self.aggregate, "an odd int >= 1")
        _check(c, "center_crop", 0.25 <= float(self.center_crop) <= 1.0, self.center_crop, "in [0.25, 1]")
        _check(c, "batch_size", isinstance(self.batch_size, int) and self.batch_size >= 1, self.batch_size,
               "an int >= 1")
        _check(c, "device", isinstance(self.device, str) and (self.device in ("cpu", "cuda", "auto")
                                                               or self.device.startswith("cuda:")),
               self.device, "'cpu', 'cuda', 'cuda:N' or 'auto'")
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))
        object.__setattr__(self, "grid", tuple(int(v) for v in self.grid))
        object.__setattr__(self, "layers", tuple(self.layers))


@dataclass(frozen=True)
class ChannelConfig:
    """InReaCh channel parameters (docs/DESIGN.md section 2).

    ``spread`` picks the trimming rule, with ``r_i`` the member distances to the channel mean:

    - ``"std"``: keep ``r_i <= k_sigma * std(r)`` (the reference code's statistic);
    - ``"rms"``: keep ``r_i <= k_sigma * sqrt(mean(r**2))`` (the channel's total standard deviation);
    - ``"zscore"``: keep ``r_i <= mean(r) + k_sigma * std(r)`` (outliers of the distance distribution);
    - ``"mad"``: keep ``r_i <= median(r) + k_sigma * 1.4826 * MAD(r)`` (the same, robust to the outliers
      themselves inflating the spread);
    - ``"none"``: keep every member (span filter only).

    The default (``zscore``, 3) is a measured choice: on MTD the reference ``std`` rule keeps 2% of
    the training patches and loses 0.07 image AUROC; on MVTec bottle with 10 corrupt images
    ``zscore`` 3 keeps 98% of the nominal patches at precision 0.999 (README, "What drives the MTD gap").

    ``device`` runs the association (mutual nearest neighbours between frames) with numpy, the batch
    oracle's arithmetic (the default), or on a torch device (``"cuda"``: one batched product per
    admission on the GPU; equal up to float32 rounding, so near-ties may break differently).
    """

    seeds: int = 10
    min_span: int = 3
    k_sigma: float = 3.0
    spread: str = "zscore"
    device: str = "numpy"

    def __post_init__(self) -> None:
        c = "ChannelConfig"
        _check(c, "device", isinstance(self.device, str) and (self.device in ("numpy", "cpu", "cuda")
                                                              or self.device.startswith("cuda:")), self.device,
               "'numpy' (the oracle's arithmetic), or a torch device: 'cpu', 'cuda', 'cuda:N'")
        _check(c, "seeds", isinstance(self.seeds, int) and self.seeds >= 1, self.seeds, ">= 1")
        _check(c, "min_span", isinstance(self.min_span, int) and self.min_span >= 0, self.min_span, ">= 0")
        _check(c, "k_sigma", float(self.k_sigma) > 0, self.k_sigma, "> 0")
        _check(c, "spread", self.spread in SPREAD_RULES, self.spread, f"one of {SPREAD_RULES}")


IMAGE_SCORES = ("max", "top_mean", "reweight")
SEED_CHOICES = ("first", "spread", "typical", "clean", "skip")  # streamad.core.seed_choice


@dataclass(frozen=True)
class HeatmapConfig:
    """Patch scores to a frame-sized heatmap (bilinear upsampling then a Gaussian blur), and to one score.

    ``image_score`` is how a frame's score follows from its patch scores (docs/quality.md measures them):

    - ``"max"``: the heatmap's maximum (the papers' InReaCh score; the streaming engine's default);
    - ``"top_mean"``: the mean of the ``top_k`` highest patch scores (one odd patch weighs less; batch
      InReaCh's default, ``InReachConfig``, with ``top_k`` 30: chosen by the rule of docs/quality.md);
    - ``"reweight"``: PatchCore's eq. 7 against the nominal set: the highest patch score ``s*``, times
      ``1 - softmax`` weight of its distance among the ``reweight_neighbors`` nominal neighbours of its
      nearest nominal patch (a patch near a dense region of the nominal set counts less). Batch models only.

    A model with an image score of its own (PatchCore, SPADE) keeps it.

        >>> HeatmapConfig(image_score="median")
        Traceback (most recent call last):
        ...
        ValueError: HeatmapConfig.image_score must be one of ('max', 'top_mean', 'reweight'), got 'median'
    """

    blur_sigma: float = 4.0
    image_score: str = "max"
    top_k: int = 30
    reweight_neighbors: int = 9

    def __post_init__(self) -> None:
        c = "HeatmapConfig"
        _check(c, "blur_sigma", float(self.blur_sigma) >= 0, self.blur_sigma, ">= 0")
        _check(c, "image_score", self.image_score in IMAGE_SCORES, self.image_score, f"one of {IMAGE_SCORES}")
        _check(c, "top_k", _int_at_least(self.top_k, 1), self.top_k, "an int >= 1 (patches)")
        _check(c, "reweight_neighbors", _int_at_least(self.reweight_neighbors, 2), self.reweight_neighbors,
               "an int >= 2 (with one neighbour every weight is 0)")


@dataclass(frozen=True)
class PositionalConfig:
    """Conditional positional embedding (paper section 3.2, supplement D).

    ``mode``: ``"auto"`` runs the transpose test (and rotation alignment when it fails),
    ``"on"``/``"off"`` force it. ``threshold`` is on the transpose score of the mean image
    computed at 224x224 in 0..255 units, as in the supplement (600).
    """

    mode: str = "auto"
    weight: float = 5.0
    threshold: float = 600.0
    align_rotation: bool = True

    def __post_init__(self) -> None:
        c = "PositionalConfig"
        _check(c, "mode", self.mode in ("auto", "on", "off"), self.mode, "'auto', 'on' or 'off'")
        _check(c, "weight", float(self.weight) >= 0, self.weight, ">= 0")
        _check(c, "threshold", float(self.threshold) >= 0, self.threshold, ">= 0")


INDEX_KINDS = ("exact", "hnsw", "ivf")


@dataclass(frozen=True)
class IndexConfig:
    """The nominal index (docs/DESIGN.md section 4): its kind, the exact-search size and each kind's parameters.

    ``kind`` is ``"hnsw"`` (:class:`~streamad.index.hnsw.HNSWIndex`, the batch models' default),
    ``"ivf"`` (:class:`~streamad.index.ivf.IVFIndex`, the streaming engine's: cheap to change, read as
    atomic snapshots by a scorer while the learner changes it) or ``"exact"``
    (:class:`~streamad.index.exact.ExactIndex`, brute force: the reference, slow on large sets);
    :func:`streamad.index.make_index` builds the one named. IVF: ``nlist`` lists (0: about the
    square root of the set's size), ``nprobe`` lists searched per query (32: recall@1 0.999 against
    exact search on the W = 64 nominal sets of bottle and MTD, README "Live speed"), ``device`` a torch
    device for exact search below ``exact_below`` (exact: for every search). HNSW: ``M`` and
    ``ef_construction`` shape the graph (insertion cost grows with both), ``ef`` is the query breadth
    (recall against speed), ``exact_below`` the size under which search is exact, ``threads`` the
    query threads (0: all cores). A static scene puts about ``window`` near-copies of every patch in
    the index: graph quality then needs ``ef_construction`` or ``ef`` of that order
    (``streamad bench-engine --mode hnsw`` measures recall). The defaults (200, 256) give recall@1
    0.99 against exact search on the nominal set of MVTec bottle (167,101 patches), where (40, 128)
    gave 0.958 and batch's former (100, 64) 0.966, which cost 0.016 image AUROC (docs/streaming.md).
    ``insert_threads`` other than 1 (0: all cores) updates the graph in
    parallel (faster), but the graph then depends on thread timing: results are no longer
    reproducible from run to run.
    """

    M: int = 16
    ef_construction: int = 200
    ef: int = 256
    exact_below: int = 2000
    threads: int = 0
    insert_threads: int = 1
    kind: str = "hnsw"
    nlist: int = 0
    nprobe: int = 32
    device: str = "numpy"

    def __post_init__(self) -> None:
        c = "IndexConfig"
        for name, low in (("M", 2), ("ef_construction", 1), ("ef", 1), ("exact_below", 0), ("threads", 0),
                          ("insert_threads", 0), ("nlist", 0), ("nprobe", 1)):
            v = getattr(self, name)
            _check(c, name, isinstance(v, int) and not isinstance(v, bool) and v >= low, v, f"an int >= {low}")
        _check(c, "kind", self.kind in INDEX_KINDS, self.kind, f"one of {INDEX_KINDS}")
        _check(c, "device", isinstance(self.device, str) and (self.device in ("numpy", "cpu", "cuda")
                                                              or self.device.startswith("cuda:")), self.device,
               "'numpy', or a torch device for exact search: 'cpu', 'cuda', 'cuda:N'")


#: The InReaCh paper's image score: the heatmap maximum (``InReachConfig(heatmap=PAPER_HEATMAP)``).
PAPER_HEATMAP = HeatmapConfig(image_score="max")


@dataclass(frozen=True)
class InReachConfig:
    """Everything the batch InReaCh model needs (the nominal index as the streaming detector builds it).

    The defaults are those the rule of docs/quality.md chose on bottle and MTD: the image score the mean
    of the 30 highest patch scores (``HeatmapConfig.image_score="top_mean"``; ``PAPER_HEATMAP`` is the
    paper's heatmap maximum), heatmap blur sigma 8, channel trimming ``zscore`` with k = 2, seeds the
    first D less clear outliers (``seed_choice="skip"``). The streaming engine (``StreamConfig``) keeps
    blur 4, k = 3 and the maximum until its own figures are measured with them; :func:`paper_config` is
    the paper's. ``seed_choice`` says which training images seed the channels: ``"first"`` (the paper:
    the first D of the shuffled training set), ``"spread"``, ``"typical"``, ``"clean"`` or ``"skip"``
    (:mod:`streamad.core.seed_choice`);
    ``new_look_seeds`` more seeds after them head channels only for the looks no channel holds yet
    (:func:`streamad.core.channels.add_new_look_seeds`; 0 in the paper's method).
    """

    features: FeatureConfig = field(default_factory=FeatureConfig)
    channels: ChannelConfig = field(default_factory=lambda: ChannelConfig(k_sigma=2.0))
    heatmap: HeatmapConfig = field(default_factory=lambda: HeatmapConfig(image_score="top_mean", top_k=30,
                                                                         blur_sigma=8.0))
    positional: PositionalConfig = field(default_factory=PositionalConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    seed: int = 0
    seed_choice: str = "skip"  # which training images seed the channels (streamad.core.seed_choice)
    new_look_seeds: int = 0  # more seeds that head channels only for looks no channel holds (core.channels)

    def __post_init__(self) -> None:
        _check_sections("InReachConfig", self)
        _check("InReachConfig", "seed", isinstance(self.seed, int), self.seed, "an int")
        _check("InReachConfig", "seed_choice", self.seed_choice in SEED_CHOICES, self.seed_choice,
               f"one of {', '.join(SEED_CHOICES)}")
        _check("InReachConfig", "new_look_seeds", _int_at_least(self.new_look_seeds, 0), self.new_look_seeds,
               "an int >= 0 (0: the paper's association)")


def paper_config(backbone: str = "wide_resnet50_2") -> InReachConfig:
    """The InReaCh paper's configuration by name: D = 10 seeds, minimum span 3, the reference code's
    spread rule (``std``, k = 5), the image score the heatmap maximum (``PAPER_HEATMAP``), one pass of
    the paper's association (first D seeds, no new-look seeds), on ``backbone`` (the paper's WideResNet-50
    by default, whose weights come from torchvision's download; ``"efficientnet_lite0"`` gives the
    paper's method on the offline default backbone). ``streamad eval --paper`` / ``compare --paper``.

        >>> cfg = paper_config()
        >>> cfg.features.backbone, cfg.channels.spread, cfg.channels.k_sigma, cfg.heatmap.image_score
        ('wide_resnet50_2', 'std', 5.0, 'max')
        >>> paper_config("efficientnet_lite0").features.backbone
        'efficientnet_lite0'
    """
    return InReachConfig(features=FeatureConfig(backbone=backbone),
                         channels=ChannelConfig(seeds=10, min_span=3, spread="std", k_sigma=5.0),
                         heatmap=PAPER_HEATMAP, seed_choice="first")


@dataclass(frozen=True)
class ThreadConfig:
    """How many threads each kind of work may use (0: chosen from the cores, see
    :func:`streamad.vision.threads.resolve_threads`): ``torch`` the backbone's intra-op threads,
    ``blas`` numpy's BLAS (association, exact and IVF search), ``associate`` the threads that share the
    mutual pairs of a frame with the seeds (each pair on one BLAS thread; the same answers whatever the
    count). The HNSW index's query threads are ``IndexConfig.threads``.

    On a small box the scorer (torch) and the background learner (BLAS) must not fight over the cores:
    with background learning the default gives BLAS one thread.

        >>> ThreadConfig(torch=-1)
        Traceback (most recent call last):
        ...
        ValueError: ThreadConfig.torch must be an int >= 0 (0: automatic), got -1
    """

    torch: int = 0
    blas: int = 0
    associate: int = 0

    def __post_init__(self) -> None:
        for name in ("torch", "blas", "associate"):
            v = getattr(self, name)
            _check("ThreadConfig", name, isinstance(v, int) and not isinstance(v, bool) and v >= 0, v,
                   "an int >= 0 (0: automatic)")


DRIFT_DETECTORS = ("adwin", "page_hinkley", "kswin", "none")
DECISION_RULES = ("auto", "trusted", "screened", "quantile")


@dataclass(frozen=True)
class DecisionConfig:
    """Alarm threshold and drift detection on the score stream (docs/alarms.md).

    ``false_alarm_rate`` is the share of normal frames the user accepts to see flagged (per frame;
    :func:`per_frame_rate` converts alarms per hour at a frame rate); None means ``1 - quantile``
    (``alpha`` is the rate in use). ``rule`` picks how the threshold follows from it:

    - ``"auto"`` (default): the trusted rule where the channels trust a fair share of the admitted frames
      (objects on a plain background), the screened rule where they do not (textures, busy scenes), chosen
      by itself and reported (``FrameResult.calibration``; :class:`~streamad.stream.decisions.AutoDecisions`).
    - ``"trusted"``: a conformal threshold over the last ``calibration_size`` scores of *trusted* frames:
      admitted frames whose ``trust_patches`` highest-scoring patches the channels kept as nominal.
      Defects do not enter it, so it holds at any defect rate; normal frames are flagged at rate
      ``alpha``. It exists once ``max(warmup, 1/alpha - 1)`` trusted scores are in (honest warm-up):
      ``calibration_size`` must therefore be at least ``1/alpha - 1``.
    - ``"screened"``: the same conformal threshold over the last ``calibration_size`` scores of all judged frames
      less those above a robust screen (a Gumbel law fitted to the lower scores, at its ``1 - alpha *
      screen`` quantile): no verdict from the channels needed, so it calibrates on textures too; the
      normal frames the screen leaves out (about ``alpha * screen``) add to the false alarm rate.
    - ``"quantile"`` (the former rule): the ``1 - alpha`` quantile of the last ``calibration_size`` scores of all
      frames (river ``RollingQuantile``), once ``warmup`` scores have been seen; it flags about
      ``alpha`` of all frames, defects included, whatever is happening.

    A score above the threshold is anomalous. ``drift`` names the river detector watching the (trusted)
    scores (``adwin``, ``page_hinkley``, ``kswin`` or ``none``); ``drift_delta`` is its sensitivity
    (ADWIN/Page-Hinkley ``delta``, KSWIN ``alpha``).

        >>> DecisionConfig(false_alarm_rate=0.0001)
        Traceback (most recent call last):
        ...
        ValueError: DecisionConfig.calibration_size must be >= 1/false_alarm_rate - 1 = 9999 (the trusted rule cannot resolve a rarer event from fewer calibration scores), got 1000

    ``calibration_size`` counts scores (``StreamConfig.window`` counts frames); its former name
    ``window`` still works and warns:

        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     old = DecisionConfig(window=2000)
        >>> old.calibration_size, caught[0].category.__name__
        (2000, 'DeprecationWarning')
    """

    rule: str = "auto"
    false_alarm_rate: float | None = None
    quantile: float = 0.99
    calibration_size: int = 1000
    warmup: int = 30
    trust_patches: int = 5
    screen: float = 0.1
    drift: str = "adwin"
    drift_delta: float = 0.002

    def __post_init__(self) -> None:
        c = "DecisionConfig"
        _check(c, "rule", self.rule in DECISION_RULES, self.rule, f"one of {DECISION_RULES}")
        _check(c, "false_alarm_rate", self.false_alarm_rate is None or (
            _finite_real(self.false_alarm_rate) and 0.0 < self.false_alarm_rate < 1.0), self.false_alarm_rate,
               "None or in (0, 1) (per frame)")
        _check(c, "quantile", 0.0 < float(self.quantile) < 1.0, self.quantile, "in (0, 1)")
        _check(c, "calibration_size", isinstance(self.calibration_size, int) and self.calibration_size >= 2,
               self.calibration_size, "an int >= 2 (scores)")
        _check(c, "warmup", isinstance(self.warmup, int) and self.warmup >= 1, self.warmup, "an int >= 1")
        _check(c, "trust_patches", _int_at_least(self.trust_patches, 1), self.trust_patches, "an int >= 1 (patches)")
        _check(c, "screen", _finite_real(self.screen) and 0.0 < self.screen <= 1.0, self.screen,
               "in (0, 1] (the screen bound's tail share, as a fraction of the false alarm rate)")
        _check(c, "drift", self.drift in DRIFT_DETECTORS, self.drift, f"one of {DRIFT_DETECTORS}")
        _check(c, "drift_delta", 0.0 < float(self.drift_delta) < 1.0, self.drift_delta, "in (0, 1)")
        if self.rule in ("auto", "trusted", "screened"):
            need = math.ceil(1.0 / self.alpha - 1.0 - 1e-9)
            what = "false_alarm_rate" if self.false_alarm_rate is not None else "(1 - quantile)"
            _check(c, "calibration_size", self.calibration_size >= need, self.calibration_size,
                   f">= 1/{what} - 1 = {need} (the trusted rule cannot resolve a rarer event from fewer "
                   "calibration scores)")

    @property
    def alpha(self) -> float:
        """The per-frame false alarm rate in use: ``false_alarm_rate``, or ``1 - quantile`` when it is None."""
        return float(self.false_alarm_rate) if self.false_alarm_rate is not None else 1.0 - float(self.quantile)

    @property
    def level(self) -> float:
        """``1 - alpha``: the quantile the ``quantile`` rule tracks (``quantile`` itself when no rate is set)."""
        return 1.0 - float(self.false_alarm_rate) if self.false_alarm_rate is not None else float(self.quantile)

    @property
    def window(self) -> int:
        """Deprecated: :attr:`calibration_size` (it counts scores; ``StreamConfig.window`` counts frames)."""
        warnings.warn(_DECISION_WINDOW_RENAMED, DeprecationWarning, stacklevel=2)
        return self.calibration_size


_DECISION_WINDOW_RENAMED = ("DecisionConfig.window is now DecisionConfig.calibration_size (it counts scores; "
                            "StreamConfig.window counts frames)")
_decision_config_init = DecisionConfig.__init__


@functools.wraps(_decision_config_init)  # the signature shown (help, IDEs) stays the fields'
def _decision_config_init_with_old_name(self: DecisionConfig, *args: Any, window: int | None = None,
                                        **kwargs: Any) -> None:
    """``DecisionConfig(window=N)``, the former name of ``calibration_size``: warns and renames."""
    if window is not None:
        warnings.warn(_DECISION_WINDOW_RENAMED, DeprecationWarning, stacklevel=2)
        if "calibration_size" in kwargs:
            raise TypeError("DecisionConfig: give calibration_size, not also its former name window")
        kwargs["calibration_size"] = window
    _decision_config_init(self, *args, **kwargs)


DecisionConfig.__init__ = _decision_config_init_with_old_name  # type: ignore[method-assign]


def per_frame_rate(alarms_per_hour: float, fps: float) -> float:
    """The per-frame false alarm rate of ``alarms_per_hour`` false alarms at ``fps`` frames per second.

        >>> per_frame_rate(36, 10)
        0.001
        >>> per_frame_rate(36, 0)
        Traceback (most recent call last):
        ...
        ValueError: fps must be > 0 to turn alarms per hour into a per-frame rate, got 0
    """
    if not (_finite_real(fps) and fps > 0):
        raise ValueError(f"fps must be > 0 to turn alarms per hour into a per-frame rate, got {fps!r}")
    if not (isinstance(alarms_per_hour, (int, float)) and alarms_per_hour > 0):
        raise ValueError(f"alarms per hour must be > 0, got {alarms_per_hour!r}")
    rate = float(alarms_per_hour) / (3600.0 * float(fps))
    if rate >= 1.0:
        raise ValueError(f"{alarms_per_hour} alarms per hour at {fps} fps is more than one per frame")
    return rate


@dataclass(frozen=True)
class EventConfig:
    """How anomalous frames become alarm events (:class:`streamad.stream.events.AlarmEvents`).

    Anomalous frames separated by at most ``max_gap`` frames that are not anomalous form one event; an
    event closes once ``max_gap + 1`` frames in a row are not anomalous, and is reported if it holds at
    least ``min_frames`` anomalous frames (shorter ones are counted as suppressed, not reported).

        >>> EventConfig(max_gap=-1)
        Traceback (most recent call last):
        ...
        ValueError: EventConfig.max_gap must be an int >= 0 (frames), got -1
    """

    max_gap: int = 1
    min_frames: int = 1

    def __post_init__(self) -> None:
        c = "EventConfig"
        _check(c, "max_gap", _int_at_least(self.max_gap, 0), self.max_gap, "an int >= 0 (frames)")
        _check(c, "min_frames", _int_at_least(self.min_frames, 1), self.min_frames, "an int >= 1 (frames)")


@dataclass(frozen=True)
class MemoryConfig:
    """Long-term nominal memory beyond the window (:mod:`streamad.stream.memory`; off with ``capacity`` 0).

    When a frame leaves the window its trusted patches join a bounded epsilon-cover (at most ``capacity``
    patches): within ``epsilon`` of a remembered patch they reinforce it, else they are remembered.
    ``epsilon`` 0 is automatic (``epsilon_ratio`` x the median distance of the first leaving patches to the
    window's nominal set). Entries not reinforced for ``max_age`` admissions (0: no limit) are forgotten,
    and beyond ``capacity`` the least recently reinforced go first. Scoring takes the nearer of the window's
    nominal set and the memory.

        >>> MemoryConfig(capacity=-1)
        Traceback (most recent call last):
        ...
        ValueError: MemoryConfig.capacity must be an int >= 0 (patches; 0 = no long-term memory), got -1
    """

    capacity: int = 0
    epsilon: float = 0.0
    epsilon_ratio: float = 1.0
    max_age: int = 0

    def __post_init__(self) -> None:
        c = "MemoryConfig"
        _check(c, "capacity", _int_at_least(self.capacity, 0), self.capacity,
               "an int >= 0 (patches; 0 = no long-term memory)")
        _check(c, "epsilon", _finite_real(self.epsilon) and self.epsilon >= 0, self.epsilon,
               "a finite float >= 0 (0: automatic)")
        _check(c, "epsilon_ratio", _finite_real(self.epsilon_ratio) and self.epsilon_ratio > 0, self.epsilon_ratio,
               "a finite float > 0")
        _check(c, "max_age", _int_at_least(self.max_age, 0), self.max_age, "an int >= 0 (admissions; 0 = no limit)")

    @property
    def enabled(self) -> bool:
        return self.capacity > 0


# The streaming engine's defaults, chosen on the stream (docs/stream_defaults.md).
STREAM_HEATMAP = HeatmapConfig(blur_sigma=8.0, image_score="top_mean", top_k=30)
STREAM_MEMORY = MemoryConfig(capacity=60000)


@dataclass(frozen=True)
class StreamConfig:
    """Everything the streaming detector needs (docs/DESIGN.md section 3).

    ``window`` frames are kept (must exceed ``channels.seeds`` and ``channels.min_span``); a frame is
    admitted when at least ``admit_every`` frames and, if set, ``admit_interval_s`` seconds have
    passed since the last admitted one (every frame is scored). ``seed`` seeds all randomness.
    ``learn_in_background`` admits on a learner thread (scoring never waits; needs the ``ivf`` index),
    using at most ``learner_duty`` of one core at niceness ``learner_nice`` (Linux: the scorer takes the cores
    first); ``threads`` is the thread budget (docs/DESIGN.md section 3).
    ``memory`` is the long-term nominal memory beyond the window (:class:`MemoryConfig`; 60,000 patches by
    default, ``MemoryConfig(capacity=0)`` turns it off). The defaults (blur 8, ``top_mean`` of the 30 highest
    patch scores, ``zscore`` k = 2, the memory) were chosen on the stream by the rule of docs/stream_defaults.md.

        >>> StreamConfig(window=5)
        Traceback (most recent call last):
        ...
        ValueError: StreamConfig.window must be an int > channels.seeds (10) and > channels.min_span (3), got 5
    """

    window: int = 64
    admit_every: int = 1
    admit_interval_s: float | None = None
    features: FeatureConfig = field(default_factory=FeatureConfig)
    channels: ChannelConfig = field(default_factory=lambda: ChannelConfig(k_sigma=2.0))
    heatmap: HeatmapConfig = field(default_factory=lambda: STREAM_HEATMAP)
    index: IndexConfig = field(default_factory=lambda: IndexConfig(kind="ivf"))
    decisions: DecisionConfig = field(default_factory=DecisionConfig)
    seed: int = 0
    learn_in_background: bool = False
    learner_duty: float = 0.5
    learner_nice: int = 10
    threads: ThreadConfig = field(default_factory=ThreadConfig)
    memory: MemoryConfig = field(default_factory=lambda: STREAM_MEMORY)

    def __post_init__(self) -> None:
        c = "StreamConfig"
        _check_sections(c, self)
        ch = self.channels
        _check(c, "window", _int_at_least(self.window, max(ch.seeds, ch.min_span) + 1), self.window,
               f"an int > channels.seeds ({ch.seeds}) and > channels.min_span ({ch.min_span})")
        _check(c, "admit_every", isinstance(self.admit_every, int) and self.admit_every >= 1, self.admit_every,
               "an int >= 1")
        _check(c, "admit_interval_s", self.admit_interval_s is None or (
            isinstance(self.admit_interval_s, (int, float)) and self.admit_interval_s >= 0),
               self.admit_interval_s, "None or >= 0 seconds")
        _check(c, "seed", isinstance(self.seed, int), self.seed, "an int")
        _check(c, "learn_in_background", isinstance(self.learn_in_background, bool), self.learn_in_background,
               "True or False")
        _check(c, "learner_duty", isinstance(self.learner_duty, (int, float)) and 0 < self.learner_duty <= 1,
               self.learner_duty, "in (0, 1]: the largest share of one core the background learner may use")
        _check(c, "learner_nice", _int_at_least(self.learner_nice, 0) and self.learner_nice <= 19, self.learner_nice,
               "an int in [0, 19]: how much lower the background learner's scheduling priority is (Linux)")
        _check(c, "heatmap", self.heatmap.image_score != "reweight", self.heatmap,
               "a HeatmapConfig with image_score 'max' or 'top_mean' (the streaming engine has no 'reweight')")
        _check(c, "learn_in_background", not self.learn_in_background or self.index.kind == "ivf",
               self.learn_in_background, "False unless index.kind is 'ivf' (the index readers can use while it "
               "changes)")
