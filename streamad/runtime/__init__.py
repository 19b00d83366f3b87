"""The runtime: what joins the sources and outputs (:mod:`streamad.adapters`) to the engine and runs it.

- ``detector``: :class:`Detector`, the one contract of a live detector (``StreamDetector`` and serve's
  worker-mode ``RemoteDetector`` have it) that the loop, the state saver, serve and the CLI use;
- ``live``: the live loop ``run_watch`` (source -> detector -> publisher, recorder, window) and its
  state saver;
- ``session``: a ``streamad watch`` run put together around the loop (outputs, resume, events);
- ``serve`` (a package): ``streamad serve``, many cameras in one process (shared backbone, worker
  processes, the web page), put together by :class:`~streamad.runtime.serve.session.ServeSession`.

Imports base, vision, stream, display and adapters; only the CLI and the benchmarks import it.
"""
