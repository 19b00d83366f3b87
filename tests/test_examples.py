"""The examples for users (``examples/``) and the measurement scripts (``streamad/bench/scripts/``) run:
every one parses and answers ``--help``; the shipped serve configuration (``examples/serve.toml``) is read
by the real TOML reader and served for a few frames; the alarm subscriber reacts to a real event."""

from __future__ import annotations

import ast
import pkgutil
import runpy
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import streamad.bench.scripts

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))
MEASUREMENTS = sorted(m.name for m in pkgutil.iter_modules(streamad.bench.scripts.__path__,
                                                            "streamad.bench.scripts."))


def test_examples_are_for_users_and_measurements_sit_with_the_benchmarks() -> None:
    assert {p.name for p in SCRIPTS} == {"folder_to_video.py", "live_camera.py", "publish_subscribe.py",
                                         "serve_cameras.py", "subscribe_alarms.py"}
    assert (EXAMPLES / "serve.toml").is_file()
    assert len(MEASUREMENTS) == 14 and "streamad.bench.scripts.quality_levers" in MEASUREMENTS


def _help(run, monkeypatch, capsys, argv0: str) -> str:
    monkeypatch.setattr(sys, "argv", [argv0, "--help"])
    with pytest.raises(SystemExit) as stop:
        run()
    assert stop.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_every_example_parses_and_answers_help(path: Path, monkeypatch, capsys) -> None:
    ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = _help(lambda: runpy.run_path(str(path), run_name="__main__"), monkeypatch, capsys, str(path))
    assert out.startswith("usage:") and "python examples/" + path.name in out  # the docstring shows how to run it


@pytest.mark.parametrize("name", MEASUREMENTS)
def test_every_measurement_script_answers_help(name: str, monkeypatch, capsys) -> None:
    monkeypatch.delitem(sys.modules, name, raising=False)  # run it afresh as __main__ (runpy warns otherwise)
    out = _help(lambda: runpy.run_module(name, run_name="__main__", alter_sys=True), monkeypatch, capsys, name)
    assert out.startswith("usage:")


def test_the_shipped_serve_file_loads_and_serves_its_cameras(monkeypatch) -> None:
    from streamad.runtime.serve import session as serve_session
    from streamad.runtime.serve.config import load_config
    from streamad.testing.standin import BlockMeans

    config = load_config(EXAMPLES / "serve.toml")
    assert [c.name for c in config.cameras] == ["line1", "line2", "line3"]
    assert [c.source for c in config.cameras] == ["demo", "demo:1", "demo:2"]
    assert config.publish == "tcp://127.0.0.1:5556" and config.http == "127.0.0.1:8080"
    monkeypatch.setattr(serve_session, "make_extractor", lambda features: BlockMeans())  # no backbone download
    config = serve_session.with_overrides(config, publish="tcp://127.0.0.1:*", http="127.0.0.1:0")
    lines: list[str] = []
    with serve_session.ServeSession(config, on_event=lines.append, max_frames=12) as session:
        summary = session.run()
    assert [(c.name, c.summary.frames) for c in summary.cameras] == [("line1", 12), ("line2", 12), ("line3", 12)]
    assert any(line.startswith("3 camera(s): line1 (demo)") for line in lines)


def test_the_alarm_subscriber_reacts_to_an_event(tmp_path: Path, capsys) -> None:
    from streamad.adapters.publisher import Publisher
    from streamad.results import AlarmEvent

    module = runpy.run_path(str(EXAMPLES / "subscribe_alarms.py"))  # not __main__: nothing runs yet
    event = AlarmEvent(3, 40, 44, 5, 4.0, 4.4, 42, 7.5, 0.001, 5.0, np.eye(8, dtype=np.float32))
    with Publisher("tcp://127.0.0.1:*") as pub:
        done: list[int] = []
        listener = threading.Thread(target=lambda: done.append(module["main"](
            ["--address", pub.address, "--camera", "line1", "--count", "1", "--timeout", "10",
             "--heatmaps", str(tmp_path)])))
        listener.start()
        while listener.is_alive():   # ZeroMQ keeps nothing for a subscriber not connected yet: send until heard
            pub.publish_event(event, "demo", topic="line1", camera="line1")
            listener.join(0.05)
    assert done == [0]
    assert "line1: alarm 3, frames 40-44 (5 anomalous), peak frame 42 score 7.500" in capsys.readouterr().out
    assert (tmp_path / "line1-3.png").is_file()
