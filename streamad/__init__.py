"""streamad: streaming, unsupervised image anomaly detection (incremental InReaCh)."""

from .config import ChannelConfig, FeatureConfig, HeatmapConfig, InReachConfig, PositionalConfig
from .detector import StreamDetector
from .results import FrameResult, Prediction

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
__version__ = "0.1.0"
