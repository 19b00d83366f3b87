"""Try bad and unusual inputs on the real entry points and print what each got, as a Markdown table.

    python -m streamad.bench.scripts.bad_inputs            # the table in docs/field.md ("Bad input") is this output

Frames go through ``StreamDetector.process`` (a stand-in extractor, so no backbone is needed; the
validation is the detector's own), batches through ``InReaCh.fit``, timestamps through ``process``.
Every row is produced by running the code, not written by hand.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from streamad.config import ChannelConfig, InReachConfig, StreamConfig
from streamad.stream.detector import StreamDetector
from streamad.batch.inreach import InReaCh


class Means:
    """Stand-in extractor: a 2x2 grid of RGB block means."""

    grid = (2, 2)
    image_size = (32, 32)

    class config:  # noqa: N801 - what the batch detector reads of an extractor's config
        batch_size = 8
        center_crop = 1.0

    def __call__(self, frames: list[np.ndarray]) -> np.ndarray:
        out = [f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2].reshape(2, f.shape[0] // 2, 2, f.shape[1] // 2, 3)
               .mean(axis=(1, 3)).reshape(4, 3) / 255.0 for f in frames]
        return np.stack(out).astype(np.float32)


RGB = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)

FRAMES: list[tuple[str, Callable[[], Any]]] = [
    ("RGB uint8 (48, 64, 3)", lambda: RGB),
    ("grayscale uint8 (48, 64)", lambda: RGB[..., 0]),
    ("grayscale (48, 64, 1)", lambda: RGB[..., :1]),
    ("RGBA uint8 (48, 64, 4)", lambda: np.dstack([RGB, RGB[..., :1]])),
    ("BGRA/BGR array (OpenCV order)", lambda: np.dstack([RGB[..., ::-1], RGB[..., :1]])),
    ("float64 in [0, 1]", lambda: RGB / 255.0),
    ("float32 in [0, 255]", lambda: RGB.astype(np.float32)),
    ("float with a NaN", lambda: np.where(RGB == RGB.max(), np.nan, RGB / 255.0)),
    ("float with +inf", lambda: np.full((48, 64, 3), np.inf, np.float32)),
    ("uint16 (48, 64, 3)", lambda: RGB.astype(np.uint16) * 257),
    ("int64 in 0..255", lambda: RGB.astype(np.int64)),
    ("int16 with negatives", lambda: RGB.astype(np.int16) - 10),
    ("bool mask", lambda: RGB > 127),
    ("complex64", lambda: RGB.astype(np.complex64)),
    ("None", lambda: None),
    ("a string", lambda: "frame.png"),
    ("ragged nested list", lambda: [[1, 2], [3]]),
    ("empty (0, 64, 3)", lambda: np.zeros((0, 64, 3), np.uint8)),
    ("1x1 pixel", lambda: np.zeros((1, 1, 3), np.uint8)),
    ("20000 x 8 pixels", lambda: np.zeros((20000, 8), np.uint8)),
    ("5-d array", lambda: np.zeros((2, 48, 64, 3, 1), np.uint8)),
    ("batch of one (1, 48, 64, 3)", lambda: RGB[None]),
    ("channels-first (3, 48, 64)", lambda: RGB.transpose(2, 0, 1)),
    ("2 channels (48, 64, 2)", lambda: RGB[..., :2]),
    ("flipped view (not contiguous)", lambda: RGB[:, ::-1]),
    ("another size (96, 128, 3) mid-stream", lambda: np.zeros((96, 128, 3), np.uint8)),
]

TIMESTAMPS: list[tuple[str, Any]] = [("timestamp NaN", float("nan")), ("timestamp 'noon'", "noon"),
                                     ("timestamp 1700000000.5", 1700000000.5)]

BATCHES: list[tuple[str, Callable[[], Any]]] = [
    ("fit([img, None, img])", lambda: [RGB, None, RGB]),
    ("fit(one (48, 64, 3) image)", lambda: RGB),
    ("fit([gray, float, RGBA])", lambda: [RGB[..., 0], RGB / 255.0, np.dstack([RGB, RGB[..., :1]])]),
    ("fit([])", lambda: []),
    ("fit(None)", lambda: None),
]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _detector() -> StreamDetector:
    det = StreamDetector(StreamConfig(window=4, channels=ChannelConfig(seeds=1, min_span=1)), extractor=Means())
    for _ in range(3):  # the stream's first frames, 48 x 64: then the detector is ready
        det.process(RGB)
    return det


HOW = {
    "grayscale uint8 (48, 64)": "the gray level in all three channels",
    "grayscale (48, 64, 1)": "the gray level in all three channels",
    "RGBA uint8 (48, 64, 4)": "alpha dropped",
    "BGRA/BGR array (OpenCV order)": "taken as RGB(A): red and blue swapped unless converted first "
                                     "(cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)); the OpenCV sources do this",
    "float64 in [0, 1]": "x 255, rounded",
    "uint16 (48, 64, 3)": "// 257",
    "int64 in 0..255": "cast to uint8",
    "bool mask": "False 0, True 255",
    "flipped view (not contiguous)": "copied to a contiguous array",
}


def frame_row(name: str, make: Callable[[], Any]) -> tuple[str, str]:
    det = _detector()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            r = det.process(make())
        except ValueError as exc:
            return name, f"rejected: {exc}"
    how = f" ({HOW[name]})" if name in HOW else ""
    note = f"; warning (once): {caught[0].message}" if caught else ""
    verb = "accepted as is" if name.startswith("RGB uint8") else f"converted{how}"
    return name, f"{verb}; heatmap {r.heatmap.shape[0]}x{r.heatmap.shape[1]}{note}"


def timestamp_row(name: str, value: Any) -> tuple[str, str]:
    try:
        r = _detector().process(RGB, timestamp=value)
    except ValueError as exc:
        return name, f"rejected: {exc}"
    return name, f"accepted (result timestamp {r.timestamp})"


def batch_row(name: str, make: Callable[[], Any]) -> tuple[str, str]:
    model = InReaCh(InReachConfig(channels=ChannelConfig(seeds=1, min_span=1)), extractor=Means())
    try:
        model.fit(make())
    except ValueError as exc:
        return f"`InReaCh.{name}`", f"rejected: {exc}"
    return f"`InReaCh.{name}`", "converted and fitted"


def rows() -> list[tuple[str, str]]:
    """(input, what it got) for every case, from the real code."""
    out = [frame_row(n, m) for n, m in FRAMES]
    out += [timestamp_row(n, v) for n, v in TIMESTAMPS]
    out += [batch_row(n, m) for n, m in BATCHES]
    return out


def markdown() -> str:
    lines = ["| input | result |", "|---|---|"]
    lines += [f"| {_cell(a)} | {_cell(b)} |" for a, b in rows()]
    return "\n".join(lines)


if __name__ == "__main__":
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    print(markdown())
