"""Where a command's report goes: its text to ``--out`` and its payload to ``--json``, folders made.

>>> import json, os, tempfile
>>> root = tempfile.mkdtemp()
>>> write_report("table", {"a": 1}, out=os.path.join(root, "docs", "t.md"), json_path=os.path.join(root, "j.json"),
...              also=[os.path.join(root, "plots", "p.png")])
>>> open(os.path.join(root, "docs", "t.md")).read(), json.load(open(os.path.join(root, "j.json")))
('table\\n', {'a': 1})
>>> os.path.isdir(os.path.join(root, "plots"))   # made for a file the command writes itself
True
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any


def write_report(text: str, payload: Any, *, out: str | None, json_path: str | None,
                 also: Iterable[str | None] = ()) -> None:
    """``text`` (and a newline) to ``out`` and ``payload`` (JSON values) as indented JSON to ``json_path``,
    each when given; the folders of those and of the paths in ``also`` are made first."""
    for path in (out, json_path, *also):
        if path and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    if json_path:
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=1)
