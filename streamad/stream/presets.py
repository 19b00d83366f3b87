"""Named configurations for the streaming detector: overrides applied to the default ``StreamConfig``.

A preset is a nested dict of field overrides (``{"features": {"grid": (20, 20)}}``);
:func:`apply_overrides` applies one to any nested frozen dataclass config, so the dataclasses still
validate every value::

    >>> from streamad.config import InReachConfig
    >>> cfg = apply_overrides(InReachConfig(), PRESETS["fast"])
    >>> cfg.features.grid, cfg.features.image_size, cfg.channels.seeds
    ((20, 20), (160, 160), 5)
    >>> stream_config("remember").memory.capacity
    60000
    >>> apply_overrides(InReachConfig(), {"features": {"colour": 1}})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: FeatureConfig has no field 'colour' (fields: backbone, ...)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

PRESETS: dict[str, dict[str, Any]] = {
    # the library defaults: efficientnet_lite0 at 224x224, a 28x28 grid, 256-d descriptors, 10 seeds
    "default": {},
    # about 4x less association work: 160x160 input, a 20x20 grid, 128-d descriptors, 5 seeds
    "fast": {"features": {"image_size": (160, 160), "grid": (20, 20), "dim": 128},
             "channels": {"seeds": 5}},
    # finer heatmaps: 288x288 input, a 36x36 grid, 384-d descriptors (about 3x the default's work)
    "accurate": {"features": {"image_size": (288, 288), "grid": (36, 36), "dim": 384}},
    # a long-term memory of 60,000 trusted patches beyond the window: the default since the stream's own
    # measurements (docs/stream_defaults.md); the name stays for configurations that use it
    "remember": {"memory": {"capacity": 60000}},
    # the window only, no long-term memory: one search per frame instead of two (faster; on textures it
    # sees fewer normal looks: docs/stream_defaults.md)
    "lean": {"memory": {"capacity": 0}},
}

DESCRIPTIONS: dict[str, str] = {
    "default": "the library defaults (224 px input, 28x28 grid, 256-d)",
    "fast": "smaller grid and fewer seeds for slow machines (160 px, 20x20, 128-d, 5 seeds)",
    "accurate": "finer grid for small defects, slower (288 px, 36x36, 384-d)",
    "remember": "a long-term memory of 60,000 patches beyond the window (now the default)",
    "lean": "the window only, no long-term memory: faster scoring, fewer normal looks on textures",
}


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``extra``, nested dicts merged key by key.

    >>> merge({"features": {"dim": 128, "grid": (20, 20)}}, {"features": {"dim": 64}, "window": 50})
    {'features': {'dim': 64, 'grid': (20, 20)}, 'window': 50}
    """
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(config: T, overrides: Mapping[str, Any]) -> T:
    """A copy of the dataclass ``config`` with ``overrides`` applied (nested dicts go into nested
    dataclasses). An unknown field raises ``ValueError`` naming it; bad values raise the config's own
    ``ValueError``."""
    names = [f.name for f in dataclasses.fields(config)]  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in names:
            raise ValueError(f"{type(config).__name__} has no field {key!r} (fields: {', '.join(names)})")
        current = getattr(config, key)
        if isinstance(value, Mapping) and dataclasses.is_dataclass(current):
            changes[key] = apply_overrides(current, value)
        else:
            changes[key] = value
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]


def preset_overrides(name: str) -> dict[str, Any]:
    """The overrides of preset ``name`` (``ValueError`` listing the presets when unknown)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def stream_config(preset: str = "default", overrides: Mapping[str, Any] | None = None) -> Any:
    """The ``StreamConfig`` of ``preset`` with ``overrides`` on top (nested dicts, as in ``PRESETS``)."""
    from streamad import config as config_module

    stream_config_cls = getattr(config_module, "StreamConfig", None)
    if stream_config_cls is None:
        raise ImportError("streamad.config.StreamConfig is not available in this build of streamad")
    return apply_overrides(stream_config_cls(), merge(preset_overrides(preset), overrides or {}))
