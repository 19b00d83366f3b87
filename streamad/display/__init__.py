"""What a person sees: the heatmap overlay, a window, video and snapshot recorders (``overlay``), and the
drift benchmark's figure (``drift_plot``). Imports base and vision only; the runtime and the ZeroMQ
publisher (for its optional JPEG overlay) draw with it.

    >>> from streamad.display import make_recorder, render_overlay   # the names users need
"""

from __future__ import annotations

from streamad.display.overlay import (DisplayUnavailable, SnapshotRecorder, VideoRecorder, Window, colorize,
                                      make_recorder, render_overlay, save_png)

__all__ = ["DisplayUnavailable", "SnapshotRecorder", "VideoRecorder", "Window", "colorize", "make_recorder",
           "render_overlay", "save_png"]
