"""streamad: streaming, unsupervised image anomaly detection (incremental InReaCh)."""

from streamad.config import ChannelConfig, FeatureConfig, HeatmapConfig, InReachConfig, PositionalConfig
from streamad.stream.detector import StreamDetector
from streamad.results import FrameResult, Prediction

__all__ = [
    "ChannelConfig",
    "FeatureConfig",
    "FrameResult",
    "HeatmapConfig",
    "InReachConfig",
    "PositionalConfig",
    "Prediction",
    "StreamDetector",
]
from streamad.version import __version__  # noqa: E402
