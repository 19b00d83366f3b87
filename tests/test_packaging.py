"""The installed distribution must carry every subpackage (a non-editable install has nothing else)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def test_every_folder_of_modules_is_a_package_that_pyproject_finds() -> None:
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packaged = set(find_packages(where=str(ROOT), include=find["include"]))
    folders = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "streamad").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert folders <= packaged, f"folders with modules but no __init__.py (not installed): {sorted(folders - packaged)}"
    assert "streamad.adapters" in packaged and "streamad.cli" in packaged
