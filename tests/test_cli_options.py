"""One option table (``streamad/cli/options.py``): every subcommand's parser is walked, and an option that
several commands take has the same help and default everywhere, unless ``PER_COMMAND`` says why one
command means something else by it; renamed options keep their old spelling, which warns; and the same
settings give the same ``StreamConfig`` from the command line, a serve file and the benchmark."""

from __future__ import annotations

import argparse
from collections import defaultdict

import pytest

from streamad import cli
from streamad.cli import options
from streamad.cli.options import OPTIONS, PER_COMMAND

Definitions = dict[str, dict[str, tuple[object, str]]]   # flag -> command -> (default, help)


def definitions(parser: argparse.ArgumentParser) -> Definitions:
    """Every option flag of every subcommand of ``parser``: its default and help, by command."""
    found: Definitions = defaultdict(dict)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command, p in sub.choices.items():
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                default = tuple(action.default) if isinstance(action.default, list) else action.default
                for flag in action.option_strings:
                    found[flag][command] = (default, action.help or "")
    return found


def disagreements(found: Definitions, per_command: dict[str, tuple[frozenset[str], str]]) -> list[str]:
    """Flags that several commands define with different defaults or help, other than the commands
    ``per_command`` excuses; and excuses that excuse nothing."""
    problems = []
    for flag, by_command in sorted(found.items()):
        excused = per_command.get(flag, (frozenset(), ""))[0]
        shared = {cmd: d for cmd, d in by_command.items() if cmd not in excused}
        if len(set(shared.values())) > 1:
            problems.append(f"{flag}: " + "; ".join(f"{cmd}: default {d!r}, help {h[:50]!r}"
                                                  for cmd, (d, h) in sorted(shared.items())))
    for flag, (commands, _) in per_command.items():
        if not commands <= set(found.get(flag, {})):
            problems.append(f"{flag}: PER_COMMAND names {sorted(commands - set(found.get(flag, {})))}, which have "
                            "no such option")
    return problems


def test_shared_options_have_one_help_and_one_default_everywhere() -> None:
    found = definitions(cli.build_parser())
    assert disagreements(found, PER_COMMAND) == []
    # and those the table defines are the table's
    for dest, option in OPTIONS.items():
        for command, (default, help_) in found.get(option.name, {}).items():
            if command in PER_COMMAND.get(option.name, (frozenset(),))[0]:
                continue
            want = option.kwargs.get("default", False if option.kwargs.get("action") == "store_true" else None)
            assert (default, help_) == (want, option.kwargs["help"]), (option.name, command)


def test_a_flag_taken_by_several_commands_is_in_the_table_or_excused() -> None:
    found = definitions(cli.build_parser())
    several = {flag for flag, by in found.items() if len(by) > 1}
    shared = {o.name for o in OPTIONS.values()} | {f for o in OPTIONS.values() for f in o.deprecated}
    assert several - shared - set(PER_COMMAND) == set(), "define these once in streamad/cli/options.py"
    assert found["--device"] and {d for d, _ in found["--device"].values()} == {"cpu"}  # one default everywhere
    assert len(found["--device"]) == 7 and len(found["--seed"]) == 6


def test_the_checker_can_fail() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    sub.add_parser("a").add_argument("--seed", type=int, default=0, help="demo seed")
    sub.add_parser("b").add_argument("--seed", type=int, default=1, help="random seed")
    sub.add_parser("c").add_argument("--out", default=None, help="x")
    found = definitions(parser)
    assert disagreements(found, {}) == ["--seed: a: default 0, help 'demo seed'; b: default 1, help 'random seed'"]
    assert disagreements(found, {"--seed": (frozenset({"b"}), "why")}) == []
    assert disagreements(found, {"--seed": (frozenset({"b"}), "why"), "--out": (frozenset({"z"}), "why")}) == [
        "--out: PER_COMMAND names ['z'], which have no such option"]


def test_stale_help_is_gone() -> None:
    found = definitions(cli.build_parser())
    assert "HNSW index approximates" not in found["--exact-reference"]["eval"][1]
    from streamad.config import StreamConfig

    k, blur = StreamConfig().channels.k_sigma, StreamConfig().heatmap.blur_sigma
    assert f"{k:g} for the streaming engine" in found["--k-sigma"]["bench"][1]
    assert f"{blur:g} for the streaming engine" in found["--blur"]["bench"][1]


@pytest.mark.parametrize("command, old, new, value", [(["watch", "demo"], "--save", "--record", "out.mp4"),
                                                      (["watch", "demo"], "--save-every", "--state-every", "7"),
                                                      (["eval", "data"], "--seeds", "--seed-frames", "12")])
def test_renamed_options_keep_their_old_spelling_which_warns(capsys, command, old, new, value) -> None:
    """--seeds (seed frames) stood beside --seed (the random seed): renamed --seed-frames."""
    parser = cli.build_parser()
    by_old = parser.parse_args([*command, old, value])
    assert f"{old} is deprecated and will go: use {new}" in capsys.readouterr().err
    by_new = parser.parse_args([*command, new, value])
    assert capsys.readouterr().err == ""
    assert vars(by_old) == vars(by_new)


def test_the_same_settings_give_the_same_stream_config_everywhere() -> None:
    """The command line, a serve file's camera and the benchmark turn settings into a StreamConfig with
    one function (streamad.stream.settings)."""
    from streamad.bench.throughput import bench_config
    from streamad.cli import watch
    from streamad.runtime.serve.config import CameraConfig

    args = cli.build_parser().parse_args(["watch", "demo", "--window", "32", "--memory", "0", "--learning", "sync",
                                          "--device", "cpu", "--blas-threads", "1"])
    from_cli = watch.build_config(args)
    from_file = CameraConfig("a", "demo", window=32, memory=0, learning="sync").stream_config("cpu", {"blas": 1})
    from_bench = bench_config(window=32, memory=0, device="cpu", blas_threads=1)
    assert from_cli == from_file == from_bench
    assert (from_cli.window, from_cli.memory.capacity, from_cli.learn_in_background, from_cli.threads.blas) == (
        32, 0, False, 1)


def test_an_error_names_the_option() -> None:
    args = cli.build_parser().parse_args(["bench", "--k-sigma", "-1"])
    with pytest.raises(Exception, match="--k-sigma"):
        from streamad.bench.throughput import bench_config

        try:
            bench_config(**options.settings(args, options.STREAM_SETTINGS))
        except ValueError as exc:
            raise options.config_error(exc) from exc
