"""The engine's thread budget in force: torch's and BLAS's threads (:mod:`streamad.vision.threads`) and the
threads that share a frame's mutual pairs with its seeds (:func:`streamad.core.association.set_workers`).
Applications (``watch``, ``serve``, ``bench``) set it once, process-wide, from a
:class:`~streamad.config.ThreadConfig`.

    >>> from streamad.config import ThreadConfig
    >>> apply_threads(ThreadConfig(torch=1, associate=1), background=True)["associate"]
    1
"""

from __future__ import annotations

from streamad.config import ThreadConfig
from streamad.core.association import set_workers, workers
from streamad.vision import threads as vision_threads

__all__ = ["apply_threads", "current_threads"]


def apply_threads(config: ThreadConfig, background: bool, cores: int | None = None) -> dict[str, int]:
    """Set torch's, BLAS's and the association's thread counts for this process (0s chosen by
    :func:`streamad.vision.threads.resolve_threads`); returns :func:`current_threads`."""
    want = vision_threads.resolve_threads(config, background, cores)
    vision_threads.set_threads(want)
    set_workers(want["associate"])
    return current_threads()


def current_threads() -> dict[str, int]:
    """The thread counts in force: ``torch``, ``blas`` (the largest pool) and ``associate``."""
    return {**vision_threads.current_threads(), "associate": workers()}
