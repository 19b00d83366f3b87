"""I/O edges of streamad, imported as ``streamad.adapters``: they do no math, the engine does no I/O.

- ``sources`` (a package): frame sources on OpenCV (camera, URL, video file, image folder) and the
  built-in demo stream, behind ``open_source(spec)``; ``demo`` re-exports the demo stream;
- ``live``: the live loop ``run_watch`` (source -> detector -> publisher, recorder, window) and its
  state saver; ``session``: a ``streamad watch`` run put together around it (outputs, resume, events);
- ``publisher`` / ``subscriber``: results over ZeroMQ; ``security``: CURVE keys;
- ``display``: overlay, window and recorders; ``drift_plot``: the drift benchmark's figure.
"""
