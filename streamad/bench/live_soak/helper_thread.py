"""The one background thread each of the soak's helpers (subscriber, process sampler, web client) owns.

>>> import threading
>>> class Ticker(HelperThread):
...     def __init__(self) -> None:
...         self.ticks = 0
...         self._init_thread("streamad-soak-doctest")
...     def _run(self) -> None:
...         while not self._stop.is_set():
...             self.ticks += 1
...             self._stop.wait(0.01)
>>> t = Ticker().start(); t.running
True
>>> t.stop(); t.stop(); t.running      # safe to call twice; the thread is gone
False
"""

from __future__ import annotations

import threading


class HelperThread:
    """Subclasses call ``_init_thread(name)`` in ``__init__`` and write ``_run``, which returns soon after
    ``_stop`` is set. :meth:`start` starts the thread (returns ``self``), :meth:`stop` sets ``_stop`` and
    joins it (safe to call twice), :attr:`running` says whether it is alive."""

    _stop: threading.Event
    _thread: threading.Thread

    def _init_thread(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:  # pragma: no cover - every subclass writes its own
        raise NotImplementedError

    def start(self):  # noqa: ANN201 - returns the subclass
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()
