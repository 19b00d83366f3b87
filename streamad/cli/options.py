"""The options that several commands take, each defined once: flags, type, default, help.

A command adds the ones it takes by name, to its parser or to one of its argument groups::

    g = p.add_argument_group("detector")
    add(g, "preset", "window", "device")

so ``--device`` has one default and one help text wherever it appears (``tests/test_cli_options.py``
walks every command and checks it). A renamed option keeps its old spelling as a deprecated alias: it
still works and says the new name on stderr. Flags that mean different things in different commands
(``--frames``: frames per pass, per rate or per camera) stay with their commands; :data:`PER_COMMAND`
lists them and why.

:func:`settings` picks the options that are configuration settings out of the parsed arguments, and
:func:`stream_config` turns them into a ``StreamConfig`` through :mod:`streamad.stream.settings` (the one
mapping from a flat name to its place in the configuration, which ``streamad serve``'s cameras and the
benchmarks use too); :func:`config_error` says a configuration's complaint in the options' words.

    >>> import argparse
    >>> p = argparse.ArgumentParser(prog="demo")
    >>> add(p, "device", "seed")
    >>> p.parse_args(["--seed", "3"])
    Namespace(device='cpu', seed=3)
    >>> str(config_error(ValueError("FeatureConfig.dim must be >= 1, got 0")))
    '--dim must be >= 1, got 0'
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streamad.config import (IMAGE_SCORES, SEED_CHOICES, SPREAD_RULES, FeatureConfig, InReachConfig, StreamConfig,
                             paper_config)
from streamad.errors import UserError
from streamad.stream.presets import DESCRIPTIONS, PRESETS

if TYPE_CHECKING:
    from argparse import _ActionsContainer


def pair(text: str) -> tuple[int, int]:
    """``N`` or ``H,W`` (also ``HxW``) as a pair of ints.

    >>> pair("28"), pair("20,24"), pair("20x24")
    ((28, 28), (20, 24), (20, 24))
    """
    parts = text.lower().replace("x", ",").split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or H,W (e.g. 28 or 28,28), got {text!r}") from None
    if len(values) == 1:
        return values[0], values[0]
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected N or H,W, got {text!r}")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class Option:
    """One shared option: its ``flags`` (the first is its name), the keyword arguments of
    ``add_argument`` and the ``deprecated`` spellings it still accepts (they warn)."""

    flags: tuple[str, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    deprecated: tuple[str, ...] = ()
    dest: str = ""  # the parsed attribute and table key ("": from the name, --top-k -> top_k)

    @property
    def key(self) -> str:
        return self.dest or self.name[2:].replace("-", "_")

    @property
    def name(self) -> str:
        return self.flags[0]


_F, _B, _S = FeatureConfig(), InReachConfig(), StreamConfig()


def _table() -> dict[str, Option]:
    """The shared options by their destination (the attribute of the parsed arguments)."""
    c, h, sc, sh = _B.channels, _B.heatmap, _S.channels, _S.heatmap
    options = [
        # -- runs ------------------------------------------------------------------------------------
        Option(("--seed",), dict(type=int, default=0, help="the random seed of the run: the same seed repeats it "
                                                             "exactly (default 0)")),
        Option(("--quiet",), dict(action="store_true", help="no progress bars")),
        Option(("--json",), dict(metavar="FILE", default=None, help="also write the results as JSON to FILE")),
        Option(("--out",), dict(metavar="FILE.md", default=None, help="write the table(s) as Markdown to FILE.md")),
        Option(("--cache",), dict(metavar="DIR", default=None,
                                  help="keep what is computed (descriptors; compare: also each run's results) in DIR "
                                       "and reuse it on later runs with the same data and settings (e.g. out/cache)")),
        Option(("--data-root",), dict(metavar="DIR", default=None,
                                      help="folder that holds the data sets: a DATA_DIR that does not exist as given is "
                                           "looked up under it (default: the STREAMAD_DATA environment variable)")),
        Option(("--max-frames",), dict(type=int, default=None, metavar="N",
                                       help="stop after N frames (serve: each camera; overrides the cameras' "
                                            "max_frames)")),
        # -- features --------------------------------------------------------------------------------
        Option(("--backbone",), dict(default=None, help=f"feature backbone: {_F.backbone} (default; offline weights), "
                                                          "efficientnet_lite1/2, wide_resnet50_2, resnet18")),
        Option(("--weights",), dict(default=None, metavar="PATH",
                                    help="local weight file for the backbone ('random' for timing only)")),
        Option(("--layers",), dict(default=None, metavar="A,B",
                                   help="comma-separated backbone layers (default: the backbone's stride-8 and "
                                        "stride-16 blocks)")),
        Option(("--image-size",), dict(type=pair, default=None, metavar="H,W",
                                       help=f"input size, S or H,W (default {_F.image_size[0]}; the grid is input/8 "
                                            "unless --grid says)")),
        Option(("--dim",), dict(type=int, default=None, metavar="D",
                                help=f"maximum descriptor dimension (default {_F.dim})")),
        Option(("--device",), dict(default="cpu", help="where the backbone runs: cpu (default), cuda, cuda:N, or "
                                                       "auto (CUDA when available)")),
        # -- channels and heatmaps -------------------------------------------------------------------
        # renamed: --seeds (seed frames) stood beside --seed (the random seed)
        Option(("--seed-frames",), dict(type=int, default=c.seeds, metavar="D",
                                        help=f"seed frames D: the first D frames (training images) start the "
                                             f"channels; the association depth (default {c.seeds}; formerly "
                                             f"--seeds)"), deprecated=("--seeds",), dest="seeds"),
        Option(("--k-sigma",), dict(type=float, default=None, metavar="K",
                                    help=f"maximum channel spread (default {c.k_sigma:g} for batch InReaCh, "
                                         f"{sc.k_sigma:g} for the streaming engine)")),
        Option(("--blur",), dict(type=float, default=None, metavar="SIGMA",
                                 help=f"heatmap blur sigma (default {h.blur_sigma:g} for batch InReaCh, "
                                      f"{sh.blur_sigma:g} for the streaming engine)")),
        # -- the streaming engine --------------------------------------------------------------------
        Option(("--preset",), dict(choices=tuple(PRESETS), default="default",
                                   help="; ".join(f"{k}: {v}" for k, v in DESCRIPTIONS.items()))),
        Option(("--window",), dict(type=int, default=None, metavar="W",
                                   help=f"frames kept in the sliding window (default: the preset's, {_S.window})")),
        Option(("--admit-every",), dict(type=int, default=None, metavar="K",
                                        help=f"admit one frame in K to the window (default: the preset's, "
                                             f"{_S.admit_every}; bench-serve: every camera of serve and of the "
                                             f"watch processes alike, so that both sides learn as much)")),
        Option(("--learning",), dict(choices=("background", "sync"), default="background",
                                     help="background (default): every frame is scored at once and a learner thread "
                                          "admits the newest due frame, so scoring never waits for learning; sync: "
                                          "score and admit on one thread (deterministic, as 'streamad eval' does; "
                                          "slower)")),
        Option(("--learner-duty",), dict(type=float, default=None, metavar="F",
                                         help=f"background learning: the largest share of one core the learner may "
                                              f"use (CPU time; default {_S.learner_duty:g}), so that scoring keeps the "
                                              f"cores")),
        Option(("--learner-nice",), dict(type=int, default=None, metavar="N",
                                         help=f"background learning: how much lower the learner thread's scheduling "
                                              f"priority is, 0-19 (Linux; default {_S.learner_nice}): the scorer's "
                                              f"threads take a core first, the learner runs on what they leave")),
        Option(("--torch-threads",), dict(type=int, default=None, metavar="N",
                                          help="threads of the backbone (default 0: all usable cores)")),
        Option(("--blas-threads",), dict(type=int, default=None, metavar="N",
                                         help="BLAS threads of association and search (default 0: 1 with background "
                                              "learning, else all cores), so that scorer and learner do not fight "
                                              "over the cores")),
        Option(("--associate-threads",), dict(type=int, default=None, metavar="N",
                                              help="threads that share a frame's mutual pairs with its seeds (default "
                                                   "0: 1 with background learning, else all cores; the same answers "
                                                   "whatever the count)")),
        Option(("--memory",), dict(type=int, default=None, metavar="N",
                                   help=f"long-term nominal memory beyond the window: at most N trusted patches of "
                                        f"frames that left it (default {_S.memory.capacity}; 0: none, as --preset "
                                        "lean; docs/stream_defaults.md)")),
        Option(("--memory-epsilon-ratio",), dict(type=float, default=1.0, metavar="R",
                                                 help="the memory's cover radius, times the median distance of the "
                                                      "first leaving patches to the window's nominal set (default 1)")),
        Option(("--memory-max-age",), dict(type=int, default=0, metavar="A",
                                           help="forget remembered patches not seen again for A admissions (default "
                                                "0: only the capacity)")),
        # -- alarms ----------------------------------------------------------------------------------
        Option(("--false-alarm-rate",), dict(type=float, default=None, metavar="R",
                                             help="share of normal frames you accept to see flagged (default "
                                                  "0.01); the threshold follows")),
        Option(("--rules",), dict(default="auto,quantile",
                                  help="comma-separated decision rules: auto (the default rule), trusted, screened, "
                                       "quantile (default auto,quantile)")),
        # -- watch's outputs and state (renamed: --save wrote a video, --save-every saved the state) ----
        Option(("--record",), dict(metavar="FILE", default=None,
                                   help="write the annotated video (.mp4, .avi, .mkv) or, for .png, the last ready "
                                        "frame (formerly --save)"), deprecated=("--save",)),
        Option(("--state-every",), dict(type=int, default=None, metavar="N",
                                        help="with --state: save the state every N frames (default 500; 0: only on "
                                             "exit; formerly --save-every)"), deprecated=("--save-every",)),
    ]
    model = [
        Option(("--grid",), dict(type=pair, default=None, metavar="H,W", help="descriptor grid (default: input/8)")),
        Option(("--center-crop",), dict(type=float, default=0.875, metavar="F",
                                        help="resize to size/F and keep the centre (default 0.875: the papers' "
                                             "256 -> 224 protocol; 1 = the whole image)")),
        Option(("--min-span",), dict(type=int, default=c.min_span,
                                     help=f"minimum channel span L_min (default {c.min_span})")),
        Option(("--spread",), dict(choices=SPREAD_RULES, default=c.spread,
                                   help=f"spread rule: std = the reference code's, rms, zscore, none (default "
                                        f"{c.spread})")),
        Option(("--paper",), dict(action="store_true",
                                  help="the InReaCh paper's method: D = 10, minimum span 3, spread std k = 5, image "
                                       "score max, first D seeds (streamad.config.paper_config); keeps --backbone, so "
                                       "with --backbone wide_resnet50_2 it is the paper's whole configuration. Not "
                                       "combined with those options")),
        Option(("--seed-choice",), dict(choices=SEED_CHOICES, default=None,
                                        help=f"which training images seed the channels (batch InReaCh; default "
                                             f"{_B.seed_choice}): first = the first D of the shuffled set (the "
                                             "paper's), spread = farthest-point over image summaries, typical = the D "
                                             "nearest their median, clean = of the first 4 D the D whose patches the "
                                             "next 2 D match best, skip = the first D that are no outliers by that "
                                             "score (docs/quality.md)")),
        Option(("--new-look-seeds",), dict(type=int, default=0, metavar="E",
                                           help="E more seeds after the D that head channels only for the looks no "
                                                "channel holds yet (batch InReaCh; default 0, the paper's association; "
                                                "docs/quality.md)")),
        Option(("--positional",), dict(choices=("auto", "on", "off"), default="auto",
                                       help="positional embedding: auto runs the transpose test (default)")),
        Option(("--image-score",), dict(choices=IMAGE_SCORES, default=h.image_score,
                                        help=f"image score from the patch scores (default {h.image_score}): max = the "
                                             "heatmap maximum (the paper's), top_mean = mean of the --top-k highest "
                                             "patch scores, reweight = PatchCore's eq. 7 against the nominal set "
                                             "(batch only; docs/quality.md)")),
        Option(("--top-k",), dict(type=int, default=h.top_k, help=f"patches averaged by top_mean (default {h.top_k})")),
        Option(("--reweight-neighbors",), dict(type=int, default=h.reweight_neighbors,
                                               help=f"nominal neighbours b of eq. 7 (default {h.reweight_neighbors})")),
    ]
    return {o.key: o for o in options + model}


OPTIONS: dict[str, Option] = _table()

#: Flags that more than one command defines on its own, because they mean different things there. Each
#: entry: the flag, the commands that define it their way (every other command takes the shared one, if
#: there is one), and why.
PER_COMMAND: dict[str, tuple[frozenset[str], str]] = {
    "--frames": (frozenset({"bench", "bench-engine", "bench-serve", "eval-alarms"}),
                 "frames per pass, per window or in all, per camera, per demo rate"),
    "--modes": (frozenset({"bench", "bench-serve"}), "passes of the pipeline (live, sync) / runs (serve, watch)"),
    "--methods": (frozenset({"compare", "eval-stream"}), "batch methods / streaming and static methods"),
    "--windows": (frozenset({"eval-stream", "bench-engine"}), "a comma list of engine windows / a list of sizes"),
    "--warmup": (frozenset({"eval-stream", "bench"}), "scores before a threshold / untimed backbone calls"),
    "--corrupt": (frozenset({"eval", "compare"}), "one count / a list of counts"),
    "--topic": (frozenset({"watch", "listen"}), "the topic to publish on / topic prefixes to subscribe to"),
    "--publish": (frozenset({"watch", "serve"}), "publish (an optional address) / the file's address replaced"),
    "--workers": (frozenset({"serve", "bench-serve", "soak"}),
                  "overrides the file's [serve] workers / the measured setting / the soak's worker processes"),
    "--cameras": (frozenset({"bench-serve", "soak"}), "a list of camera counts measured / the soak's demo cameras"),
    "--fps": (frozenset({"watch", "soak"}), "the saved video's rate / each soak camera's frame rate"),
    "--live": (frozenset({"bench-engine", "soak"}), "the engine's background learner / the live serve configuration"),
    "--state-every": (frozenset({"soak"}), "the soak saves every camera's state every N frames (default 200)"),
    "--json": (frozenset({"listen"}), "print each message as a JSON line (a switch, no file)"),
    "--quiet": (frozenset({"watch", "serve"}), "no status lines (alarm events and failures are still reported)"),
    "--window": (frozenset({"eval"}), "default: the whole training stream (the batch equivalence), not the preset's"),
    "--preset": (frozenset({"eval-alarms"}), "measured on the fast preset by default"),
    "--image-score": (frozenset({"eval-stream"}), "default max: the streaming engine's frame score (docs/drift_mtd.md)"),
    "--dim": (frozenset({"bench-engine"}), "the synthetic descriptors' dimension (no backbone; default 152)"),
}

#: The model options of every command that builds a model from a backbone (eval, compare, eval-stream).
MODEL = ("backbone", "weights", "layers", "image_size", "grid", "center_crop", "dim", "device", "seeds", "min_span",
         "k_sigma", "spread", "paper", "seed_choice", "new_look_seeds", "positional", "blur", "image_score", "top_k",
         "reweight_neighbors")
MEMORY = ("memory", "memory_epsilon_ratio", "memory_max_age")


class _DeprecatedSpelling(argparse.Action):
    """Marks an action whose old spellings warn (the class is mixed into the option's own action class)."""

    new: str = ""
    old: tuple[str, ...] = ()

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if option_string in self.old:
            print(f"{parser.prog}: warning: {option_string} is deprecated and will go: use {self.new}",
                  file=sys.stderr)
        super().__call__(parser, namespace, values, option_string)  # type: ignore[misc]


def _action(target: _ActionsContainer, option: Option) -> type[argparse.Action]:
    base = target._registry_get("action", option.kwargs.get("action"), option.kwargs.get("action"))
    return type(f"Deprecating{base.__name__}", (_DeprecatedSpelling, base),
                {"new": option.name, "old": option.deprecated})


def add(target: _ActionsContainer, *names: str, **changes: Any) -> None:
    """Add the shared options ``names`` (their destinations: ``"device"``, ``"image_size"``) to ``target``,
    a parser or an argument group; ``changes`` replace keyword arguments of one option only where a
    command must (as ``PER_COMMAND`` says), e.g. ``add(p, "window", window=dict(default=64))``."""
    for name in names:
        if name not in OPTIONS:
            raise KeyError(f"no shared option {name!r} (cli/options.py OPTIONS)")
        option = OPTIONS[name]
        kwargs = {**option.kwargs, **changes.get(name, {})}
        if option.deprecated:
            kwargs["action"] = _action(target, option)
        target.add_argument(*option.flags, *option.deprecated, dest=name, **kwargs)


def settings(args: argparse.Namespace, names: Iterable[str]) -> dict[str, Any]:
    """The configuration settings among ``args``: the options ``names`` that were parsed (None: not given)."""
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def flag_of(field_path: str) -> str | None:
    """The option of a configuration field as its errors name it (``"FeatureConfig.dim"`` -> ``"--dim"``)."""
    return _FIELD_FLAGS.get(field_path)


def _field_flags() -> dict[str, str]:
    from streamad.stream.settings import PLACES

    out = {}
    for name, place in PLACES.items():
        owner: Any = _B if name in ("positional", "seed_choice", "new_look_seeds") else _S
        for part in place[:-1]:
            owner = getattr(owner, part)
        flag = OPTIONS[name].name if name in OPTIONS else "--" + name.replace("_", "-")
        if name == "learn_in_background":
            flag = "--learning"
        out[f"{type(owner).__name__}.{place[-1]}"] = flag
    out["InReachConfig.seed"] = "--seed"
    return out


_FIELD_FLAGS = _field_flags()


def config_error(exc: Exception) -> UserError:
    """A configuration's ``ValueError`` as a UserError that names the options (``--dim``), not the fields."""
    message = str(exc)
    for path, flag in sorted(_FIELD_FLAGS.items(), key=lambda kv: -len(kv[0])):
        message = message.replace(path, flag)
    return UserError(message)


#: The flat settings of the streaming engine that commands take as options.
STREAM_SETTINGS = ("window", "admit_every", "backbone", "weights", "layers", "image_size", "dim", "aggregate",
                   "device", "k_sigma", "blur", "learning", "learner_duty", "learner_nice", "torch_threads", "blas_threads",
                   "associate_threads", "memory",
                   "memory_epsilon_ratio", "memory_max_age", "rule", "false_alarm_rate", "index", "nprobe",
                   "exact_below", "ef_construction")


def stream_config(args: argparse.Namespace, *, preset: str | None = None,
                  overrides: Mapping[str, Any] | None = None) -> StreamConfig:
    """The ``StreamConfig`` the options describe: ``--preset`` (or ``preset``), then every streaming option
    that was given, then ``overrides``; a bad value is a UserError naming the option."""
    from streamad.stream.settings import stream_config_of

    try:
        return stream_config_of(settings(args, STREAM_SETTINGS), preset=preset or getattr(args, "preset", "default"),
                                overrides=overrides)
    except ImportError as exc:
        raise UserError(f"{exc}: the streaming detector is missing from this installation") from exc
    except (ValueError, TypeError) as exc:
        raise config_error(exc) from exc


def paper_options(args: argparse.Namespace) -> None:
    """``--paper``: set the paper's method choices on ``args``, refusing an option that says otherwise."""
    if not getattr(args, "paper", False):
        return
    paper = paper_config()
    wanted = {"seeds": (paper.channels.seeds, OPTIONS["seeds"].kwargs["default"]),
              "min_span": (paper.channels.min_span, OPTIONS["min_span"].kwargs["default"]),
              "spread": (paper.channels.spread, OPTIONS["spread"].kwargs["default"]),
              "k_sigma": (paper.channels.k_sigma, None), "image_score": (paper.heatmap.image_score, _B.heatmap.image_score),
              "blur": (paper.heatmap.blur_sigma, None), "seed_choice": (paper.seed_choice, None),
              "new_look_seeds": (paper.new_look_seeds, _B.new_look_seeds)}
    for name, (value, default) in wanted.items():
        given = getattr(args, name, default)
        if given != default and given != value:
            option = "--" + name.replace("_", "-")
            raise UserError(f"--paper sets {option} {value}; leave {option} {given} out, or drop --paper")
        setattr(args, name, value)
