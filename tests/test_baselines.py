"""The baseline patch models (PatchCore, SPADE, PNI) on tiny synthetic descriptors with known answers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from streamad.batch.baselines import PNI, PatchCore, PNIConfig, PatchCoreConfig, Spade, SpadeConfig, make_patch_model
from streamad.batch.baselines import coreset, spade
from streamad.batch.baselines.coreset import greedy_coreset, jl_projection
from streamad.batch.baselines.knn import nearest
from streamad.batch.image_detector import PatchModel

torch.set_num_threads(1)

GRID = (5, 5)
P = GRID[0] * GRID[1]
D = 8
SMALL_PNI = dict(distribution_size=16, hidden=32, epochs=15, batch_size=64, lr_step=10)


def nominal_set(n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Training descriptors (n, P, D): one fixed pattern per position plus small noise; and the pattern."""
    rng = np.random.default_rng(seed)
    pattern = rng.normal(size=(P, D)).astype(np.float32)
    return pattern + 0.05 * rng.normal(size=(n, P, D)).astype(np.float32), pattern


def build(method: str, seed: int = 0):
    options = SMALL_PNI if method == "pni" else {}
    if method == "patchcore":
        options = dict(coreset_fraction=0.5)
    if method == "spade":
        options = dict(k_images=3)
    return make_patch_model(method, seed=seed, **options)


def brute_force_greedy(x: np.ndarray, n: int, start: int) -> list[int]:
    """Reference k-center greedy: add the point whose distance to the chosen set is largest."""
    chosen = [start]
    while len(chosen) < n:
        d = np.linalg.norm(x[:, None, :].astype(np.float64) - x[None, chosen, :], axis=-1).min(1)
        chosen.append(int(np.argmax(d)))
    return chosen


# ---------------------------------------------------------------- all three scorers
@pytest.mark.parametrize("method", ["patchcore", "spade", "pni"])
def test_implanted_outlier_patch_is_ranked_first(method):
    train, pattern = nominal_set()
    rng = np.random.default_rng(1)
    test = pattern + 0.05 * rng.normal(size=(4, P, D)).astype(np.float32)
    test[2, 13] += 3.0  # one anomalous patch in image 2
    model = build(method).fit_descriptors(train, GRID)
    assert isinstance(model, PatchModel)
    scores = model.patch_scores(test)
    assert scores.shape == (4, P) and scores.dtype == np.float32
    assert np.unravel_index(scores.argmax(), scores.shape) == (2, 13)
    image_scores = getattr(model, "image_scores", None)
    if callable(image_scores):
        assert int(np.argmax(image_scores(test))) == 2


@pytest.mark.parametrize("method", ["patchcore", "pni"])
def test_same_seed_same_result_other_seed_other_coreset(method):
    train, pattern = nominal_set()
    test = pattern[None] + np.float32(0.3)
    a, b = build(method, seed=5).fit_descriptors(train, GRID), build(method, seed=5).fit_descriptors(train, GRID)
    np.testing.assert_array_equal(a.patch_scores(test), b.patch_scores(test))
    c = build(method, seed=6).fit_descriptors(train, GRID)
    bank = "memory_bank_" if method == "patchcore" else "embedding_coreset_"
    np.testing.assert_array_equal(getattr(a, bank), getattr(b, bank))
    assert not np.array_equal(getattr(a, bank), getattr(c, bank))


@pytest.mark.parametrize("method", ["patchcore", "spade", "pni"])
def test_an_image_scores_the_same_alone_or_in_a_large_batch(method):
    train, pattern = nominal_set()
    test = pattern + 0.2 * np.random.default_rng(9).normal(size=(70, P, D)).astype(np.float32)
    model = build(method).fit_descriptors(train, GRID)
    batch = model.patch_scores(test)  # PNI scores this in chunks of 64 images
    alone = np.concatenate([model.patch_scores(test[i:i + 1]) for i in (0, 63, 64, 69)])
    np.testing.assert_allclose(batch[[0, 63, 64, 69]], alone, rtol=1e-5, atol=1e-6)


def test_unfitted_and_mismatched_inputs_fail_clearly():
    train, _ = nominal_set(4)
    for model in (PatchCore(), Spade(), PNI()):
        with pytest.raises(RuntimeError, match="not fitted"):
            model.patch_scores(train)
    with pytest.raises(ValueError, match="grid"):
        PatchCore().fit_descriptors(train, (4, 4))
    with pytest.raises(ValueError, match=r"\(N, P, d\)"):
        PatchCore().fit_descriptors(train[0], GRID)
    with pytest.raises(ValueError, match="d=3 but the model was fitted on d=8"):
        PatchCore().fit_descriptors(train, GRID).patch_scores(train[..., :3])


@pytest.mark.parametrize("cls, kwargs, message", [
    (PatchCoreConfig, dict(coreset_fraction=0.0), "PatchCoreConfig.coreset_fraction must be in (0, 1], got 0.0"),
    (PatchCoreConfig, dict(projection_dim=0),
     "PatchCoreConfig.projection_dim must be None (exact) or an int >= 1, got 0"),
    (PatchCoreConfig, dict(reweight_neighbors=1), "PatchCoreConfig.reweight_neighbors must be an int >= 2"),
    (PatchCoreConfig, dict(device="gpu"), "PatchCoreConfig.device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"),
    (SpadeConfig, dict(k_images=0), "SpadeConfig.k_images must be an int >= 1, got 0"),
    (SpadeConfig, dict(kappa=-2), "SpadeConfig.kappa must be an int >= 1, got -2"),
    (SpadeConfig, dict(pooling="median"), "SpadeConfig.pooling must be one of ('mean', 'max'), got 'median'"),
    (PNIConfig, dict(neighborhood=4), "PNIConfig.neighborhood must be an odd int >= 3, got 4"),
    (PNIConfig, dict(position_window=0), "PNIConfig.position_window must be an odd int >= 1, got 0"),
    (PNIConfig, dict(layers=1), "PNIConfig.layers must be an int >= 2, got 1"),
    (PNIConfig, dict(temperature=0), "PNIConfig.temperature must be a number > 0, got 0"),
    (PNIConfig, dict(tau=1.5), "PNIConfig.tau must be None (1 / (2 |C_dist|)) or in [0, 1), got 1.5"),
])
def test_config_validation_names_field_and_value(cls, kwargs, message):
    with pytest.raises(ValueError) as err:
        cls(**kwargs)
    assert message in str(err.value)
    field = next(iter(kwargs))
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cls(), field, getattr(cls(), field))


def test_make_patch_model_rejects_unknown_method_and_option():
    with pytest.raises(ValueError, match="unknown baseline 'inreach'; choose from patchcore, spade, pni"):
        make_patch_model("inreach")
    with pytest.raises(ValueError, match="SpadeConfig has no option kapa"):
        make_patch_model("spade", kapa=2)
    assert make_patch_model("pni", seed=9).config.seed == 9


# ---------------------------------------------------------------- search and coreset
def test_chunked_nearest_matches_brute_force():
    rng = np.random.default_rng(2)
    q, g = rng.normal(size=(37, 6)).astype(np.float32), rng.normal(size=(53, 6)).astype(np.float32)
    full = np.linalg.norm(q[:, None].astype(np.float64) - g[None], axis=-1)
    want_i = np.argsort(full, 1)[:, :4]
    d, i = nearest(q, g, k=4, block_elements=100)  # several blocks of one or two queries
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_allclose(d, np.take_along_axis(full, want_i, 1), rtol=1e-5)


@pytest.mark.parametrize("pruned", [True, False])
def test_greedy_coreset_equals_brute_force_greedy(pruned):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    assert greedy_coreset(x, 15, start=7, pruned=pruned).tolist() == brute_force_greedy(x, 15, 7)
    # clustered data, where the pruned loop skips most clusters, and the whole set (every element chosen)
    centres = rng.normal(size=(6, 3)) * 10
    y = (centres[rng.integers(6, size=300)] + rng.normal(size=(300, 3))).astype(np.float32)
    assert greedy_coreset(y, 80, start=0, pruned=pruned).tolist() == brute_force_greedy(y, 80, 0)
    whole = greedy_coreset(y, 300, start=11, pruned=pruned)
    assert sorted(whole.tolist()) == list(range(300)) and whole.tolist()[:60] == brute_force_greedy(y, 60, 11)
    # PatchCore's exact variant: its memory bank is the greedy coreset from its (seeded) start
    train = x.reshape(3, 20, 5)
    model = PatchCore(PatchCoreConfig(coreset_fraction=0.25, projection_dim=None)).fit_descriptors(train, (4, 5))
    start = int(model.coreset_indices_[0])
    assert model.coreset_indices_.tolist() == brute_force_greedy(x, 15, start)
    np.testing.assert_array_equal(model.memory_bank_, x[model.coreset_indices_])


def test_a_remembered_coreset_leaves_the_generator_as_a_fresh_run_would():
    x = np.random.default_rng(12).normal(size=(200, 16)).astype(np.float32)
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(1)
    first = greedy_coreset(x, 20, rng_a, projection_dim=4)
    coreset.clear_memo()
    fresh = greedy_coreset(x, 20, rng_b, projection_dim=4)
    again_rng = np.random.default_rng(1)
    again = greedy_coreset(x, 20, again_rng, projection_dim=4)  # from the memo
    assert first.tolist() == fresh.tolist() == again.tolist()
    assert again_rng.integers(1 << 30) == rng_b.integers(1 << 30)
    other = greedy_coreset(x + np.float32(1e-3) * (np.arange(16) == 3), 20, np.random.default_rng(1), projection_dim=4)
    assert len(other) == 20  # different data: computed, not looked up (no error, no stale answer shape)


def test_patchcore_and_pni_share_the_embedding_coreset():
    train, _ = nominal_set()
    pc = PatchCore(PatchCoreConfig(coreset_fraction=0.2, seed=4)).fit_descriptors(train, GRID)
    pni = PNI(PNIConfig(embedding_fraction=0.2, distribution_size=8, use_neighborhood=False, seed=4))
    np.testing.assert_array_equal(pni.fit_descriptors(train, GRID).embedding_coreset_, pc.memory_bank_)


def test_projected_greedy_is_the_greedy_of_the_projection():
    x = np.random.default_rng(4).normal(size=(50, 20)).astype(np.float32)
    got = greedy_coreset(x, 10, np.random.default_rng(8), projection_dim=6, start=0)
    projected = jl_projection(x, 6, np.random.default_rng(8))
    assert got.tolist() == brute_force_greedy(projected, 10, 0)
    assert got.tolist() != brute_force_greedy(x, 10, 0)  # the projection does change the choice here


# ---------------------------------------------------------------- PatchCore
def test_patchcore_reweighting_follows_the_paper_formula():
    bank = np.array([[0, 0], [1, 0], [0, 1], [5, 5], [9, 9]], np.float32)
    model = PatchCore(PatchCoreConfig(coreset_fraction=1.0, reweight_neighbors=3))
    model.fit_descriptors(bank[None], (1, 5))
    test = np.array([[[0.1, 0.0], [0.0, -2.0]]], np.float32)  # worst patch (0,-2): m* = (0,0), s* = 2
    np.testing.assert_allclose(model.patch_scores(test), [[0.1, 2.0]], rtol=1e-6)
    # N_3(m*) = {(0,0), (1,0), (0,1)}; distances from (0,-2): 2, sqrt(5), 3
    dist = np.array([2.0, np.sqrt(5.0), 3.0])
    want = (1 - np.exp(2.0) / np.exp(dist).sum()) * 2.0
    np.testing.assert_allclose(model.image_scores(test), [want], rtol=1e-5)
    np.testing.assert_allclose(model.image_scores(test, patch_scores=model.patch_scores(test)), [want], rtol=1e-5)
    assert PatchCore(PatchCoreConfig(reweight=False)).image_scores is None


# ---------------------------------------------------------------- SPADE
def test_spade_only_searches_the_k_nearest_training_images():
    rng = np.random.default_rng(5)
    near = rng.normal(size=(P, D)).astype(np.float32)
    train = np.stack([near + 0.01 * i for i in range(3)] + [near + 10.0])  # image 3 is far
    test = near[None].copy()
    test[0, 4] = near[4] + 10.0  # this patch exists only in the far training image
    one = Spade(SpadeConfig(k_images=3, squared=False)).fit_descriptors(train, GRID).patch_scores(test)
    assert one[0].argmax() == 4 and one[0, 4] > 5.0
    every = Spade(SpadeConfig(k_images=4, squared=False)).fit_descriptors(train, GRID).patch_scores(test)
    assert every[0, 4] < 0.1  # with all four images in the gallery its match is found


@pytest.mark.parametrize("kappa, squared", [(1, True), (3, False)])
def test_spade_grouped_search_equals_one_gallery_per_image(monkeypatch, kappa, squared):
    rng = np.random.default_rng(10)
    train = rng.normal(size=(30, P, D)).astype(np.float32) + rng.normal(size=(30, 1, D)).astype(np.float32) * 3
    test = rng.normal(size=(23, P, D)).astype(np.float32) + rng.normal(size=(23, 1, D)).astype(np.float32) * 3
    monkeypatch.setattr(spade, "GROUP_GALLERY_IMAGES", 9)  # several groups, each a union of several galleries
    model = Spade(SpadeConfig(k_images=4, kappa=kappa, squared=squared)).fit_descriptors(train, GRID)
    got = model.patch_scores(test)
    _, neighbours = model.retrieve(test)
    assert len(spade.gallery_groups(neighbours, np.arange(23), 9)) > 2
    for m in range(len(test)):
        gallery = train[neighbours[m]].reshape(-1, D).astype(np.float64)
        d = np.sort(np.linalg.norm(test[m][:, None] - gallery[None], axis=-1), 1)[:, :kappa]
        want = (d ** 2 if squared else d).mean(1)
        np.testing.assert_allclose(got[m], want, rtol=1e-4, atol=1e-5)


def test_spade_kappa_and_image_score_are_the_paper_means():
    train = np.zeros((3, 1, 2), np.float32)
    train[:, 0, 0] = [1.0, 2.0, 4.0]
    model = Spade(SpadeConfig(k_images=2, kappa=2)).fit_descriptors(train, (1, 1))
    test = np.zeros((1, 1, 2), np.float32)
    # nearest images by global descriptor: 1 and 2 (distances 1, 2); gallery = their single patches
    np.testing.assert_allclose(model.patch_scores(test), [[(1 + 4) / 2]])  # mean squared distance
    np.testing.assert_allclose(model.image_scores(test), [(1 + 4) / 2])
    assert Spade(SpadeConfig(image_score="heatmap")).image_scores is None
    plain = Spade(SpadeConfig(k_images=2, kappa=2, squared=False)).fit_descriptors(train, (1, 1))
    np.testing.assert_allclose(plain.patch_scores(test), [[1.5]])


# ---------------------------------------------------------------- PNI
def positional_set() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Background everywhere except feature ``a`` at position 0 of every image."""
    rng = np.random.default_rng(6)
    background, a = rng.normal(size=D).astype(np.float32), (rng.normal(size=D) + 4).astype(np.float32)
    train = background + 0.05 * rng.normal(size=(10, P, D)).astype(np.float32)
    train[:, 0] = a + 0.05 * rng.normal(size=(10, D)).astype(np.float32)
    return train, background, a


def test_pni_position_term_favours_where_a_feature_was_seen():
    train, background, a = positional_set()
    config = PNIConfig(distribution_size=4, use_neighborhood=False, position_window=1)
    model = PNI(config).fit_descriptors(train, GRID)
    cell_a = int(nearest(a[None], model.distribution_coreset_)[1][0, 0])
    assert model.position_prob_[0, cell_a] == pytest.approx(1.0)
    assert model.position_prob_[P - 1, cell_a] == 0.0
    test = np.tile(background, (2, P, 1))
    test[0, 0], test[1, P - 1] = a, a  # a where it was seen, and a in the opposite corner
    s = model.patch_scores(test)
    assert s[0, 0] < 0.2 and s[1, P - 1] > 2.0
    # without the conditioning both placements are equally normal (plain nearest-coreset distance)
    plain = PNI(PNIConfig(distribution_size=4, use_neighborhood=False, use_position=False)).fit_descriptors(train, GRID)
    ps = plain.patch_scores(test)
    assert ps[1, P - 1] == pytest.approx(ps[0, 0], abs=1e-6) and ps[1, P - 1] < 0.2


def test_pni_position_histogram_counts_the_window_around_each_position():
    train, _, a = positional_set()
    model = PNI(PNIConfig(distribution_size=4, use_neighborhood=False, position_window=3)).fit_descriptors(train, GRID)
    a_cells = np.linalg.norm(model.distribution_coreset_ - a, axis=1) < 1.0
    mass = model.position_prob_[:, a_cells].sum(1).reshape(GRID)
    # a sits at (0, 0): it is 1 of the 4 in-grid cells of (0, 0)'s window, 1 of 6 for (0, 1), 1 of 9 for (1, 1)
    np.testing.assert_allclose([mass[0, 0], mass[0, 1], mass[1, 1]], [1 / 4, 1 / 6, 1 / 9], rtol=1e-5)
    assert mass[2:, :].max() == 0.0 and mass[:, 2:].max() == 0.0


def test_pni_neighbourhood_term_flags_a_normal_patch_in_the_wrong_context():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=D).astype(np.float32), (rng.normal(size=D) + 4).astype(np.float32)
    kind = np.repeat([0, 1], 8)  # 8 all-a images, 8 all-b images
    train = np.where(kind[:, None, None] == 0, a, b) + 0.05 * rng.normal(size=(16, P, D)).astype(np.float32)
    config = PNIConfig(**{**SMALL_PNI, "distribution_size": 4, "epochs": 30, "lr_step": 100}, use_position=False)
    model = PNI(config).fit_descriptors(train, GRID)
    assert model.train_loss_[-1] < model.train_loss_[0]
    test = np.tile(a, (1, P, 1))
    test[0, 12] = b  # a b patch surrounded by a: b is normal, but not here
    s = model.patch_scores(test)
    assert s[0].argmax() == 12 and s[0, 12] > 2.0
    prob = model.conditional_probabilities(test)
    assert prob.shape == (1, P, 4) and np.allclose(prob.sum(-1), 1.0, atol=1e-5)
