"""Memory follows what the window holds; a window that can never fit is refused up front, with the amount."""

from __future__ import annotations

import numpy as np
import pytest

from streamad.config import ChannelConfig, StreamConfig
from streamad.stream.detector import StreamDetector


class Grid:
    grid, image_size, dim = (4, 4), (32, 32), 6


def test_a_huge_window_on_a_short_stream_costs_only_the_stream():
    det = StreamDetector(StreamConfig(window=20_000, channels=ChannelConfig(seeds=2, min_span=2)), extractor=Grid())
    rng = np.random.default_rng(0)
    base = rng.normal(size=(16, 6))
    for i in range(30):
        det.process_descriptors((base + 0.05 * rng.normal(size=(16, 6))).astype(np.float32))
    assert det.ready and det.channels.capacity == 64  # slots for what arrived, not for 20,000 frames
    assert det.channels._x.nbytes < 64 * 16 * 6 * 8


def test_a_window_that_can_never_fit_is_refused_with_the_amount(monkeypatch):
    import streamad.stream.detector as detector_module

    monkeypatch.setattr(detector_module, "_physical_memory", lambda: 8 * 2 ** 30)

    class Big:
        grid, image_size, dim = (28, 28), (224, 224), 256

    with pytest.raises(ValueError, match=r"StreamConfig\.window=100000 would need 166\.9 GiB when full .*"
                                         r"784 patches of 256-d .* 8\.0 GiB of memory: use a window of at most about "
                                         r"\d+ frames"):
        StreamDetector(StreamConfig(window=100_000), extractor=Big())
    StreamDetector(StreamConfig(window=1_000), extractor=Big())  # 1.7 GiB: fits
