"""The live loop's reader (``streamad.runtime.reader``) and the loop that scores while it describes the next
frame: the same results as one thread, in the source's order; one frame in flight; bad frames counted where
they come; stops, ends, failures and Ctrl-C leave no thread behind."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from streamad.adapters.sources import ArraySource, Frame, Source
from streamad.config import ChannelConfig, StreamConfig
from streamad.runtime.live import StopFlag, run_watch
from streamad.runtime.reader import FrameReader, ReadEnd, ReadItem
from streamad.stream.detector import StreamDetector
from streamad.testing.standin import BlockMeans, StandInDetector


def images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(60, 200, (48, 64, 3)).astype(np.uint8)
    out = []
    for i in range(n):
        im = np.clip(base.astype(int) + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8)
        if i % 9 == 8:
            im[10:20, 10:24] = 255  # a defect now and then
        out.append(im)
    return out


def detector() -> StreamDetector:
    cfg = StreamConfig(window=12, channels=ChannelConfig(seeds=2, min_span=3))
    return StreamDetector(cfg, extractor=BlockMeans(grid=(6, 8), image_size=(48, 64)))


def reader_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "streamad-reader" and t.is_alive()]


def drain(reader: FrameReader) -> list[ReadItem | ReadEnd]:
    items = []
    while True:
        item = reader.next(timeout=5.0)
        assert item is not None, "the reader stalled"
        items.append(item)
        if isinstance(item, ReadEnd):
            return items


# -- the reader on its own -------------------------------------------------------------------------------


def test_the_reader_hands_every_frame_in_order_with_its_description_then_the_end() -> None:
    frames = images(7)
    with FrameReader(ArraySource(frames), describe=lambda im, t: (int(im[0, 0, 0]), t)) as reader:
        items = drain(reader)
    assert [i.frame.index for i in items[:-1]] == list(range(7))
    assert [i.described[0] for i in items[:-1]] == [int(f[0, 0, 0]) for f in frames]
    assert all(i.described[1] == i.frame.timestamp for i in items[:-1])
    assert items[-1] == ReadEnd("end") and reader_threads() == []


def test_the_reader_reads_a_frame_only_once_the_loop_took_the_one_before() -> None:
    reads: list[int] = []
    source = ArraySource(images(6), on_read=reads.append)
    with FrameReader(source, describe=lambda im, t: None) as reader:
        first = reader.next(timeout=5.0)
        time.sleep(0.3)  # the loop "scores" frame 0: the reader may read frame 1, not frame 2
        assert isinstance(first, ReadItem) and reads == [0, 1]
        second = reader.next(timeout=5.0)
        time.sleep(0.3)
        assert second.frame.index == 1 and reads == [0, 1, 2]
        rest = drain(reader)
    assert [i.frame.index for i in rest[:-1]] == [2, 3, 4, 5] and reads == list(range(6))


@pytest.mark.parametrize("loop_s, describe_s", [(0.15, 0.0), (0.0, 0.05)], ids=["slow loop", "slow backbone"])
def test_the_reader_reads_just_in_time_for_a_slower_loop_and_at_once_for_a_faster_one(loop_s, describe_s) -> None:
    read_at: dict[int, float] = {}
    taken_at: dict[int, float] = {}

    def describe(im, t):
        time.sleep(describe_s)
        return None

    source = ArraySource(images(14), on_read=lambda i: read_at.__setitem__(i, time.perf_counter()))
    with FrameReader(source, describe=describe) as reader:
        while isinstance(item := reader.next(timeout=5.0), ReadItem):
            taken_at[item.frame.index] = time.perf_counter()
            time.sleep(loop_s)  # the loop's work on the frame
    late = [read_at[i + 1] - taken_at[i] for i in range(6, 13)]  # after the medians formed
    if loop_s:  # the loop takes 0.15 s a frame, the reader next to nothing: it reads about 0.13 s later
        assert min(late) > 0.09 and max(late) < 0.25, late
        assert max(taken_at[i + 1] - taken_at[i] for i in range(6, 13)) < 0.25  # and the loop never waits long
    else:
        assert max(late) < 0.08, late  # a thread's wake-up, not a wait


def test_bad_frames_and_failures_of_describe_come_in_their_place() -> None:
    def describe(im, t):
        if im[0, 0, 0] == 1:
            raise ValueError("blank")
        if im[0, 0, 0] == 2:
            raise RuntimeError("backbone broke")
        return "ok"

    frames = [np.full((4, 4, 3), v, np.uint8) for v in (9, 1, 9, 2, 9)]
    with FrameReader(ArraySource(frames), describe=describe) as reader:
        items = drain(reader)
    kinds = [None if i.error is None else type(i.error).__name__ for i in items[:-1]]
    assert kinds == [None, "ValueError", None, "RuntimeError", None]
    assert [i.described for i in items[:-1]] == ["ok", None, "ok", None, "ok"]


def test_a_failing_source_ends_the_reader_with_its_error() -> None:
    class Broken(Source):
        def __init__(self) -> None:
            super().__init__("broken")
            self.n = 0

        def read(self, timeout=None):
            self.n += 1
            if self.n == 3:
                raise OSError("device gone")
            return Frame(np.zeros((4, 4, 3), np.uint8), 0.0, self.n - 1, self.name)

    with FrameReader(Broken(), describe=lambda im, t: 1) as reader:
        items = drain(reader)
    assert len(items) == 3 and items[-1].reason == "failed" and isinstance(items[-1].error, OSError)
    assert reader_threads() == []


def test_stop_and_max_frames_end_the_reading_and_what_was_read_still_comes() -> None:
    with FrameReader(ArraySource(images(20)), describe=lambda im, t: 1, max_frames=5) as reader:
        items = drain(reader)
    assert len(items) == 6 and items[-1] == ReadEnd("max_frames")

    flag = StopFlag()
    reads: list[int] = []
    with FrameReader(ArraySource(images(20), on_read=reads.append), describe=lambda im, t: 1, stop=flag) as reader:
        first = reader.next(timeout=5.0)
        time.sleep(0.2)  # frame 1 is read and described meanwhile
        flag.set("test stop")
        items = [first, *drain(reader)]
    assert [i.frame.index for i in items[:-1]] == [0, 1] and items[-1] == ReadEnd("test stop") and reads == [0, 1]

    with FrameReader(ArraySource(images(20)), describe=lambda im, t: 1) as reader:
        reader.next(timeout=5.0)
        reader.finish_reading("window closed")
        items = drain(reader)
    assert [i.frame.index for i in items[:-1]] in ([], [1]) and items[-1] == ReadEnd("window closed")


def test_close_ends_a_reader_waiting_on_a_silent_live_source_or_on_the_loop() -> None:
    class Silent(Source):
        live = True

        def read(self, timeout=None):
            time.sleep(timeout or 0)
            return None

    reader = FrameReader(Silent("silent"), describe=lambda im, t: 1, poll=0.05).start()
    assert reader.next(timeout=0.2) is None and reader.running
    t0 = time.monotonic()
    assert reader.close() and time.monotonic() - t0 < 1.0 and not reader.running

    reader = FrameReader(ArraySource(images(5)), describe=lambda im, t: 1, poll=0.05).start()
    reader.next(timeout=5.0)
    time.sleep(0.2)  # the reader holds frame 1 and waits for the loop to take frame 0's slot
    t0 = time.monotonic()
    assert reader.close() and time.monotonic() - t0 < 1.0 and reader_threads() == []
    reader.close()  # twice: nothing happens


def test_bad_settings_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="max_frames"):
        FrameReader(ArraySource([]), describe=lambda im, t: 1, max_frames=-1)
    with pytest.raises(ValueError, match="poll"):
        FrameReader(ArraySource([]), describe=lambda im, t: 1, poll=0)


# -- the loop with the reader ---------------------------------------------------------------------------


def fields(r) -> tuple:
    return (r.index, r.ready, r.score, r.threshold, r.anomalous, r.admitted,
            None if r.heatmap is None else r.heatmap.tobytes())


def test_the_two_thread_loop_gives_exactly_the_results_of_one_thread() -> None:
    frames = images(60)
    frames[30] = np.zeros((1, 1, 3), np.uint8)  # a bad frame in the middle
    runs = {}
    for pipeline in (False, True):
        got: list[tuple] = []
        det = detector()
        summary = run_watch(ArraySource(frames), det, pipeline=pipeline, on_result=lambda f, r: got.append(
            (f.index, *fields(r))))
        runs[pipeline] = (got, summary.frames, summary.bad_frames, summary.stopped)
        assert reader_threads() == []
        if pipeline:
            assert summary.stages["features"].count == 59 and summary.stages["read"].count == 60
        else:
            assert "features" not in summary.stages
    assert runs[True] == runs[False]
    got, frames_done, bad, stopped = runs[True]
    assert (frames_done, bad, stopped) == (59, 1, "end") and [g[0] for g in got] == [i for i in range(60) if i != 30]
    assert sum(g[2] for g in got) > 20  # it really scored


def test_the_loop_describes_ahead_only_for_a_describing_detector() -> None:
    class OnlyProcess(StandInDetector):
        def process(self, frame, timestamp=None):
            from streamad.results import FrameResult
            return FrameResult(0, False, None, None, False, None, None, False, False, 0.0)

    s = run_watch(ArraySource(images(3)), OnlyProcess())
    assert s.frames == 3 and "features" not in s.stages
    with pytest.raises(ValueError, match="pipeline=True needs a detector with describe"):
        run_watch(ArraySource(images(3)), OnlyProcess(), pipeline=True)


def test_a_stop_finishes_the_frame_in_flight_and_a_max_frames_run_reads_no_more() -> None:
    flag = StopFlag()
    seen: list[int] = []

    def on_result(frame, result) -> None:
        seen.append(frame.index)
        if frame.index == 10:
            flag.set("test stop")

    source = ArraySource(images(40))
    s = run_watch(source, detector(), stop=flag, on_result=on_result)
    # frame 11 was read while 10 was scored: it is finished, and nothing after it is read
    assert s.stopped == "test stop" and seen == list(range(len(seen))) and len(seen) in (11, 12)
    assert source.stats.frames == len(seen)
    source = ArraySource(images(40))
    s = run_watch(source, detector(), max_frames=17)
    assert (s.frames, s.stopped, source.stats.frames) == (17, "max_frames", 17)


def test_ctrl_c_in_the_scoring_half_interrupts_and_leaves_no_reader() -> None:
    class Interrupted(StreamDetector):
        def process_described(self, described):
            if self.frames_seen == 5:
                raise KeyboardInterrupt
            return super().process_described(described)

    cfg = StreamConfig(window=12, channels=ChannelConfig(seeds=2, min_span=3))
    det = Interrupted(cfg, extractor=BlockMeans(grid=(6, 8), image_size=(48, 64)))
    s = run_watch(ArraySource(images(40)), det)
    assert (s.stopped, s.frames) == ("interrupted", 5) and reader_threads() == []


def test_an_error_in_the_backbone_escapes_the_loop_with_its_summary_first() -> None:
    class Failing(BlockMeans):
        calls = 0

        def __call__(self, frames):
            Failing.calls += 1
            if Failing.calls == 8:
                raise RuntimeError("CUDA error: device-side assert")
            return super().__call__(frames)

    cfg = StreamConfig(window=12, channels=ChannelConfig(seeds=2, min_span=3))
    det = StreamDetector(cfg, extractor=Failing(grid=(6, 8), image_size=(48, 64)))
    failures = []
    with pytest.raises(RuntimeError, match="device-side assert"):
        run_watch(ArraySource(images(40)), det, on_failure=failures.append)
    assert failures[0].frames == 7 and failures[0].stopped.startswith("failed: RuntimeError")
    assert reader_threads() == []


def test_a_closed_window_stops_the_reading_and_the_frame_in_flight_is_still_delivered() -> None:
    class ClosesAtFour:
        shown = 0

        def show(self, image) -> bool:
            ClosesAtFour.shown += 1
            return ClosesAtFour.shown < 4

    seen: list[int] = []
    source = ArraySource(images(40))
    s = run_watch(source, detector(), window=ClosesAtFour(), on_result=lambda f, r: seen.append(f.index))
    assert s.stopped == "window closed" and ClosesAtFour.shown == 4
    assert seen == list(range(len(seen))) and len(seen) in (4, 5) and source.stats.frames == len(seen)
