"""The installed distribution must carry every subpackage (a non-editable install has nothing else),
the top-level ``adapters/`` folder included, as ``streamad.adapters``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _folders_of_modules() -> dict[str, Path]:
    """Dotted package name -> folder, for every folder holding modules under streamad/ and the mapped folders."""
    roots = {"streamad": ROOT / "streamad"} | {name: ROOT / folder for name, folder in
                                                _setuptools().get("package-dir", {}).items() if name}
    found = {}
    for dotted, root in roots.items():
        for file in root.rglob("*.py"):
            if "__pycache__" not in file.parts:
                found[".".join((dotted, *file.parent.relative_to(root).parts))] = file.parent
    return found


def test_every_folder_of_modules_is_a_listed_package_with_an_init() -> None:
    listed = set(_setuptools()["packages"])
    folders = _folders_of_modules()
    assert set(folders) <= listed, f"folders with modules that pyproject.toml does not list: {sorted(set(folders) - listed)}"
    assert all((folder / "__init__.py").is_file() for folder in folders.values()), "a listed folder lacks __init__.py"
    assert listed <= set(folders), f"listed packages with no folder: {sorted(listed - set(folders))}"
    assert {"streamad.adapters", "streamad.adapters.sources", "streamad.runtime", "streamad.cli"} <= listed


def test_adapters_live_at_the_top_and_are_installed_as_streamad_adapters() -> None:
    assert _setuptools()["package-dir"] == {"streamad.adapters": "adapters"}
    assert (ROOT / "adapters" / "publisher.py").is_file() and not (ROOT / "streamad" / "adapters").exists()
    import streamad.adapters.publisher as publisher

    assert Path(publisher.__file__).resolve().parent.name == "adapters"


def test_old_places_name_the_new_ones() -> None:
    with pytest.raises(ModuleNotFoundError, match=r"streamad\.adapters\.session moved to streamad\.runtime\.session"):
        import streamad.adapters.session  # noqa: F401
    with pytest.raises(ModuleNotFoundError, match=r"streamad\.adapters\.serve moved to streamad\.runtime\.serve"):
        import streamad.adapters.serve.config  # noqa: F401
    with pytest.raises(ImportError, match=r"moved to streamad\.display\.overlay"):
        from streamad.adapters.display import render_overlay  # noqa: F401
    with pytest.raises(ImportError, match=r"streamad\.adapters\.live moved to streamad\.runtime\.live"):
        from streamad.adapters import live  # noqa: F401
    with pytest.raises(ModuleNotFoundError, match="No module named 'streamad.adapters.nothing'"):
        import streamad.adapters.nothing  # noqa: F401  (only the moved names get the message)


@pytest.mark.slow
def test_the_wheel_holds_the_adapters(tmp_path: Path) -> None:
    """A wheel built from a copy of the checkout (so no build/ folder is left in it), offline: the build
    uses this environment's setuptools."""
    pytest.importorskip("setuptools.build_meta")
    src = tmp_path / "src"
    for part in ("streamad", "adapters"):
        shutil.copytree(ROOT / part, src / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, src / part)
    done = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta; "
                           "print(build_meta.build_wheel(sys.argv[1]))", str(tmp_path)],
                          cwd=src, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    names = set(zipfile.ZipFile(tmp_path / done.stdout.split()[-1]).namelist())
    assert {"streamad/adapters/__init__.py", "streamad/adapters/publisher.py", "streamad/adapters/subscriber.py",
            "streamad/adapters/security.py", "streamad/adapters/sources/spec.py", "streamad/runtime/live.py",
            "streamad/runtime/serve/fleet.py", "streamad/display/overlay.py"} <= names
    assert not any(n.startswith("adapters/") for n in names), "adapters/ must be installed inside streamad/"
