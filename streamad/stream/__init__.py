"""The streaming engine: :class:`~streamad.stream.detector.StreamDetector` (score every frame, learn
from admitted ones), its decisions (threshold, drift), presets and persistence (docs/DESIGN.md section 3).
"""
