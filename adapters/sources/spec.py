"""``open_source(spec)``: the source a SOURCE string names (camera, URL, folder, video file or demo)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from urllib.parse import urlsplit

from streamad.adapters.sources.base import (
    IMAGE_EXTENSIONS,
    SPEC_HINT,
    URL_SCHEMES,
    CaptureFactory,
    EventCallback,
    Source,
    SourceError,
    redact_url,
)
from streamad.adapters.sources.camera import Backoff, LiveSource
from streamad.adapters.sources.demo import DemoConfig, DemoSource
from streamad.adapters.sources.files import FolderSource, VideoFileSource

# "demo", "demo:N" (seed N), either with "@FPS" (paced: a camera delivering FPS frames per second)
DEMO_SPEC = re.compile(r"^demo(?::(\d+))?(?:@(\d+(?:\.\d+)?))?$", re.IGNORECASE)


def _is_char_device(path: str) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def open_source(spec: str, *, capture_factory: CaptureFactory | None = None, on_event: EventCallback | None = None,
                backoff: Backoff | None = None, max_retries: int | None = None) -> Source:
    """The source ``spec`` names.

    - ``"demo"``: the built-in generated stream (see ``streamad.adapters.sources.demo``); ``"demo:N"``:
      the same scene drawn with seed N (another camera's view: other jitter, noise and defects); either
      with ``"@FPS"`` (``"demo@5"``, ``"demo:2@0.5"``): paced in real time at FPS frames per second, as
      a camera delivers them (timestamps ``index / FPS``), instead of as fast as they are read;
    - digits (``"0"``): that camera index; a device node (``/dev/video0``): that camera;
    - ``scheme://...`` (rtsp, http, https, rtmp, udp, tcp, srt): a live network stream;
    - a folder: its images; any other existing file: a video.

    >>> with open_source("demo") as source:
    ...     frame = source.read()
    >>> frame.image.shape, frame.image.dtype, frame.source
    ((384, 384, 3), dtype('uint8'), 'demo')
    """
    text = str(spec).strip()
    if not text:
        raise SourceError(f"empty source. {SPEC_HINT}")
    demo = DEMO_SPEC.match(text)
    if demo is not None:
        seed, fps = int(demo.group(1) or 0), demo.group(2)
        if fps is None:
            return DemoSource(DemoConfig(seed=seed))
        if not 0 < float(fps) <= 1000:
            raise SourceError(f"demo frame rate in {text!r} must be in (0, 1000] frames per second")
        return DemoSource(DemoConfig(seed=seed, fps=float(fps)), realtime=True)
    if text.isdigit():
        return LiveSource(int(text), capture_factory=capture_factory, on_event=on_event, backoff=backoff,
                          max_retries=max_retries)
    scheme = urlsplit(text).scheme.lower()
    if "://" in text:
        if scheme not in URL_SCHEMES:
            raise SourceError(f"unsupported URL scheme {scheme!r} in {redact_url(text)!r} "
                              f"(supported: {', '.join(URL_SCHEMES)})")
        return LiveSource(text, capture_factory=capture_factory, on_event=on_event, backoff=backoff,
                          max_retries=max_retries)
    if os.path.isdir(text):
        return FolderSource(text, on_event=on_event)
    if _is_char_device(text):
        return LiveSource(text, name=f"camera:{text}", capture_factory=capture_factory, on_event=on_event,
                          backoff=backoff, max_retries=max_retries)
    if os.path.isfile(text):
        if Path(text).suffix.lower() in IMAGE_EXTENSIONS:
            raise SourceError(f"{text!r} is a single image; a stream needs several: give the folder that holds "
                              "the images instead")
        return VideoFileSource(text, capture_factory=capture_factory, on_event=on_event)
    raise SourceError(f"no such file or folder: {text!r}. {SPEC_HINT}")
