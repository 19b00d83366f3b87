"""Measurement scripts: the commands behind figures in README.md and docs/, each run as
``python -m streamad.bench.scripts.NAME ...`` (its docstring says how, and which figure it makes).

- ``quality_levers``, ``quality_table``, ``self_match``, ``channel_ablation``: batch InReaCh's levers and
  what the corruption protocol costs (docs/quality.md);
- ``alarm_calibration_probe``, ``trust_probe``: which rule could calibrate the alarm threshold
  (docs/alarms.md);
- ``bench_watch``: ``streamad watch`` on a video with and without publishing (docs/live_io.md);
- ``bench_state``: size and time of a saved state (docs/persistence.md);
- ``bad_inputs``: the bad-input table of docs/field.md;
- ``serve_screenshot``: the picture of the ``streamad serve`` page (docs/serve_page.png).

They are programs, the outermost layer with ``streamad/__main__.py``: they may use the command line's
option table (``streamad.cli``), and nothing imports them. The examples for users are in ``examples/``.
"""
