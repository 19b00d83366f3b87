"""Bad input at every public entry: frames (conversions and rejections, each message saying what to do),
sources (BGR(A) and grayscale captures become RGB), frame size changes mid-stream, timestamps, the
batch fit/predict of InReaCh and the baselines, and the live loop surviving a mix of unusable frames."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamad.display.overlay import VideoRecorder
from streamad.runtime.live import run_watch
from streamad.adapters.sources import Frame, LiveSource, Source, VideoFileSource, to_rgb
from streamad.batch.baselines import make_patch_model
from streamad.config import ChannelConfig, DecisionConfig, FeatureConfig, InReachConfig, StreamConfig
from streamad.testing import standin
from streamad.stream.detector import StreamDetector
from streamad.vision.frames import FrameSizeWarning, as_rgb_images, as_rgb_uint8, resize_to
from streamad.batch.inreach import InReaCh
from streamad.batch.image_detector import ImageAnomalyDetector

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(16, 20, 3), dtype=np.uint8)


# -- frames: converted --------------------------------------------------------------------------------


@pytest.mark.parametrize("name, frame, expected", [
    ("grayscale (H, W)", RGB[..., 0], np.repeat(RGB[..., :1], 3, axis=2)),
    ("grayscale (H, W, 1)", RGB[..., :1], np.repeat(RGB[..., :1], 3, axis=2)),
    ("RGBA: alpha dropped", np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)]), RGB),
    # arrays are taken as RGB(A): a BGRA array is read as RGBA, channels are NOT swapped
    ("BGRA taken as RGBA", np.dstack([RGB[..., ::-1], np.zeros(RGB.shape[:2], np.uint8)]), RGB[..., ::-1]),
    ("float in [0, 1]", RGB / 255.0, RGB),
    ("float32 in [0, 1]", (RGB / 255.0).astype(np.float32), RGB),
    ("uint16", RGB.astype(np.uint16) * 257, RGB),
    ("int64 in 0..255", RGB.astype(np.int64), RGB),
    ("bool", RGB > 127, np.where(RGB > 127, 255, 0).astype(np.uint8)),
    ("not contiguous (a flipped view)", RGB[:, ::-1], RGB[:, ::-1]),
    ("nested lists", RGB.tolist(), RGB),
])
def test_usable_frames_are_converted_to_rgb_uint8(name, frame, expected) -> None:
    out = as_rgb_uint8(frame)
    assert out.dtype == np.uint8 and out.flags.c_contiguous and out.shape == expected.shape, name
    np.testing.assert_array_equal(out, expected)


# -- frames: rejected, and the message says what was wrong and what to do ------------------------------


@pytest.mark.parametrize("frame, wrong, todo", [
    (None, "frame is None", "pass an RGB uint8 array"),
    (np.zeros((0, 10, 3), np.uint8), "empty", "pass an RGB uint8 array"),
    (np.zeros((1, 1, 3), np.uint8), "1x1 is outside 8..16384", "resize the frame"),
    (np.zeros((20000, 8), np.uint8), "20000x8 is outside", "check the source's resolution"),
    (np.full((16, 16, 3), np.nan), "NaN or infinite", "np.nan_to_num"),
    (np.full((16, 16, 3), np.inf, np.float32), "NaN or infinite", "drop the frame"),
    (np.full((16, 16, 3), 200.0), r"span \[200, 200\]; float frames must lie in \[0, 1\]", "divide 0..255 data by 255"),
    (np.full((16, 16), -3, np.int16), r"int16 frame values span \[-3, -3\]", "pass uint8"),
    (np.zeros((16, 16, 3, 1, 2), np.uint8), "5 dimensions", "pass an RGB uint8 array"),
    (np.zeros((1, 16, 16, 3), np.uint8), "a batch of one", "pass frame\\[0\\]"),
    (np.zeros((3, 16, 16), np.uint8), "looks channels-first", "transpose\\(1, 2, 0\\)"),
    (np.zeros((16, 16, 2), np.uint8), "2 channels", "RGBA"),
    (np.zeros((16, 16, 3), np.complex64), "dtype complex64, not a number type", "pass an RGB uint8 array"),
    ("a string", "not a number type", "pass an RGB uint8 array"),
    ([[1, 2], [3]], "type list is not an array", "pass an RGB uint8 array"),
])
def test_unusable_frames_are_rejected_saying_what_and_what_to_do(frame, wrong, todo) -> None:
    with pytest.raises(ValueError, match=wrong) as info:
        as_rgb_uint8(frame)
    assert __import__("re").search(todo, str(info.value)), str(info.value)


def test_resize_to_shrinks_and_enlarges() -> None:
    assert resize_to(RGB, (8, 10)).shape == (8, 10, 3) and resize_to(RGB, (32, 40)).shape == (32, 40, 3)
    assert resize_to(RGB, RGB.shape[:2]) is RGB


# -- sources: OpenCV's BGR(A)/gray become RGB at the edge ---------------------------------------------


class FixedCapture:
    """A capture that returns the given images once each, then ends."""

    def __init__(self, images: list[np.ndarray]) -> None:
        self.images, self.released = list(images), False

    def isOpened(self) -> bool:  # noqa: N802
        return True

    def read(self):
        time.sleep(0.001)
        return (True, self.images.pop(0)) if self.images and not self.released else (False, None)

    def release(self) -> None:
        self.released = True


def test_sources_convert_bgra_and_grayscale_captures_to_rgb() -> None:
    bgr = RGB[..., ::-1].copy()
    bgra = np.dstack([bgr, np.full(RGB.shape[:2], 9, np.uint8)])
    gray = RGB[..., 1].copy()
    odd = np.zeros((16, 16, 2), np.uint8)  # OpenCV cannot convert it: handed on unchanged, the detector rejects it
    with VideoFileSource("x.avi", capture_factory=lambda t: FixedCapture([bgr, bgra, gray, gray[..., None], odd])) as s:
        got = [f.image for f in s]
    np.testing.assert_array_equal(got[0], RGB)
    np.testing.assert_array_equal(got[1], RGB)
    np.testing.assert_array_equal(got[2], np.repeat(gray[..., None], 3, axis=2))
    np.testing.assert_array_equal(got[3], np.repeat(gray[..., None], 3, axis=2))
    assert got[4].shape == (16, 16, 2)
    with pytest.raises(ValueError, match="2 channels"):
        as_rgb_uint8(got[4])
    with LiveSource(0, capture_factory=lambda t: FixedCapture([bgra] * 1000)) as live:
        frame = live.read(timeout=5.0)
    assert frame is not None
    np.testing.assert_array_equal(frame.image, RGB)
    assert to_rgb(np.zeros((2, 2, 2, 2), np.uint8)).shape == (2, 2, 2, 2)  # never raises


# -- the streaming detector --------------------------------------------------------------------------


BlockMeans = standin.BlockMeans  # stand-in extractor: 4x4 grid of block means of the frame at 32x32


def detector() -> StreamDetector:
    cfg = StreamConfig(window=12, channels=ChannelConfig(seeds=2, min_span=2), decisions=DecisionConfig(warmup=3))
    return StreamDetector(cfg, extractor=BlockMeans())


def scene(i: int, shape=(48, 64)) -> np.ndarray:
    h, w = shape
    y, x = np.mgrid[0:h, 0:w]
    noise = np.random.default_rng(i).normal(0, 2, size=(h, w, 3))
    return np.clip(np.stack([y * 2.0, x * 2.0, (x + y) * 1.0], -1) + 60 + noise, 0, 255).astype(np.uint8)


def test_frames_of_another_size_are_resized_to_the_first_with_one_warning() -> None:
    det = detector()
    for i in range(8):
        det.process(scene(i))
    assert det.frame_size == (48, 64) and det.ready
    small = scene(100)
    big = cv2.resize(small, (128, 96), interpolation=cv2.INTER_NEAREST)  # every pixel doubled
    with pytest.warns(FrameSizeWarning, match="96x128 differs from the stream's first frame \\(48x64\\)") as record:
        r_big = det.score_one(big)
        r_odd = det.process(scene(101, (30, 200)))
        det.learn_one(scene(102, (100, 90)))
    assert len([w for w in record if issubclass(w.category, FrameSizeWarning)]) == 1  # once per detector
    assert r_big.heatmap.shape == (48, 64) and r_odd.heatmap.shape == (48, 64)
    r_small = det.score_one(small)
    assert r_big.score == r_small.score  # the doubled frame area-resized back is the same frame
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        detector().process(scene(0, (30, 200)))  # a new detector: its first frame sets its size, no warning


def test_bad_frames_and_timestamps_change_nothing_and_say_what_to_do() -> None:
    det = detector()
    det.process(scene(0))
    for bad in (None, np.full((48, 64, 3), np.nan), np.zeros((1, 1, 3), np.uint8)):
        with pytest.raises(ValueError):
            det.process(bad)
    for stamp in (float("nan"), float("inf"), "noon", [1.0]):
        with pytest.raises(ValueError, match="timestamp must be a finite number of seconds.*or None for now"):
            det.process(scene(1), timestamp=stamp)
    assert det.frames_seen == 1 and det.process(scene(2), timestamp=12.5).timestamp == 12.5


# -- batch InReaCh and the baselines ------------------------------------------------------------------


class BatchBlockMeans(BlockMeans):
    class config:  # noqa: N801 - mimics PatchFeatureExtractor.config
        batch_size = 4
        center_crop = 1.0

    def __call__(self, frames):
        assert all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in frames)
        return super().__call__(frames)


@pytest.mark.parametrize("make", [
    lambda: InReaCh(InReachConfig(channels=ChannelConfig(seeds=2, min_span=2)), extractor=BatchBlockMeans()),
    lambda: ImageAnomalyDetector(make_patch_model("patchcore", coreset_fraction=0.5), BatchBlockMeans()),
], ids=["inreach", "patchcore"])
def test_batch_fit_and_predict_validate_every_image(make) -> None:
    train = [scene(i) for i in range(6)]
    with pytest.raises(ValueError, match=r"fit images\[2\]: frame is None"):
        make().fit(train[:2] + [None] + train[3:])
    with pytest.raises(ValueError, match=r"fit images\[1\]: frame contains NaN"):
        make().fit([train[0], np.full((48, 64, 3), np.nan)] + train[2:])
    with pytest.raises(ValueError, match="one \\(height, width, 3\\) image, not a batch: pass \\[image\\]"):
        make().fit(train[0])
    model = make().fit([t[..., 0] if i % 2 else t / 255.0 for i, t in enumerate(train)])  # gray and float: converted
    with pytest.raises(ValueError, match=r"predict images\[0\]: frame size 4x4"):
        model.predict([np.zeros((4, 4, 3), np.uint8)])
    with pytest.raises(ValueError, match="predict needs at least one image"):
        model.predict([])
    with pytest.raises(ValueError, match="must be a list of images"):
        model.predict(None)
    pred = model.predict([scene(50), np.dstack([scene(51), np.zeros((48, 64), np.uint8)])])  # RGBA is fine
    assert pred.scores.shape == (2,) and np.isfinite(pred.scores).all()


def test_as_rgb_images_takes_lists_tuples_and_stacks() -> None:
    assert len(as_rgb_images((RGB, RGB))) == 2 and len(as_rgb_images(np.stack([RGB] * 3))) == 3
    assert [im.shape for im in as_rgb_images(np.zeros((2, 16, 16), np.uint8))] == [(16, 16, 3)] * 2
    with pytest.raises(ValueError, match="must be a list of images"):
        as_rgb_images(5)


# -- the live loop keeps going through unusable frames ---------------------------------------------


class ListSource(Source):
    """A source yielding the given images as frames, then ending."""

    def __init__(self, images: list[object]) -> None:
        super().__init__("list")
        self.images = list(images)
        self.i = 0

    def read(self, timeout: float | None = None) -> Frame | None:
        if self.i >= len(self.images):
            self._ended = True
            return None
        self.i += 1
        self._count("frames")
        return Frame(self.images[self.i - 1], float(self.i), self.i - 1, self.name)  # type: ignore[arg-type]


def test_live_loop_skips_and_counts_exactly_the_unusable_frames(tmp_path: Path) -> None:
    good = [scene(i) for i in range(12)]
    unusable = {3: None, 5: np.full((48, 64, 3), np.nan, np.float32), 7: np.zeros((1, 1, 3), np.uint8),
                9: np.zeros((2, 48, 64, 3, 1), np.uint8)}
    usable_odd = {4: scene(60, (96, 128)), 8: good[8][..., 0], 10: good[10] / 255.0}  # other size, gray, float
    images: list[object] = []
    for i in range(12):
        images.append(unusable.get(i, usable_odd.get(i, good[i])))
    det = detector()
    bad: list[tuple[int, str]] = []
    with VideoRecorder(tmp_path / "out.avi", fourcc="MJPG", fps=10) as rec, \
            pytest.warns(FrameSizeWarning, match="96x128"):
        summary = run_watch(ListSource(images), det, recorder=rec,
                            on_bad_frame=lambda f, e, n: bad.append((f.index, str(e))))
    assert summary.stopped == "end" and summary.bad_frames == 4 and summary.frames == 8
    assert [i for i, _ in bad] == [3, 5, 7, 9]
    assert "None" in bad[0][1] and "NaN" in bad[1][1] and "1x1" in bad[2][1] and "5 dimensions" in bad[3][1]
    assert det.frames_seen == 8 and summary.stages["record"].count == 8
    assert "bad frames skipped 4" in str(summary)
    assert len(list(VideoFileSource(tmp_path / "out.avi"))) == 8


def test_the_bad_input_table_in_docs_is_what_the_script_prints_now() -> None:
    from streamad.bench.scripts import bad_inputs

    repo = Path(__file__).resolve().parents[1]
    table = bad_inputs.markdown()
    assert "| None | rejected: frame is None: pass an RGB uint8 array" in table
    assert "| another size (96, 128, 3) mid-stream | converted; heatmap 48x64; warning (once)" in table
    assert "| `InReaCh.fit([gray, float, RGBA])` | converted and fitted |" in table
    assert table in (repo / "docs" / "field.md").read_text(encoding="utf-8"), \
        "docs/field.md is out of date: paste the output of `python -m streamad.bench.scripts.bad_inputs`"
