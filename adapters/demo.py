"""The built-in demo stream, kept importable here: it lives in :mod:`streamad.adapters.sources.demo`
(a source among the others, so that ``open_source("demo")`` needs nothing outside the package)."""

from __future__ import annotations

from streamad.adapters.sources.demo import DemoConfig, DemoSample, DemoSource, DemoStream

__all__ = ["DemoConfig", "DemoSample", "DemoSource", "DemoStream"]
