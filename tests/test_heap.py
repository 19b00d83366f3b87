"""The C heap's free memory handed back (``streamad.runtime.heap``): the call really lowers the memory
of a process whose freed blocks sit below a live one, the trimmer thread trims and stops at once, and a
fleet runs one for its run and leaves none behind; with glibc's own trimming deferred (as a trimmer's
process has it) memory freed and used again is not faulted in again."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from streamad.adapters.sources import FolderSource
from streamad.runtime import heap
from streamad.runtime.heap import HeapTrimmer, heap_stats, release_free_memory
from streamad.runtime.serve.fleet import Camera, Fleet
from streamad.stream.detector import StreamDetector
from streamad.config import ChannelConfig, StreamConfig
from streamad.testing.frames import write_frames
from streamad.testing.standin import BlockMeans

glibc = pytest.mark.skipif(heap._glibc() is None, reason="the C library is not glibc: nothing to trim")


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@glibc
def test_release_hands_back_freed_blocks_that_sit_below_a_live_one() -> None:
    """200 MiB of 4 KiB blocks freed below one that stays: glibc keeps them resident (the top of its heap
    is live), the call gives them back."""
    blocks = [bytearray(4096) for _ in range(51_200)]
    for b in blocks:
        b[0] = 1                                    # touched: resident
    pin = bytearray(4096)                           # above them: the heap's top stays in use
    before = rss_mib()
    del blocks
    kept = rss_mib()
    assert release_free_memory()
    after = rss_mib()
    assert kept > before - 50, (before, kept)       # freed, yet still resident
    assert after < kept - 150, (kept, after)        # handed back
    stats = heap_stats()                           # the blocks stay free in glibc's books, no longer resident
    assert stats is None or (stats.free_mib > 150 and stats.used_mib < stats.arena_mib)
    del pin


# 64 blocks of 1 MiB written and freed, ten times, in a fresh process: the minor page faults counted
# (each a page the system handed the process again, zeroed).
REFAULT_SCRIPT = """
import resource, sys
import numpy as np
from streamad.runtime.heap import HeapTrimmer, defer_heap_trimming
how = sys.argv[1]
if how == "defer":
    print("deferred", defer_heap_trimming())
elif how == "trimmer":
    trimmer = HeapTrimmer(every=3600).start()
def work():
    blocks = [np.ones(1 << 17) for _ in range(64)]
    del blocks
work(); work()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    work()
print("faults", resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def refaults(how: str, **env: str) -> tuple[int, str]:
    out = subprocess.run([sys.executable, "-c", REFAULT_SCRIPT, how], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env}, check=True).stdout
    return int(out.split("faults")[-1]), out


@glibc
def test_deferred_trimming_keeps_freed_memory_for_the_next_frame() -> None:
    """glibc by itself hands 1 MiB blocks back at each free (they come from mmap) and faults them in
    again at the next use (640 MiB written: about 160,000 faults); deferred, and in a process with a
    trimmer, the same work takes none after the first rounds; a user's own malloc tunables stand."""
    plain, _ = refaults("plain")
    deferred, out = refaults("defer")
    with_trimmer, _ = refaults("trimmer")
    assert "deferred True" in out
    assert plain > 100_000, plain
    assert deferred < 1_000 and with_trimmer < 1_000, (deferred, with_trimmer)
    kept, out = refaults("defer", GLIBC_TUNABLES="glibc.malloc.check=0")
    assert "deferred False" in out and kept > 100_000, (kept, out)


def test_the_trimmer_trims_and_stops_at_once(monkeypatch) -> None:
    calls: list[float] = []
    monkeypatch.setattr(heap, "release_free_memory", lambda: calls.append(time.monotonic()) or True)
    trimmer = HeapTrimmer(every=0.02).start()
    assert trimmer.wait_for_trims(3, timeout=5.0) and len(calls) >= 3
    slow = HeapTrimmer(every=3600.0).start()        # asleep for an hour: a stop wakes it
    t0 = time.monotonic()
    trimmer.stop()
    slow.stop()
    assert time.monotonic() - t0 < 1.0
    assert not trimmer.thread.is_alive() and not slow.thread.is_alive() and slow.trims == 0
    n = len(calls)
    time.sleep(0.1)
    assert len(calls) == n                          # nothing after the stop


@pytest.mark.parametrize("every", [0, -1.0, float("nan")])
def test_a_bad_period_names_the_field(every: float) -> None:
    with pytest.raises(ValueError, match="HeapTrimmer.every"):
        HeapTrimmer(every=every)


def test_a_fleet_trims_while_it_runs_and_leaves_no_trimmer_behind(tmp_path: Path, monkeypatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(heap, "release_free_memory", lambda: calls.append(threading.current_thread().name) or True)
    frames = write_frames(tmp_path / "frames", n=30)
    config = StreamConfig(window=8, channels=ChannelConfig(seeds=2, min_span=2))

    class Slow(FolderSource):
        def read(self, timeout=None):
            time.sleep(0.01)
            return super().read(timeout)

    cams = [Camera(n, Slow(frames), StreamDetector(config, extractor=BlockMeans())) for n in "ab"]
    summary = Fleet(cams, status_every=0, on_event=lambda line: None, heap_trim_every=0.02).run(signals=False)
    assert summary.frames == 60
    assert calls and set(calls) == {"streamad-heap"}
    assert not [t for t in threading.enumerate() if t.name == "streamad-heap"]
    calls.clear()
    Fleet([Camera("c", FolderSource(frames), StreamDetector(config, extractor=BlockMeans()))], status_every=0,
          on_event=lambda line: None, heap_trim_every=None).run(signals=False)
    assert calls == []
