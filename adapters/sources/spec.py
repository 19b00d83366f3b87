"""``open_source(spec)``: the source a SOURCE string names (camera, URL, folder, video file or demo)."""

from __future__ import annotations

import os
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


def _is_char_device(path: str) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def open_source(spec: str, *, capture_factory: CaptureFactory | None = None, on_event: EventCallback | None = None,
                backoff: Backoff | None = None, max_retries: int | None = None) -> Source:
    """The source ``spec`` names.

    - ``"demo"``: the built-in generated stream (see ``streamad.adapters.sources.demo``); ``"demo:N"``:
      the same scene drawn with seed N (another camera's view: other jitter, noise and defects);
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
    if text.lower() == "demo":
        return DemoSource()
    if text.lower().startswith("demo:") and text[5:].isdigit():
        return DemoSource(DemoConfig(seed=int(text[5:])))
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
