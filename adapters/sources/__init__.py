"""Frame sources on OpenCV: camera, video file, RTSP/HTTP URL, image folder, and the built-in demo.

Every source yields :class:`Frame` objects (RGB ``uint8`` images) and is used the same way::

    with open_source("frames/") as source:       # "0", "clip.mp4", "rtsp://...", "demo"
        for frame in source:
            ...

or, when the caller must stay responsive (a live loop that also watches for Ctrl-C)::

    frame = source.read(timeout=0.25)   # None: nothing yet (live) or the end (source.ended)

Files and folders end cleanly: iteration stops. Live sources (camera, URL) grab on a background
thread and keep only the newest frame (older unread frames are dropped and counted, so a slow
consumer never falls behind), reconnect with capped exponential back-off when the device or stream
fails, and report each failure to ``on_event`` (or the ``streamad.adapters.sources`` logger).

Timestamps: live sources and folders give the wall-clock time (``time.time()``) when the frame was
grabbed or read; video files give the nominal media time ``index / fps``; the demo gives
``index / fps`` of its configuration.

One module per concern (``files``, ``camera``, ``demo`` and ``memory`` import only ``base``; ``spec`` imports
them all):

- ``base``: :class:`Frame`, :class:`Source`, :class:`SourceStats`, :class:`SourceEvent`, the OpenCV
  capture, ``to_rgb`` and ``redact_url``;
- ``files``: :class:`FolderSource` and :class:`VideoFileSource`, which end;
- ``camera``: :class:`LiveSource` (camera index, device node or URL) and its :class:`Backoff`;
- ``demo``: the generated scene (:class:`DemoStream`) and its :class:`DemoSource`;
- ``memory``: :class:`ArraySource`, images held in memory (benchmarks, tests, a caller's own images);
- ``spec``: :func:`open_source`, which turns a SOURCE string into one of the above.
"""

from __future__ import annotations

from streamad.adapters.sources.base import (
    IMAGE_EXTENSIONS,
    SPEC_HINT,
    URL_SCHEMES,
    Capture,
    CaptureFactory,
    EventCallback,
    Frame,
    Source,
    SourceError,
    SourceEvent,
    SourceStats,
    default_capture,
    redact_url,
    to_rgb,
)
from streamad.adapters.sources.camera import Backoff, LiveSource
from streamad.adapters.sources.demo import DemoConfig, DemoSample, DemoSource, DemoStream
from streamad.adapters.sources.files import FolderSource, VideoFileSource
from streamad.adapters.sources.memory import ArraySource
from streamad.adapters.sources.spec import open_source

__all__ = [
    "IMAGE_EXTENSIONS", "SPEC_HINT", "URL_SCHEMES", "ArraySource", "Backoff", "Capture", "CaptureFactory", "DemoConfig",
    "DemoSample", "DemoSource", "DemoStream", "EventCallback", "FolderSource", "Frame", "LiveSource", "Source",
    "SourceError", "SourceEvent", "SourceStats", "VideoFileSource", "default_capture", "open_source",
    "redact_url", "to_rgb",
]
