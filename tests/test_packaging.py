"""The installed distribution must carry every subpackage (a non-editable install has nothing else)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "streamad").rglob("__init__.py")}
    found |= {"streamad.adapters"} if (ROOT / "adapters" / "__init__.py").exists() else set()
    assert found <= listed, f"add these to [tool.setuptools] packages: {sorted(found - listed)}"
    assert config["package-dir"]["streamad.adapters"] == "adapters"
