"""``streamad serve``: many cameras in one process, one backbone, one publisher, one web page.

One module per job:

- ``config``: the TOML file as frozen dataclasses (:class:`ServeConfig`, :class:`CameraConfig`), every
  unknown key and bad value refused with the file, key and line;
- ``batcher``: :class:`SharedBackbone`, the one thread that runs every camera's frames through the
  backbone in batches (:class:`BatchedExtractor` is a camera's handle on it);
- ``status``: :class:`CameraStatus`, a camera's counters and recent scores, read as immutable snapshots;
- ``fleet``: :class:`Fleet`, a live loop per camera (``streamad.runtime.live.run_watch``, the one
  ``streamad watch`` runs), the status messages, the stop on Ctrl-C / SIGTERM;
- ``workers``: :class:`WorkerPool` and :class:`RemoteDetector`, the cameras' detectors in worker
  processes behind the one backbone (``[serve] workers``);
- ``web``: the live page (standard library ``http.server``), its images and JSON status.
"""
