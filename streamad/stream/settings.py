"""Flat settings to a configuration: the one place that says where a flat name (a command line's option, a
``streamad serve`` camera's key, a benchmark's argument) goes in the nested ``StreamConfig`` (or
``InReachConfig``, which shares the features, channels and heatmap parts).

    >>> cfg = stream_config_of({"window": 32, "device": "auto", "memory": 0, "learning": "sync"}, preset="fast")
    >>> cfg.window, cfg.features.device, cfg.features.grid, cfg.memory.capacity, cfg.learn_in_background
    (32, 'auto', (20, 20), 0, False)
    >>> nested({"image_size": 64, "torch_threads": 2, "rule": None})  # None: not given; a size sets the grid
    {'features': {'image_size': (64, 64), 'grid': (8, 8)}, 'threads': {'torch': 2}}
    >>> place_of("memory"), place_of("blur")
    (('memory', 'capacity'), ('heatmap', 'blur_sigma'))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from streamad.config import StreamConfig
from streamad.stream.presets import apply_overrides, merge, stream_config

T = TypeVar("T")

#: Flat name -> its place in the nested configuration.
PLACES: dict[str, tuple[str, ...]] = {
    # the stream: window, admission, learning
    "window": ("window",), "admit_every": ("admit_every",), "admit_interval_s": ("admit_interval_s",),
    "learn_in_background": ("learn_in_background",), "learner_duty": ("learner_duty",),
    "learner_nice": ("learner_nice",), "seed": ("seed",),
    # features
    "backbone": ("features", "backbone"), "weights": ("features", "weights"), "layers": ("features", "layers"),
    "image_size": ("features", "image_size"), "grid": ("features", "grid"), "dim": ("features", "dim"),
    "aggregate": ("features", "aggregate"), "center_crop": ("features", "center_crop"),
    "device": ("features", "device"),
    # channels and heatmaps
    "seeds": ("channels", "seeds"), "min_span": ("channels", "min_span"), "k_sigma": ("channels", "k_sigma"),
    "spread": ("channels", "spread"), "blur": ("heatmap", "blur_sigma"), "image_score": ("heatmap", "image_score"),
    "top_k": ("heatmap", "top_k"), "reweight_neighbors": ("heatmap", "reweight_neighbors"),
    # the nominal index and the long-term memory
    "index": ("index", "kind"), "nprobe": ("index", "nprobe"), "exact_below": ("index", "exact_below"),
    "ef_construction": ("index", "ef_construction"), "memory": ("memory", "capacity"),
    "memory_epsilon_ratio": ("memory", "epsilon_ratio"), "memory_max_age": ("memory", "max_age"),
    # alarms and threads
    "rule": ("decisions", "rule"), "false_alarm_rate": ("decisions", "false_alarm_rate"),
    "torch_threads": ("threads", "torch"), "blas_threads": ("threads", "blas"),
    "associate_threads": ("threads", "associate"),
    # batch InReaCh only (InReachConfig)
    "positional": ("positional", "mode"), "seed_choice": ("seed_choice",), "new_look_seeds": ("new_look_seeds",),
}
LEARNING = ("background", "sync")


def place_of(name: str) -> tuple[str, ...]:
    """Where the flat setting ``name`` goes (``ValueError`` naming the known ones when unknown)."""
    if name not in PLACES:
        raise ValueError(f"unknown setting {name!r}: choose from {', '.join(sorted(PLACES))} or 'learning'")
    return PLACES[name]


def _pair(value: Any) -> Any:
    return (value, value) if isinstance(value, int) and not isinstance(value, bool) else value


def nested(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The nested overrides that flat ``settings`` make (a value None is not given). Besides the names of
    :data:`PLACES`: ``learning`` ("background" or "sync") sets ``learn_in_background``; ``layers`` may be
    "A,B"; ``image_size`` and ``grid`` may be one int; an image size without a grid sets the grid to
    size / 8 (the backbones' stride)."""
    given = {k: v for k, v in settings.items() if v is not None}
    if "learning" in given:
        learning = given.pop("learning")
        if learning not in LEARNING:
            raise ValueError(f"learning must be one of {', '.join(LEARNING)}, got {learning!r}")
        given["learn_in_background"] = learning == "background"
    if isinstance(given.get("layers"), str):
        given["layers"] = tuple(x.strip() for x in given["layers"].split(",") if x.strip())
    for key in ("image_size", "grid"):
        if key in given:
            given[key] = _pair(given[key])
    if "image_size" in given and "grid" not in given and isinstance(given["image_size"], tuple):
        given["grid"] = tuple(int(v) // 8 for v in given["image_size"])
    out: dict[str, Any] = {}
    for name, value in given.items():
        *parents, leaf = place_of(name)
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def stream_config_of(settings: Mapping[str, Any] | None = None, *, preset: str = "default",
                     overrides: Mapping[str, Any] | None = None) -> StreamConfig:
    """The ``StreamConfig`` of ``preset``, then the flat ``settings``, then nested ``overrides`` (as a serve
    file's ``[cameras.overrides]``). A bad value raises the config's ``ValueError`` naming the field."""
    return stream_config(preset, merge(nested(settings or {}), overrides or {}))


def configure(config: T, settings: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None) -> T:
    """A copy of ``config`` (any of the nested configuration dataclasses, e.g. ``InReachConfig``) with the
    flat ``settings`` and then the nested ``overrides`` applied."""
    return apply_overrides(config, merge(nested(settings or {}), overrides or {}))
