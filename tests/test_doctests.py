"""The docstring examples of ``streamad.adapters``, run by their installed names.

``pytest --doctest-modules`` collects ``streamad/`` (``testpaths``) but not the top-level ``adapters/``
folder: pytest would import its files under the folder's own name (``adapters.publisher``), a second
copy beside ``streamad.adapters`` that could also meet the unrelated PyPI package ``adapters``. So
this test imports every module of ``streamad.adapters`` as the installed package names it and runs
its examples with doctest.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import streamad.adapters

MODULES = sorted({"streamad.adapters"} | {info.name for info in pkgutil.walk_packages(
    streamad.adapters.__path__, "streamad.adapters.")})


def test_every_adapter_module_is_found() -> None:
    assert {"streamad.adapters.publisher", "streamad.adapters.subscriber", "streamad.adapters.security",
            "streamad.adapters.sources.spec"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (printed above)"
