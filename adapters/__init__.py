"""The adapters: OpenCV frame sources and ZeroMQ results, imported as ``streamad.adapters``.

This folder sits at the top of the repository (``adapters/``, as the project's brief draws it) and is
installed as the subpackage ``streamad.adapters`` (``[tool.setuptools.package-dir]`` in pyproject.toml):
an importable top-level ``adapters`` would collide with the unrelated PyPI distribution of that name.
They do no math, and the engine does no I/O:

- ``sources`` (a package): frame sources on OpenCV (camera, URL, video file, image folder) and the
  built-in demo stream, behind ``open_source(spec)``; ``demo`` re-exports the demo stream;
- ``publisher`` / ``subscriber``: results over ZeroMQ (the wire format); ``security``: CURVE keys.

They import the base, ``streamad.vision`` and ``streamad.display`` (the publisher's optional JPEG
overlay), never the runtime or the CLI. What joins them to the engine (the live loop, ``streamad
watch``'s session, ``streamad serve``) is :mod:`streamad.runtime`; the overlay, window and recorders
are :mod:`streamad.display`. Importing a module from its old place here says where it went::

    >>> import streamad.adapters.live
    Traceback (most recent call last):
    ...
    ModuleNotFoundError: streamad.adapters.live moved to streamad.runtime.live
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

#: Modules that lived here until the runtime and the display got rooms of their own: old name -> new.
MOVED = {
    "live": "streamad.runtime.live",
    "session": "streamad.runtime.session",
    "serve": "streamad.runtime.serve",
    "display": "streamad.display.overlay",
    "drift_plot": "streamad.display.drift_plot",
}


class _MovedModules(importlib.abc.MetaPathFinder):
    """Answers an import of a moved module (or one inside it) with an error that names its new place."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        head, _, rest = fullname.partition(f"{__name__}.")
        if head or not rest:
            return None
        old = rest.split(".")[0]
        if old not in MOVED:
            return None
        new = MOVED[old] + rest[len(old):]
        # no ``name=``: ``from streamad.adapters import live`` would swallow the error as "no such module"
        raise ModuleNotFoundError(f"{fullname} moved to {new}")


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModules())
