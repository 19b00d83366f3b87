"""The architecture, checked: every module sits in one room (layer), imports only point down the room
table, and no two modules import each other, directly or round a loop.

The package is read with :mod:`ast`, never imported, so a broken or heavy module cannot hide an import.
It is read where it lives: ``streamad/`` and the folders ``pyproject.toml`` maps into it
(``[tool.setuptools] package-dir``: the top-level ``adapters/`` is ``streamad.adapters``).

What counts as an import of a ``streamad`` module (every one of them is checked, wherever it is):

* ``import streamad.a.b``, ``from streamad.a import b`` (``b`` a submodule or subpackage, else an
  attribute of ``streamad.a``), ``from streamad.a.b import *``;
* relative imports, resolved against the importing module (``from . import x``, ``from ..a import b``;
  in an ``__init__.py`` the dot is the package itself);
* at module level and also inside functions, methods, class bodies, ``if``/``try`` blocks;
* under ``if TYPE_CHECKING:`` too.  Decision: type-only imports count like any other, the team wants no
  cycles even there (a type-only cycle is a design cycle, and it becomes a runtime one the day someone
  moves the import out of the block).  Messages label them ``under TYPE_CHECKING``;
* ``importlib.import_module("streamad.x")`` / ``__import__("streamad.x")`` with a literal name.  A name
  built at run time (``streamad.cli``'s ``COMMANDS`` table) cannot be seen and is not counted;
* docstring examples (``>>> from streamad import ...``) are not code and are not counted.

Import cycles are cycles of the module graph where importing ``a.b.c`` also imports the packages
``a.b`` and ``a`` (their ``__init__`` runs first).  One exception, because Python guarantees it: the
packages that contain the importer itself are already in ``sys.modules`` when the importer runs, so the
implied import of *those* is a no-op and adds no edge (``streamad.stream.detector`` importing
``streamad.config`` does not depend on ``streamad/__init__.py``).  An explicit import of such a package
(``from streamad import StreamDetector`` inside the package) does add an edge: it needs the package's
attributes, which may not exist yet while that package is still being initialised.

The room table is :data:`MAY_IMPORT`; decisions taken there are documented next to it.  Every module
must belong to a room (a new top-level module or subpackage has to be placed in the table), and every
import of a ``streamad`` name must resolve to a module of the package.  The checker is proved able to
fail on a small fake package with known faults (``test_broken_fake_package_fails_with_every_violation``).
"""

from __future__ import annotations

import ast
import textwrap
import tomllib
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO / "streamad"


def mapped_folders(repo: Path = REPO) -> dict[str, Path]:
    """Subpackages that live outside ``streamad/`` (pyproject's package-dir): dotted name -> folder."""
    setuptools = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    return {name: repo / folder for name, folder in setuptools.get("package-dir", {}).items() if name}


# --------------------------------------------------------------------------------------------------
# The rooms.

#: Top-level modules of the base room: they import nothing of the package but each other.
BASE_MODULES = frozenset({"config", "errors", "results", "version", "state_schema"})
#: The public facade: the package's ``__init__`` ("") and ``streamad.inreach``, re-exports for users.
FACADE_MODULES = frozenset({"", "inreach"})
#: ``python -m streamad``, in a room of its own at the very top.
MAIN_MODULES = frozenset({"__main__"})
#: The measurement scripts (``python -m streamad.bench.scripts.NAME``): programs, beside ``__main__`` at the top.
SCRIPTS_PACKAGE = "bench.scripts"
#: Subpackages, each its own room of the same name.
SUBPACKAGE_ROOMS = frozenset({"core", "index", "stream", "vision", "batch", "evaluation", "bench", "testing", "cli",
                              "adapters", "display", "runtime"})

ENGINE = frozenset({"core", "index", "stream"})
#: The outer rooms: what joins the engine to the world, measures it or drives it.
OUTER = frozenset({"evaluation", "bench", "cli", "adapters", "runtime", "display", "main"})

#: Which other rooms each room may import (its own room always).  Arrows only point down.
#: Decisions (the brief left them open):
#: * evaluation may use testing (drift_eval replays precomputed descriptors through the
#:   ``testing.standin`` stand-in) but not adapters, display or runtime: plotting is for cli
#:   (``cli.eval_stream`` calls ``display.drift_plot``), so evaluation stays free of matplotlib/OpenCV
#:   windows/ZeroMQ;
#: * display (overlay, window, recorders, the drift figure) imports base and vision only;
#: * adapters (the top-level ``adapters/`` folder, installed as ``streamad.adapters``: OpenCV sources,
#:   ZeroMQ publisher, subscriber and security) may import base, vision and display (the publisher's
#:   optional JPEG overlay), never the engine's detector, the runtime or the CLI;
#: * runtime (live loop, watch's session, serve) joins adapters to the engine: base, vision, stream,
#:   display and adapters; core and index are not needed (it talks to the detector), so not allowed;
#: * testing may import base and vision only (a stand-in extractor mimics vision's extractor);
#: * the facade (``streamad/__init__.py``, ``streamad/inreach.py``) only re-exports the engine, base
#:   and batch, so it may import base, core, index, vision, stream and batch and nothing above; then
#:   cli ("may import all", and ``cli.watch`` does ``import streamad`` to reach StreamDetector) and
#:   bench ("all but cli") may import it without a cycle.  Every other room imports the module that
#:   defines a name, never the re-export, so the package root cannot become a hub that closes cycles;
#: * ``streamad/__main__.py`` imports cli, so it is its own room, "main", above cli; nothing imports it;
#: * the measurement scripts (``streamad/bench/scripts/``) are programs too: room "scripts", beside main,
#:   may use everything below (the CLI's option table included); nothing imports them.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "base": frozenset(),
    "core": frozenset({"base"}),
    "index": frozenset({"base", "core"}),
    "vision": frozenset({"base"}),
    "stream": frozenset({"base", "core", "index", "vision"}),
    "batch": frozenset({"base", "core", "index", "vision"}),
    "facade": frozenset({"base", "core", "index", "vision", "stream", "batch"}),
    "testing": frozenset({"base", "vision"}),
    "display": frozenset({"base", "vision"}),
    "adapters": frozenset({"base", "vision", "display"}),
    "runtime": frozenset({"base", "vision", "stream", "display", "adapters"}),
    "evaluation": frozenset({"base", "core", "index", "vision", "stream", "batch", "testing"}),
    "bench": frozenset({"base", "core", "index", "vision", "stream", "batch", "testing", "evaluation",
                        "display", "adapters", "runtime", "facade"}),
    "cli": frozenset({"base", "core", "index", "vision", "stream", "batch", "testing", "evaluation",
                      "display", "adapters", "runtime", "bench", "facade"}),
    "main": frozenset({"base", "core", "index", "vision", "stream", "batch", "testing", "evaluation",
                       "display", "adapters", "runtime", "bench", "cli", "facade"}),
    "scripts": frozenset({"base", "core", "index", "vision", "stream", "batch", "testing", "evaluation",
                          "display", "adapters", "runtime", "bench", "cli", "facade"}),
}


def room_of(module: str, package: str) -> str | None:
    """The room of ``module`` (a dotted name inside ``package``), or None for a module in no room."""
    rel = "" if module == package else module[len(package) + 1:]
    if rel in FACADE_MODULES:
        return "facade"
    if rel in MAIN_MODULES:
        return "main"
    if rel == SCRIPTS_PACKAGE or rel.startswith(SCRIPTS_PACKAGE + "."):
        return "scripts"
    if rel in BASE_MODULES:
        return "base"
    first = rel.split(".")[0]
    return first if first in SUBPACKAGE_ROOMS else None


# --------------------------------------------------------------------------------------------------
# Reading the package.

@dataclass(frozen=True)
class Import:
    """One import statement (one name of it) that reaches a module of the package."""

    importer: str   # dotted name of the importing module
    path: str       # its file, relative to the package's parent folder, with forward slashes
    line: int
    target: str     # dotted name of the module imported (resolved; may not exist)
    context: str    # "at module level", "in a function", "in a class body", "under TYPE_CHECKING", ...


@dataclass
class Scan:
    package: str
    modules: dict[str, str] = field(default_factory=dict)   # dotted name -> relative path
    packages: set[str] = field(default_factory=set)          # dotted names that are packages
    imports: list[Import] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)        # unreadable files, unresolvable imports


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


class _Collector(ast.NodeVisitor):
    def __init__(self, scan: Scan, module: str, is_package: bool, path: str) -> None:
        self.scan, self.module, self.is_package, self.path = scan, module, is_package, path
        self.stack: list[str] = []

    # where we are -------------------------------------------------------------------------------
    def _context(self) -> str:
        if "TYPE_CHECKING" in self.stack:
            return "under TYPE_CHECKING"
        if "function" in self.stack:
            return "in a function"
        if "class" in self.stack:
            return "in a class body"
        return "at module level"

    def _inside(self, kind: str, node: ast.AST) -> None:
        self.stack.append(kind)
        self.generic_visit(node)
        self.stack.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._inside("function", node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._inside("function", node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._inside("function", node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._inside("class", node)

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.visit(node.test)
        self.stack.append("TYPE_CHECKING")
        for statement in node.body:
            self.visit(statement)
        self.stack.pop()
        for statement in node.orelse:   # the else branch of ``if TYPE_CHECKING`` runs for real
            self.visit(statement)

    # imports ------------------------------------------------------------------------------------
    def _ours(self, name: str) -> bool:
        package = self.scan.package
        return name == package or name.startswith(package + ".")

    def _add(self, node: ast.AST, target: str, context: str | None = None) -> None:
        line = getattr(node, "lineno", 0)
        self.scan.imports.append(Import(self.module, self.path, line, target, context or self._context()))
        if target not in self.scan.modules:
            self.scan.problems.append(
                f"{self.path}:{line} imports {target}, which is no module of {self.scan.package}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if self._ours(alias.name):
                self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.module if self.is_package else self.module.rpartition(".")[0]
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            if not base:
                self.scan.problems.append(f"{self.path}:{node.lineno} has a relative import beyond "
                                          f"the top-level package")
                return
            base = f"{base}.{node.module}" if node.module else base
        else:
            base = node.module or ""
        if not self._ours(base):
            return
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            self._add(node, submodule if alias.name != "*" and submodule in self.scan.modules else base)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if (name in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str) and self._ours(node.args[0].value)):
            self._add(node, node.args[0].value, f"{self._context()}, via {name}()")
        self.generic_visit(node)


def _module_files(folder: Path, dotted: str) -> Iterable[tuple[str, bool, Path]]:
    """(dotted name, is a package, file) of every module in the package ``folder`` named ``dotted``."""
    for file in sorted(folder.rglob("*.py")):
        parts = file.relative_to(folder).with_suffix("").parts
        if any(not part.isidentifier() for part in parts[:-1]) or "__pycache__" in parts:
            continue
        # a folder without __init__.py is no package: skip what is inside it
        if any(not (folder.joinpath(*parts[:i]) / "__init__.py").is_file() for i in range(len(parts))):
            continue
        is_package = parts[-1] == "__init__"
        yield ".".join((dotted, *(parts[:-1] if is_package else parts))), is_package, file


def scan_package(package_dir: Path, mapped: Mapping[str, Path] | None = None) -> Scan:
    """Every module of the package in ``package_dir`` (plus the subpackages ``mapped`` puts in other
    folders: dotted name -> folder) and every import of its modules, without importing."""
    package_dir = Path(package_dir)
    scan = Scan(package_dir.name)
    root = package_dir.parent
    files: list[tuple[str, bool, Path]] = []
    for dotted, folder in [(package_dir.name, package_dir), *sorted((mapped or {}).items())]:
        for name, is_package, file in _module_files(Path(folder), dotted):
            scan.modules[name] = file.relative_to(root).as_posix()
            if is_package:
                scan.packages.add(name)
            files.append((name, is_package, file))
    for name, is_package, file in files:
        path = scan.modules[name]
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"), filename=path)
        except (SyntaxError, UnicodeDecodeError) as exc:
            scan.problems.append(f"{path} cannot be parsed: {exc}")
            continue
        _Collector(scan, name, is_package, path).visit(tree)
    return scan


# --------------------------------------------------------------------------------------------------
# Rule (a): rooms.

def unassigned_modules(scan: Scan) -> list[str]:
    return [f"{path} belongs to no room (give it one in tests/test_layers.py)"
            for module, path in sorted(scan.modules.items()) if room_of(module, scan.package) is None]


def layer_violations(scan: Scan, may_import: Mapping[str, Iterable[str]] = MAY_IMPORT) -> list[str]:
    """Every import from a room to a room it may not import, as ``path:line imports x (a may not import b)``."""
    found = []
    for imp in scan.imports:
        if imp.target not in scan.modules:
            continue
        source, target = room_of(imp.importer, scan.package), room_of(imp.target, scan.package)
        if source is None or target is None or source == target or target in may_import.get(source, ()):
            continue
        found.append((imp.path, imp.line, f"{imp.path}:{imp.line} imports {imp.target} "
                                          f"({source} may not import {target})"))
    return [message for _, _, message in sorted(set(found))]


# --------------------------------------------------------------------------------------------------
# Rule (b): no cycles.

def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def dependency_graph(scan: Scan) -> dict[str, dict[str, list[str]]]:
    """module -> {module it imports: [why, one line per import site]}.

    Importing ``a.b.c`` also imports ``a.b`` and ``a``, except the packages that contain the importer
    (already imported before the importer runs)."""
    graph: dict[str, dict[str, list[str]]] = {module: {} for module in scan.modules}
    for imp in scan.imports:
        if imp.target not in scan.modules:
            continue
        site = f"{imp.path}:{imp.line} imports {imp.target}"
        edges = [(imp.target, f"{site} ({imp.context})")]
        own = set(_ancestors(imp.importer))
        edges += [(package, f"{site}, which runs package {package} first ({imp.context})")
                  for package in _ancestors(imp.target) if package not in own]
        for target, why in edges:
            if target != imp.importer and why not in graph[imp.importer].setdefault(target, []):
                graph[imp.importer][target].append(why)
    return graph


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), each sorted, the list sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.get(succ, ())))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return sorted(components)


def _shortest_path(graph: Mapping[str, Iterable[str]], start: str, goal: str, allowed: set[str]) -> list[str]:
    previous: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            break
        for succ in sorted(graph[node]):
            if succ in allowed and succ not in previous:
                previous[succ] = node
                queue.append(succ)
    path = [goal]
    while previous[path[-1]] is not None:
        path.append(previous[path[-1]])   # type: ignore[arg-type]
    return path[::-1]


def import_cycles(scan: Scan) -> list[str]:
    """Every import cycle, as ``a -> b -> a`` and the import lines that make it.

    Per strongly connected component, one shortest cycle through every edge inside it, so every import
    that takes part in a cycle is named at least once."""
    graph = dependency_graph(scan)
    cycles: set[tuple[str, ...]] = set()
    for component in strongly_connected(graph):
        if len(component) < 2:
            continue
        members = set(component)
        for source in component:
            for target in graph[source]:
                if target in members:
                    loop = [source] + _shortest_path(graph, target, source, members)[:-1]
                    turn = loop.index(min(loop))
                    cycles.add(tuple(loop[turn:] + loop[:turn]))
    reports = []
    for loop in sorted(cycles, key=lambda c: (len(c), c)):
        chain = " -> ".join(loop + (loop[0],))
        lines = [why for a, b in zip(loop, loop[1:] + (loop[0],)) for why in graph[a][b]]
        reports.append("import cycle: " + chain + "".join("\n    " + line for line in lines))
    return reports


# --------------------------------------------------------------------------------------------------
# The real tree.

def _fail(title: str, messages: list[str]) -> str:
    return f"{title} ({len(messages)}):\n" + "\n".join(messages)


def test_room_table_only_points_down() -> None:
    rooms = set(MAY_IMPORT)
    assert rooms == SUBPACKAGE_ROOMS | {"base", "facade", "main", "scripts"}
    for room, allowed in MAY_IMPORT.items():
        assert set(allowed) <= rooms - {room}, room
    assert [c for c in strongly_connected(MAY_IMPORT) if len(c) > 1] == [], "the room table has a cycle"
    # the demand, spelled out
    for room in ENGINE:
        assert not MAY_IMPORT[room] & (OUTER | {"batch", "testing", "facade"})
    for room in ("vision", "batch", "testing", "evaluation"):   # below the I/O rooms too
        assert not MAY_IMPORT[room] & {"adapters", "runtime", "display", "cli", "bench"}, room
    assert not MAY_IMPORT["adapters"] & {"runtime", "cli", "bench", "evaluation", "stream", "core", "index"}
    assert not MAY_IMPORT["display"] & {"adapters", "runtime", "cli", "bench"}
    assert MAY_IMPORT["base"] == frozenset()
    assert {room for room, allowed in MAY_IMPORT.items() if "facade" in allowed} == {"cli", "bench", "main", "scripts"}
    assert not any({"main", "scripts"} & allowed for allowed in MAY_IMPORT.values())
    assert "cli" not in MAY_IMPORT["bench"]


def real_scan() -> Scan:
    """The package as installed: ``streamad/`` and the top-level folders pyproject maps into it."""
    return scan_package(PACKAGE_DIR, mapped_folders())


def test_real_package_scan_sees_the_rooms() -> None:
    scan = real_scan()
    # guard against a scanner that silently finds nothing
    assert "streamad.stream.detector" in scan.modules and "streamad.core" in scan.packages
    # the brief's top-level adapters/ folder is read as streamad.adapters, and nothing else is left there
    assert mapped_folders() == {"streamad.adapters": REPO / "adapters"}
    assert scan.modules["streamad.adapters.publisher"] == "adapters/publisher.py"
    assert "streamad.adapters.sources" in scan.packages and "streamad.runtime.serve" in scan.packages
    assert not (PACKAGE_DIR / "adapters").exists(), "streamad/adapters/ would shadow the top-level adapters/"
    assert any(imp.importer == "streamad.stream.detector" and imp.context == "in a function"
               for imp in scan.imports)
    assert unassigned_modules(scan) == [], _fail("Modules in no room", unassigned_modules(scan))
    assert scan.problems == [], _fail("Imports that resolve to no module", scan.problems)


def test_real_package_imports_only_point_down() -> None:
    violations = layer_violations(real_scan())
    assert violations == [], _fail("Imports against the room table (tests/test_layers.py MAY_IMPORT)", violations)


def test_real_package_has_no_import_cycles() -> None:
    cycles = import_cycles(real_scan())
    assert cycles == [], _fail("Import cycles", cycles)


# --------------------------------------------------------------------------------------------------
# The checker can fail: a small fake package with known faults, and a clean one.

def _write(root: Path, files: Mapping[str, str]) -> Path:
    for relative, text in files.items():
        file = root / relative
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root / "fakepkg"


def _scan_fake(root: Path, files: Mapping[str, str]) -> Scan:
    """The fake package, with its top-level ``adapters/`` folder read as ``fakepkg.adapters`` (as pyproject
    maps the real one)."""
    return scan_package(_write(root, files), {"fakepkg.adapters": root / "adapters"})


CLEAN = {
    "fakepkg/__init__.py": "from fakepkg.stream.detector import Detector\n",   # root -> stream -> root: no cycle
    "fakepkg/__main__.py": "from fakepkg.cli import main\n",
    "fakepkg/config.py": "from fakepkg import errors\n",
    "fakepkg/errors.py": "",
    "fakepkg/core/__init__.py": "",
    "fakepkg/core/x.py": "from ..config import Config\n",
    "fakepkg/index/__init__.py": "from .hnsw import Index\n",
    "fakepkg/index/hnsw.py": "from fakepkg.core import x\nfrom . import exact\n",
    "fakepkg/index/exact.py": "import fakepkg.core.x\n",
    "fakepkg/vision/__init__.py": "",
    "fakepkg/vision/frames.py": "import fakepkg.errors as errors\n",
    "fakepkg/stream/__init__.py": "",
    "fakepkg/stream/detector.py": """
        from typing import TYPE_CHECKING
        from fakepkg.index import Index
        from fakepkg.vision.frames import check
        if TYPE_CHECKING:
            from fakepkg.core.x import X
        def save(self):
            from fakepkg.stream.persistence import save_state
    """,
    "fakepkg/stream/persistence.py": "from fakepkg.config import Config\n",
    "fakepkg/batch/__init__.py": "",
    "fakepkg/batch/model.py": "from fakepkg.batch.baselines.common import check\nfrom fakepkg.vision import frames\n",
    "fakepkg/batch/baselines/__init__.py": "from fakepkg.batch.baselines.patchcore import PatchCore\n",
    "fakepkg/batch/baselines/common.py": "",
    "fakepkg/batch/baselines/patchcore.py": "from .common import check\n",
    "fakepkg/evaluation/__init__.py": "",
    "fakepkg/evaluation/metrics.py": "import importlib\nimportlib.import_module('fakepkg.testing.standin')\n",
    "fakepkg/testing/__init__.py": "",
    "fakepkg/testing/standin.py": "from fakepkg.vision.frames import check\n",
    "fakepkg/display/__init__.py": "from .overlay import render\n",
    "fakepkg/display/overlay.py": "from fakepkg.vision.frames import check\n",
    "adapters/__init__.py": "",                               # the top-level folder, read as fakepkg.adapters
    "adapters/sources.py": "from fakepkg.vision.frames import check\n",
    "adapters/publisher.py": "from .sources import Frame\ndef send():\n    from fakepkg.display import render\n",
    "fakepkg/runtime/__init__.py": "",
    "fakepkg/runtime/live.py": "from fakepkg.adapters.sources import Frame\nfrom fakepkg.stream.detector import Detector\n",
    "fakepkg/bench/__init__.py": "from fakepkg.evaluation import metrics\nfrom fakepkg.adapters import sources\n",
    "fakepkg/cli/__init__.py": "from fakepkg import Detector\nfrom fakepkg.bench import run\n",
    "fakepkg/bench/scripts/__init__.py": "",
    "fakepkg/bench/scripts/probe.py": "from fakepkg.cli import main\nfrom fakepkg.bench import run\n",  # a program
    "fakepkg/notapackage/stray.py": "import fakepkg.cli\n",   # no __init__.py: not a module
}


def test_clean_fake_package_passes(tmp_path: Path) -> None:
    scan = _scan_fake(tmp_path, CLEAN)
    assert "fakepkg.stream.persistence" in scan.modules and "fakepkg.notapackage.stray" not in scan.modules
    assert scan.modules["fakepkg.adapters.publisher"] == "adapters/publisher.py"
    assert scan.problems == []
    assert unassigned_modules(scan) == []
    assert layer_violations(scan) == []
    assert import_cycles(scan) == []
    contexts = {(imp.importer, imp.target): imp.context for imp in scan.imports}
    assert contexts[("fakepkg.stream.detector", "fakepkg.core.x")] == "under TYPE_CHECKING"
    assert contexts[("fakepkg.stream.detector", "fakepkg.stream.persistence")] == "in a function"
    assert contexts[("fakepkg.evaluation.metrics", "fakepkg.testing.standin")] == \
        "at module level, via import_module()"
    assert contexts[("fakepkg.core.x", "fakepkg.config")] == "at module level"            # ..config
    assert contexts[("fakepkg.index.hnsw", "fakepkg.index.exact")] == "at module level"   # from . import exact
    assert contexts[("fakepkg.index", "fakepkg.index.hnsw")] == "at module level"         # .hnsw in __init__
    assert contexts[("fakepkg.config", "fakepkg.errors")] == "at module level"            # from pkg import mod
    assert contexts[("fakepkg.bench", "fakepkg.evaluation.metrics")] == "at module level"  # from pkg import mod
    assert contexts[("fakepkg.cli", "fakepkg")] == "at module level"                      # attribute of root
    assert contexts[("fakepkg.adapters.publisher", "fakepkg.adapters.sources")] == "at module level"  # mapped .


BROKEN = {
    **CLEAN,
    # the engine imports evaluation, inside a function
    "fakepkg/core/x.py": """
        from ..config import Config
        def score():
            from fakepkg.evaluation import metrics
            return metrics
    """,
    # two modules importing each other: one inside a function, one under TYPE_CHECKING
    "fakepkg/stream/persistence.py": """
        from typing import TYPE_CHECKING
        from fakepkg.config import Config
        if TYPE_CHECKING:
            from .detector import Detector
    """,
    # relative import into a forbidden room, in a class body; a module of no room; a dangling import
    "fakepkg/vision/frames.py": """
        import fakepkg.errors as errors
        class Frame:
            from ..adapters.window import Window
        import fakepkg.gone
    """,
    "adapters/window.py": "",
    # the adapters reach up into the runtime (which imports them: a cycle too)
    "adapters/sources.py": "from fakepkg.vision.frames import check\ndef frames():\n    import fakepkg.runtime.live\n",
    "fakepkg/extras.py": "",
    # a cycle through a package's __init__: model imports baselines.common, so baselines/__init__ runs,
    # which imports patchcore, which imports model
    "fakepkg/batch/model.py": "from fakepkg.batch.baselines.common import check\n",
    # the facade is for users, cli and bench only; patchcore now closes a loop through baselines/__init__
    "fakepkg/batch/baselines/patchcore.py": "from ..model import Model\n",
    "fakepkg/testing/other.py": "try:\n    from fakepkg import Detector\nexcept ImportError:\n    pass\n",
    # nothing imports a measurement script
    "fakepkg/cli/extra.py": "from fakepkg.bench.scripts import probe\n",
}


def test_broken_fake_package_fails_with_every_violation(tmp_path: Path) -> None:
    scan = _scan_fake(tmp_path, BROKEN)
    assert scan.problems == ["fakepkg/vision/frames.py:4 imports fakepkg.gone, which is no module of fakepkg"]
    assert unassigned_modules(scan) == ["fakepkg/extras.py belongs to no room (give it one in tests/test_layers.py)"]
    assert layer_violations(scan) == [
        "adapters/sources.py:3 imports fakepkg.runtime.live (adapters may not import runtime)",
        "fakepkg/cli/extra.py:1 imports fakepkg.bench.scripts.probe (cli may not import scripts)",
        "fakepkg/core/x.py:3 imports fakepkg.evaluation.metrics (core may not import evaluation)",
        "fakepkg/testing/other.py:2 imports fakepkg (testing may not import facade)",
        "fakepkg/vision/frames.py:3 imports fakepkg.adapters.window (vision may not import adapters)",
    ]
    assert import_cycles(scan) == [
        "import cycle: fakepkg.adapters.sources -> fakepkg.runtime.live -> fakepkg.adapters.sources"
        "\n    adapters/sources.py:3 imports fakepkg.runtime.live (in a function)"
        "\n    fakepkg/runtime/live.py:1 imports fakepkg.adapters.sources (at module level)",
        "import cycle: fakepkg.stream.detector -> fakepkg.stream.persistence -> fakepkg.stream.detector"
        "\n    fakepkg/stream/detector.py:7 imports fakepkg.stream.persistence (in a function)"
        "\n    fakepkg/stream/persistence.py:4 imports fakepkg.stream.detector (under TYPE_CHECKING)",
        "import cycle: fakepkg.batch.baselines -> fakepkg.batch.baselines.patchcore -> fakepkg.batch.model"
        " -> fakepkg.batch.baselines"
        "\n    fakepkg/batch/baselines/__init__.py:1 imports fakepkg.batch.baselines.patchcore (at module level)"
        "\n    fakepkg/batch/baselines/patchcore.py:1 imports fakepkg.batch.model (at module level)"
        "\n    fakepkg/batch/model.py:1 imports fakepkg.batch.baselines.common, which runs package"
        " fakepkg.batch.baselines first (at module level)",
    ]


def test_cycles_across_rooms_are_reported_once_per_loop(tmp_path: Path) -> None:
    """A three-module loop plus a chord: every edge of the component shows up in some reported loop."""
    files = {
        "fakepkg/__init__.py": "",
        "fakepkg/adapters/__init__.py": "",
        "fakepkg/adapters/a.py": "from . import b\n",
        "fakepkg/adapters/b.py": "from . import c\n",
        "fakepkg/adapters/c.py": "def f():\n    from . import a\n    from . import b\n",
    }
    cycles = import_cycles(scan_package(_write(tmp_path, files)))
    heads = [report.splitlines()[0] for report in cycles]
    assert heads == [
        "import cycle: fakepkg.adapters.b -> fakepkg.adapters.c -> fakepkg.adapters.b",
        "import cycle: fakepkg.adapters.a -> fakepkg.adapters.b -> fakepkg.adapters.c -> fakepkg.adapters.a",
    ]
