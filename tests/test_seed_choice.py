"""Which training images seed batch InReaCh's channels (InReachConfig.seed_choice)."""

from __future__ import annotations

import numpy as np
import pytest

from streamad.batch.inreach import InReaChPatchModel
from streamad.config import ChannelConfig, InReachConfig
from streamad.core.seed_choice import choose_seeds


def _looks(order: list[int], p: int = 12, d: int = 6, seed: int = 0) -> np.ndarray:
    """One image per entry of ``order``: every patch shows look ``order[i]`` (three looks, far apart) plus noise."""
    rng = np.random.default_rng(seed)
    centres = 10.0 * np.random.default_rng(7).normal(size=(3, p, d))
    return np.stack([centres[k] + 0.05 * rng.normal(size=(p, d)) for k in order]).astype(np.float32)


def test_first_is_the_paper_s_first_d_images():
    assert choose_seeds(_looks([0] * 8), 3, "first") == [0, 1, 2]


def test_spread_seeds_every_look_where_first_sees_one():
    order = [0, 0, 0, 0, 1, 0, 0, 2, 0, 1, 2, 0]
    x = _looks(order)
    first, spread = choose_seeds(x, 3, "first"), choose_seeds(x, 3, "spread")
    assert {order[i] for i in first} == {0}
    assert {order[i] for i in spread} == {0, 1, 2} and spread[0] == 0 and len(set(spread)) == 3
    # with one seed per look, the rare looks form channels too: more of the set is found nominal
    cfg = ChannelConfig(seeds=3, min_span=1, spread="none")
    plain = InReaChPatchModel(cfg).fit_descriptors(x, (3, 4))
    varied = InReaChPatchModel(cfg, seed_choice="spread").fit_descriptors(x, (3, 4))
    assert varied.seeds_ == spread and plain.seeds_ == first
    assert varied.nominal_count_ > plain.nominal_count_
    assert varied.nominal_mask_[[i for i, k in enumerate(order) if k == 2]].all()


def test_typical_keeps_an_outlier_image_out_of_the_seeds():
    x = _looks([0] * 10)
    x[0] += 50.0  # a very unusual first image
    assert 0 in choose_seeds(x, 3, "first") and 0 not in choose_seeds(x, 3, "typical")
    assert len(set(choose_seeds(x, 3, "typical"))) == 3


def test_clean_keeps_a_defective_image_out_of_the_seeds():
    """Images share one look per patch; two of the first candidates carry a defect patch no other image
    shows. "first" seeds them, "clean" does not."""
    x = _looks([0] * 30)
    for i in (0, 2):
        x[i, 5] += 30.0                                  # one defective patch
    assert {0, 2} <= set(choose_seeds(x, 3, "first"))
    clean = choose_seeds(x, 3, "clean")
    assert not {0, 2} & set(clean) and all(c < 12 for c in clean)  # chosen among the first 4 D
    assert choose_seeds(x[:4], 3, "clean") == [0, 1, 2]  # too few images to choose: the first D


def test_skip_keeps_the_shuffle_order_but_drops_a_defective_image():
    x = _looks([0] * 30)
    x[1, 5] += 30.0                                       # the second image is defective
    assert choose_seeds(x, 3, "first") == [0, 1, 2]
    assert choose_seeds(x, 3, "skip") == [0, 2, 3]        # the next clean one takes its place
    assert choose_seeds(_looks([0] * 30), 3, "skip") == [0, 1, 2]  # no outlier: the paper's first D


@pytest.mark.parametrize("rule", ["first", "spread", "typical", "clean", "skip"])
def test_every_rule_gives_distinct_sorted_indices_and_is_deterministic(rule):
    x = np.random.default_rng(1).normal(size=(15, 4, 3)).astype(np.float32)
    seeds = choose_seeds(x, 6, rule)
    assert seeds == sorted(set(seeds)) and len(seeds) == 6 and all(0 <= s < 15 for s in seeds)
    assert choose_seeds(x, 6, rule) == seeds
    assert choose_seeds(x, 15, rule) == list(range(15))


def test_bad_seed_choices_are_named():
    with pytest.raises(ValueError, match="InReachConfig.seed_choice must be one of first, spread, typical, clean, skip, got 'best'"):
        InReachConfig(seed_choice="best")
    with pytest.raises(ValueError, match="cannot choose 5 seeds among 3 images"):
        choose_seeds(np.zeros((3, 2, 2)), 5, "spread")


def test_the_stream_refuses_a_seed_choice_in_one_line(tiny_dataset, capsys):
    from streamad.cli import main

    assert main(["eval", str(tiny_dataset), "--stream", "--seed-choice", "spread", "--quiet"]) == 2
    assert "--seed-choice spread is for batch InReaCh" in capsys.readouterr().err


def test_the_paper_configuration_is_available_by_name():
    from streamad.cli import build_parser
    from streamad.cli.eval import config_from_args
    from streamad.config import paper_config
    from streamad.errors import UserError

    parser = build_parser()
    cfg = config_from_args(parser.parse_args(["eval", "data", "--paper"]))
    paper = paper_config("efficientnet_lite0")
    assert (cfg.channels, cfg.heatmap.image_score, cfg.heatmap.blur_sigma, cfg.seed_choice, cfg.new_look_seeds) == \
        (paper.channels, "max", 4.0, "first", 0)
    assert cfg.features.backbone == "efficientnet_lite0"            # --paper keeps the backbone
    wrn = config_from_args(parser.parse_args(["compare", "data", "--paper", "--backbone", "wide_resnet50_2"]))
    assert wrn.channels == paper_config().channels and wrn.features.backbone == paper_config().features.backbone
    assert config_from_args(parser.parse_args(["eval", "data"])).channels.spread == "zscore"  # the defaults
    with pytest.raises(UserError, match="--paper sets --spread std; leave --spread rms out, or drop --paper"):
        config_from_args(parser.parse_args(["eval", "data", "--paper", "--spread", "rms"]))
    with pytest.raises(UserError, match="--paper sets --image-score max"):
        config_from_args(parser.parse_args(["eval", "data", "--paper", "--image-score", "reweight"]))


def test_options_left_out_take_the_defaults_of_the_engine_that_runs(tiny_dataset, capsys):
    """Batch InReaCh's rule-chosen defaults (k 2, blur 8, skip); the streaming engine's own (k 2, blur 8, the
    first D frames) for eval --stream and eval-stream; an option given wins in both."""
    from streamad.cli import build_parser, main
    from streamad.cli.eval import config_from_args
    from streamad.config import InReachConfig, StreamConfig

    parser = build_parser()
    batch = config_from_args(parser.parse_args(["eval", "data"]))
    assert batch.channels == InReachConfig().channels and batch.heatmap.blur_sigma == InReachConfig().heatmap.blur_sigma
    assert (batch.channels.k_sigma, batch.heatmap.blur_sigma, batch.seed_choice) == (2.0, 8.0, "skip")
    stream = config_from_args(parser.parse_args(["eval", "data", "--stream"]), engine="stream")
    assert (stream.channels.k_sigma, stream.heatmap.blur_sigma, stream.seed_choice) == \
        (StreamConfig().channels.k_sigma, StreamConfig().heatmap.blur_sigma, "first") == (2.0, 8.0, "first")
    given = config_from_args(parser.parse_args(["eval", "data", "--k-sigma", "4", "--blur", "2", "--seed-choice",
                                                "first"]))
    assert (given.channels.k_sigma, given.heatmap.blur_sigma, given.seed_choice) == (4.0, 2.0, "first")
    assert main(["eval", str(tiny_dataset), "--stream", "--seed-frames", "2", "--min-span", "2", "--image-size", "64",
                 "--quiet"]) == 0  # the batch default seed choice is not refused where the engine runs
    assert "window" in capsys.readouterr().out
