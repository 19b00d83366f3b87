"""A drifting stream from a dataset manifest: frames ordered by acquisition run, defects interleaved.

Magnetic Tile Defects was acquired in runs (``exp1`` ... ``exp6``) whose lighting grows brighter run
by run, so its nominal images in run order are a stream with real drift. :func:`build_drift_stream`
orders every nominal image of the chosen runs by run and, inside a run, by acquisition number (the
``num_<n>`` in the file name), then interleaves defective images of the same run at ``defect_rate``
(the share of defective frames in each run) at seeded random positions. Each frame carries its run,
label and mask file, so scores can be judged per run.

Manifest: a CSV with columns ``image``, ``label`` (0/1), ``mask`` (empty for nominal images),
``run`` and ``defect``; paths are relative to the manifest's parent folder (``mtd/manifest.csv``
lists ``mtd/magnetic_tile/...``) or to the manifest's own folder.

    >>> rows = [ManifestRow(f"exp{r}_num_{i}.jpg", 0, "good", None, f"exp{r}") for r in (1, 2) for i in range(19)]
    >>> rows += [ManifestRow(f"exp{r}_num_9{i}.jpg", 1, "crack", "m.png", f"exp{r}") for r in (1, 2) for i in range(3)]
    >>> stream = build_drift_stream(rows, defect_rate=0.05, seed=0)
    >>> len(stream), [f.run for f in stream][18:22], sum(f.sample.label for f in stream)
    (40, ['exp1', 'exp1', 'exp2', 'exp2'], 2)
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from streamad.evaluation.datasets import Sample
from streamad.errors import UserError

_NUMBER = re.compile(r"num_(\d+)")
_REQUIRED = ("image", "label", "mask", "run")


@dataclass(frozen=True)
class ManifestRow:
    """One image of a manifest: its path, label (0 nominal, 1 defective), defect, mask path and run."""

    path: str
    label: int
    defect: str
    mask_path: str | None
    run: str


@dataclass(frozen=True)
class StreamFrame:
    """One frame of the drifting stream: the image (``sample``: path, label, defect, mask) and its run."""

    sample: Sample
    run: str


def _resolve(path: str, bases: Sequence[str]) -> str:
    for base in bases:
        candidate = os.path.normpath(os.path.join(base, path))
        if os.path.exists(candidate):
            return candidate
    raise UserError(f"manifest entry {path} not found under {' or '.join(bases)}: is the manifest next to its data?")


def read_manifest(manifest: str, runs: Sequence[str] | None = None) -> list[ManifestRow]:
    """The rows of ``manifest`` (CSV) for ``runs`` (default: every run), with paths made absolute-or-relative
    to where the manifest is. Missing columns, bad labels or files that do not exist raise ``UserError``."""
    if not os.path.isfile(manifest):
        raise UserError(f"manifest not found: {manifest} (expected a CSV with columns {', '.join(_REQUIRED)})")
    here = os.path.dirname(os.path.abspath(manifest))
    bases = (os.path.dirname(here), here)
    with open(manifest, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"manifest {manifest} lacks column(s) {', '.join(missing)}")
        rows = []
        for line, r in enumerate(reader, start=2):
            if runs is not None and r["run"] not in runs:
                continue
            if r["label"] not in ("0", "1"):
                raise UserError(f"manifest {manifest} line {line}: label must be 0 or 1, got {r['label']!r}")
            label = int(r["label"])
            if label and not r["mask"]:
                raise UserError(f"manifest {manifest} line {line}: defective image {r['image']} has no mask")
            mask = _resolve(r["mask"], bases) if r["mask"] else None
            rows.append(ManifestRow(_resolve(r["image"], bases), label, r.get("defect") or ("good" if not label else "defect"),
                                    mask, r["run"]))
    if runs is not None:
        absent = [run for run in runs if not any(row.run == run for row in rows)]
        if absent:
            raise UserError(f"manifest {manifest} has no images of run(s) {', '.join(absent)}")
    if not rows:
        raise UserError(f"manifest {manifest} lists no images")
    return rows


def _acquisition_key(path: str) -> tuple[int, str]:
    m = _NUMBER.search(os.path.basename(path))
    return (int(m.group(1)) if m else -1, os.path.basename(path))


def build_drift_stream(rows: Sequence[ManifestRow], runs: Sequence[str] | None = None, defect_rate: float = 0.05,
                       seed: int = 0) -> list[StreamFrame]:
    """Nominal frames of each run in acquisition order, runs in the order given (default: sorted names),
    with ``round(defect_rate * n / (1 - defect_rate))`` defective frames of the same run (n = its nominal
    frames) drawn without replacement and inserted at seeded random positions.

    ``defect_rate`` must be in [0, 0.5); a run without enough defective images raises ``UserError``.
    """
    if not 0.0 <= float(defect_rate) < 0.5:
        raise UserError(f"defect_rate must be in [0, 0.5), got {defect_rate!r}")
    order = list(runs) if runs is not None else sorted({r.run for r in rows})
    rng = np.random.default_rng(seed)
    stream: list[StreamFrame] = []
    for run in order:
        good = sorted((r for r in rows if r.run == run and r.label == 0), key=lambda r: _acquisition_key(r.path))
        bad = sorted((r for r in rows if r.run == run and r.label == 1), key=lambda r: r.path)
        if not good:
            raise UserError(f"run {run} has no nominal images")
        n_bad = int(round(defect_rate * len(good) / (1.0 - defect_rate)))
        if n_bad > len(bad):
            raise UserError(f"run {run} has {len(bad)} defective images, {n_bad} are needed for a defect rate of "
                            f"{defect_rate}: lower --defect-rate")
        chosen = [bad[i] for i in sorted(rng.choice(len(bad), size=n_bad, replace=False).tolist())]
        total = len(good) + n_bad
        at = set(rng.choice(total, size=n_bad, replace=False).tolist())
        goods, bads = iter(good), iter(chosen)
        for pos in range(total):
            r = next(bads) if pos in at else next(goods)
            stream.append(StreamFrame(Sample(r.path, r.label, r.defect, r.mask_path), run))
    return stream
