"""A short, seeded fuzz of every input edge (``streamad.bench.fuzz``: the ZeroMQ decoder, the serve TOML
reader, the state loader, the web page, ``StreamDetector.process``): no input may end in a traceback, a
hang or a changed state. Each fuzz is shown able to fail on a deliberately broken edge, and each bug
the fuzz found has its regression test below. The long run: ``python -m streamad.bench.fuzz``."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

from streamad.runtime.serve.config import ConfigError, load_config
from streamad.adapters.subscriber import SchemaError, decode_message
from streamad.bench import fuzz
from streamad.bench.fuzz import TARGETS, demo_frames, fuzz_target, small_detector, state_fingerprint
from streamad.errors import StateError

# Inputs per target in CI (a few seconds each on a 2-core machine); the same inputs every run (seed 0).
CI_INPUTS = {"decoder": 300, "toml": 200, "state": 120, "web": 200, "process": 250}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_finds_no_traceback_hang_or_changed_state(name: str, tmp_path: Path) -> None:
    tally = fuzz_target(TARGETS[name](), CI_INPUTS[name], seed=0, workdir=tmp_path)
    assert tally.failures == [], "\n\n".join(tally.failures)
    assert tally.tried >= 0.9 * CI_INPUTS[name], tally.line()
    refused = {"decoder": "SchemaError", "toml": "ConfigError", "state": "StateError", "process": "ValueError"}
    if name == "web":
        assert {"HTTP 200", "HTTP 403", "HTTP 404"} <= set(tally.outcomes), tally.line()
    else:  # the inputs reach both sides: some are accepted, some refused with the documented error
        assert tally.outcomes[refused[name]] > 0 and len(tally.outcomes) >= 2, tally.line()


# -- each fuzz can fail: a deliberately broken edge is caught ------------------------------------------------

def test_the_decoder_fuzz_catches_a_decoder_that_lets_bad_json_through(tmp_path: Path) -> None:
    def careless(parts: list[bytes]):
        json.loads(parts[1])  # raises JSONDecodeError / RecursionError / UnicodeDecodeError, not SchemaError
        return decode_message(parts)

    tally = fuzz_target(fuzz.DecoderTarget(careless), 100, workdir=tmp_path)
    assert tally.failures and any("Error" in f for f in tally.failures), tally.line()


def test_the_toml_fuzz_catches_a_reader_without_its_checks(tmp_path: Path) -> None:
    def careless(path: str):
        data = tomllib.loads(Path(path).read_text())   # TOMLDecodeError escapes; a missing table is a KeyError
        return data["cameras"][0]["name"]

    tally = fuzz_target(fuzz.TomlTarget(careless), 60, workdir=tmp_path)
    assert tally.failures, tally.line()


@pytest.mark.filterwarnings("ignore:Casting complex values")
def test_the_state_fuzz_catches_a_loader_that_skips_the_checks(tmp_path: Path) -> None:
    from streamad.stream.detector import StreamDetector
    from streamad.stream.persistence import read_state

    def careless(directory, extractor=None, config=None):
        saved = read_state(directory, config)   # files checked, content not: no check_state
        return StreamDetector.from_state(saved.parts, saved.config, extractor)

    tally = fuzz_target(fuzz.StateTarget(careless), 120, workdir=tmp_path)
    assert tally.failures, tally.line()


def test_the_web_fuzz_catches_a_page_that_forgets_its_token(tmp_path: Path, monkeypatch) -> None:
    from streamad.runtime.serve.web import WebPage

    monkeypatch.setattr(WebPage, "authorised", lambda self, path, headers: True)
    tally = fuzz_target(fuzz.WebTarget(), 100, workdir=tmp_path)
    assert any("without the token" in f for f in tally.failures), tally.line()


def test_the_process_fuzz_catches_a_state_changed_by_a_refused_frame(tmp_path: Path) -> None:
    def careless(detector, frame, timestamp):
        detector.frames_seen += 1   # counts the frame before it is checked
        return detector.process(frame, timestamp)

    tally = fuzz_target(fuzz.ProcessTarget(careless), 60, workdir=tmp_path)
    assert any("state changed" in f for f in tally.failures), tally.line()


def test_a_hang_is_reported_not_waited_for() -> None:
    import time

    with pytest.raises(fuzz.FuzzHang):
        with fuzz.time_limit(0.2):
            time.sleep(5)


# -- regressions: what the fuzz found --------------------------------------------------------------------------

@pytest.mark.parametrize("header, message", [
    (b"[" * 60_000, "not UTF-8 JSON that streamad can read (RecursionError"),      # was a RecursionError
    (b'{"schema": 3' + b"0" * 5000 + b"}", "not UTF-8 JSON that streamad can read (ValueError"),  # int digits limit
    (b'{"schema": 3.0}', "message has schema 3.0"),                                  # was read as schema 3
    (b" " * 70_000, "more than 65536"),
], ids=["deep", "digits", "float-schema", "oversized"])
def test_decoder_refuses_headers_python_cannot_read(header: bytes, message: str) -> None:
    with pytest.raises(SchemaError, match=message.replace("(", r"\(")):
        decode_message([b"streamad", header, b""])


def test_decoder_refuses_a_number_too_large_for_a_float() -> None:
    from streamad.adapters.publisher import encode_message
    from streamad.results import FrameResult

    r = FrameResult(index=1, ready=False, score=None, threshold=None, anomalous=False, heatmap=None,
                    patch_scores=None, drift=False, admitted=False, timestamp=1.0)
    parts = encode_message(r)
    header = json.loads(parts[1])
    header["score"] = 10 ** 400   # was an OverflowError in the check (math.isfinite of an int that fits no float)
    with pytest.raises(SchemaError, match="'score' must be a number or null"):
        decode_message([parts[0], json.dumps(header).encode(), parts[2]])


@pytest.mark.parametrize("line, message", [
    ("batch_wait_ms = 1" + "0" * 400, "key 'batch_wait_ms' must be a number"),    # was an OverflowError
    ("workers = " + "[" * 3000 + "]" * 3000, "nested too deeply"),                 # was a RecursionError
])
def test_serve_config_refuses_what_python_cannot_read(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(f'[serve]\n{line}\n[[cameras]]\nname = "a"\nsource = "demo"\n')
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_serve_config_refuses_a_huge_number_in_overrides(tmp_path: Path) -> None:
    path = tmp_path / "serve.toml"
    path.write_text('[[cameras]]\nname = "a"\nsource = "demo"\n[cameras.overrides]\n'
                    f'decisions = {{ false_alarm_rate = 1{"0" * 400} }}\n')
    with pytest.raises(ConfigError, match="false_alarm_rate"):
        load_config(path)


@pytest.mark.parametrize("timestamp", ["noon", 10 ** 400, fuzz._BadFloat()])
def test_a_refused_timestamp_leaves_a_fresh_detector_untouched(timestamp) -> None:
    det = small_detector()
    before = state_fingerprint(det)
    with pytest.raises(ValueError, match="timestamp must be a finite number"):
        det.process(demo_frames(1)[0], timestamp)   # the frame size used to be taken before the refusal
    assert det.frame_size is None and state_fingerprint(det) == before


def saved_small_state(tmp_path: Path):
    """The fuzz's state: a small detector after 30 demo frames, saved in ``tmp_path / "state"``."""
    det = small_detector()
    for i, frame in enumerate(demo_frames(30)):
        det.process(frame, timestamp=float(i))
    det.save(tmp_path / "state")
    return det


def edit_manifest(path: Path, change) -> None:
    """``change(manifest)`` applied to the saved state's manifest in ``path``."""
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_a_state_whose_pending_removals_are_not_in_the_index_is_refused(tmp_path: Path) -> None:
    det = saved_small_state(tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "state", bad)
    target = fuzz.StateTarget()
    target.case = bad
    manifest = json.loads((bad / "manifest.json").read_text())
    target._rewrite_array(manifest, "channels.pending_removed", np.array([10 ** 9], np.int64))
    (bad / "manifest.json").write_text(json.dumps(manifest))
    from streamad.stream.detector import StreamDetector

    with pytest.raises(StateError, match="pending_removed.npy .e.g. label 1000000000. are not in the nominal index"):
        StreamDetector.load(bad, extractor=det.extractor)   # loaded, then failed at the next admission (KeyError)
    StreamDetector.load(tmp_path / "state", extractor=det.extractor)


def test_a_state_whose_seeds_left_the_window_is_refused(tmp_path: Path) -> None:
    """The fuzz emptied channels.ids (and eligible) with a manifest that agreed: it loaded, then failed at
    the next frame (KeyError: frame 24 is not in the window)."""
    det = saved_small_state(tmp_path)
    target = fuzz.StateTarget()
    target.case = tmp_path / "state"
    manifest = json.loads((target.case / "manifest.json").read_text())
    for name, dtype in (("channels.ids", np.int64), ("channels.eligible", np.bool_)):
        target._rewrite_array(manifest, name, np.zeros(0, dtype))
    (target.case / "manifest.json").write_text(json.dumps(manifest))
    from streamad.stream.detector import StreamDetector

    with pytest.raises(StateError, match=r"seed frame \d+ \(channels.seed_frame.npy\) is not in the window"):
        StreamDetector.load(target.case, extractor=det.extractor)


def test_a_state_whose_counters_are_not_ints_is_refused(tmp_path: Path) -> None:
    """The fuzz set channels.stats.trimmed_channels to a list: it loaded, then failed adding to it."""
    det = saved_small_state(tmp_path)
    edit_manifest(tmp_path / "state",
                  lambda m: m["state"]["channels"]["stats"].update(trimmed_channels=[[3, [4.8e-196], {}]]))
    from streamad.stream.detector import StreamDetector

    with pytest.raises(StateError, match=r"channels.stats.trimmed_channels is \[\[3, .*expected int"):
        StreamDetector.load(tmp_path / "state", extractor=det.extractor)


@pytest.mark.parametrize("where, value, message", [
    (("detector", "frames_seen"), -10 ** 300, r"detector.frames_seen is -1000.*expected int"),   # beyond int64
    (("detector", "frames_seen"), 2 ** 63, r"detector.frames_seen is 9223372036854775808, expected int"),
    (("detector", "next_frame_id"), -1, r"detector.next_frame_id is -1, not a count in \[0, 2\*\*53\)"),
    (("index", "kind"), {"x": 1}, r"a nominal index of unknown kind \{'x': 1\}"),
])
def test_a_state_with_an_impossible_scalar_is_refused(tmp_path: Path, where, value, message) -> None:
    """The fuzz (15,000 inputs) found two: frames_seen = -10**300 loaded, then failed at the next frame
    (OverflowError writing it into an int64 ring); an index kind that is a JSON object raised TypeError
    (unhashable) inside the loader's own check."""
    det = saved_small_state(tmp_path)
    edit_manifest(tmp_path / "state", lambda m: m["state"][where[0]].update({where[1]: value}))
    from streamad.stream.detector import StreamDetector

    with pytest.raises(StateError, match=message):
        StreamDetector.load(tmp_path / "state", extractor=det.extractor)
