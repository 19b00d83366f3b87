"""PNI (Bae et al., ICCV 2023) as a patch model: patch likelihoods conditioned on position and neighbours.

What is built (equation numbers of the paper):

- Coresets (3.2): the *embedding coreset* ``C_emb`` is the greedy coreset of all training patches
  (``embedding_fraction`` of them); the *distribution coreset* ``C_dist`` is the greedy coreset of
  ``C_emb`` with ``distribution_size`` elements. Each training patch and each ``C_emb`` element is
  assigned its nearest ``C_dist`` element.
- Position term ``p(c | x)``: for every grid position ``x``, the normalised histogram of the ``C_dist``
  assignments of the training patches within the ``position_window`` x ``position_window`` window
  around ``x`` (cells outside the grid count nothing).
- Neighbourhood term ``p(c | N_p(x))`` (eq. 4): an MLP (Linear-BatchNorm-ReLU blocks, ``layers``
  linear layers of width ``hidden``, softmax over ``C_dist``) fed with the concatenated descriptors of
  the ``neighborhood`` x ``neighborhood`` window around ``x`` *without* ``x`` itself (8 neighbours by
  default; cells outside the grid are zero vectors). Trained with cross-entropy to predict the centre
  patch's ``C_dist`` assignment (Adam, step decay x0.1 every ``lr_step`` epochs, seeded); at test time
  the softmax uses temperature ``T`` (paper: 2).
- Combination (eq. 5): ``p(c | Omega) = (p(c | x) + p(c | N_p(x))) / 2`` (either term alone when the
  other is switched off; uniform when both are).
- Likelihood given ``c`` (eqs. 6-8): ``exp(-lambda |Phi(x) - c_emb*|)``. Eq. 7 read literally
  (the ``C_emb`` element nearest to ``c``) would be ``c`` itself, since ``C_dist`` is drawn from
  ``C_emb``; it is implemented as the paper's purpose states (the large ``C_emb`` refines the small
  ``C_dist``): ``c_emb*`` is the ``C_emb`` element nearest to ``Phi(x)`` among those assigned to ``c``.
- Quantisation and score (eqs. 9-11, 1-2): ``p(c | Omega)`` becomes ``T(p, tau) = [p > tau]`` with
  ``tau = 1 / (2 |C_dist|)`` by default, so
  ``S(x) = -log max_c exp(-lambda |Phi(x) - c_emb*(c)|) [p(c | Omega) > tau]
  = lambda * min { |Phi(x) - e| : e in C_emb, p(assign(e) | Omega) > tau }``.
  Because ``tau < 1 / |C_dist|``, at least one ``c`` always passes, so the score is finite (with a
  user ``tau >= 1 / |C_dist|`` that could fail; the most probable ``c`` is then always kept).

Image score: the detector's heatmap maximum (PNI has no image-level reweighting).

Not built: the pixelwise refinement network (3.3, trained on synthetic defects) and the ensemble of
backbones. As in the paper: ``C_emb`` 1% of the patches, ``|C_dist| = 2048``, the position histogram
over a 9 x 9 window, T = 2, lambda = 1, tau = 1 / (2 |C_dist|), Adam at 1e-3 with step decay x0.1,
batch 2048. Scaled down for CPU use (paper in brackets): the MLP's neighbourhood 3 x 3 [9 x 9], 3 layers
of 256 [10 of 2048], 5 epochs [15] on at most 200,000 sampled training patches [all]. Every one is a
config field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import uniform_filter
from torch import nn

from streamad.batch.baselines.common import check, check_descriptors, check_device, check_grid
from streamad.batch.baselines.coreset import coreset_size, greedy_coreset
from streamad.batch.baselines.knn import as_tensor, exact_distances, nearest, squared_distance_blocks

IMAGES_PER_CHUNK = 64


def _odd(v: object, lo: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo and v % 2 == 1


@dataclass(frozen=True)
class PNIConfig:
    """PNI settings (see the module docstring for each term's role)."""

    embedding_fraction: float = 0.01
    distribution_size: int = 2048
    projection_dim: int | None = 128
    use_position: bool = True
    use_neighborhood: bool = True
    position_window: int = 9
    neighborhood: int = 3
    hidden: int = 256
    layers: int = 3
    epochs: int = 5
    lr: float = 1e-3
    lr_step: int = 3
    batch_size: int = 2048
    max_train_patches: int | None = 200_000
    temperature: float = 2.0
    lam: float = 1.0
    tau: float | None = None
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        c = "PNIConfig"
        check(c, "embedding_fraction", isinstance(self.embedding_fraction, (int, float))
              and 0.0 < self.embedding_fraction <= 1.0, self.embedding_fraction, "in (0, 1]")
        for name in ("distribution_size", "hidden", "epochs", "lr_step", "batch_size"):
            v = getattr(self, name)
            check(c, name, isinstance(v, int) and not isinstance(v, bool) and v >= 1, v, "an int >= 1")
        check(c, "layers", isinstance(self.layers, int) and self.layers >= 2, self.layers, "an int >= 2")
        check(c, "projection_dim", self.projection_dim is None
              or (isinstance(self.projection_dim, int) and self.projection_dim >= 1), self.projection_dim,
              "None (exact) or an int >= 1")
        check(c, "use_position", isinstance(self.use_position, bool), self.use_position, "a bool")
        check(c, "use_neighborhood", isinstance(self.use_neighborhood, bool), self.use_neighborhood, "a bool")
        check(c, "position_window", _odd(self.position_window, 1), self.position_window, "an odd int >= 1")
        check(c, "neighborhood", _odd(self.neighborhood, 3), self.neighborhood, "an odd int >= 3")
        check(c, "max_train_patches", self.max_train_patches is None
              or (isinstance(self.max_train_patches, int) and self.max_train_patches >= 1), self.max_train_patches,
              "None (all) or an int >= 1")
        for name in ("lr", "temperature", "lam"):
            v = getattr(self, name)
            check(c, name, isinstance(v, (int, float)) and math.isfinite(v) and v > 0, v, "a number > 0")
        check(c, "tau", self.tau is None or (isinstance(self.tau, (int, float)) and 0.0 <= self.tau < 1.0),
              self.tau, "None (1 / (2 |C_dist|)) or in [0, 1)")
        check(c, "seed", isinstance(self.seed, int), self.seed, "an int")
        check_device(c, self.device)


class _Neighbours:
    """Gathers, for patches of images on a grid, the concatenated descriptors of their window minus the centre."""

    def __init__(self, descriptors: np.ndarray, grid: tuple[int, int], window: int, device: str) -> None:
        n, _, d = descriptors.shape
        (h, w), r = grid, window // 2
        self.hp, self.wp, self.r, self.w, self.p = h + 2 * r, w + 2 * r, r, w, h * w
        padded = np.zeros((n, self.hp, self.wp, d), np.float32)
        padded[:, r:r + h, r:r + w] = descriptors.reshape(n, h, w, d)
        self.flat = torch.from_numpy(padded.reshape(-1, d)).to(device)
        offsets = [dy * self.wp + dx for dy in range(-r, r + 1) for dx in range(-r, r + 1) if (dy, dx) != (0, 0)]
        self.offsets = torch.tensor(offsets, dtype=torch.long, device=self.flat.device)
        self.width = len(offsets) * d

    def __call__(self, rows: np.ndarray) -> torch.Tensor:
        """Inputs (B, K*d) for flat patch indices ``rows`` = image * P + position."""
        image, pos = np.divmod(np.asarray(rows, np.int64), self.p)
        i, j = np.divmod(pos, self.w)
        centre = image * (self.hp * self.wp) + (i + self.r) * self.wp + (j + self.r)
        idx = torch.from_numpy(centre).to(self.flat.device)[:, None] + self.offsets[None, :]
        return self.flat[idx].reshape(len(rows), self.width)


def _mlp(inputs: int, hidden: int, layers: int, outputs: int) -> nn.Sequential:
    blocks: list[nn.Module] = []
    width = inputs
    for _ in range(layers - 1):
        blocks += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
        width = hidden
    blocks.append(nn.Linear(width, outputs))
    return nn.Sequential(*blocks)


class PNI:
    """Position- and neighbourhood-conditioned nearest-coreset scores (patch score = -log p, eq. 11)."""

    def __init__(self, config: PNIConfig | None = None) -> None:
        self.config = config or PNIConfig()
        self.embedding_coreset_: np.ndarray | None = None
        self.distribution_coreset_: np.ndarray | None = None
        self.emb_to_dist_: np.ndarray | None = None
        self.position_prob_: np.ndarray | None = None
        self.mlp_: nn.Sequential | None = None
        self.tau_: float | None = None
        self.grid_: tuple[int, int] | None = None
        self.train_loss_: list[float] = []

    # ---------------------------------------------------------------- fit
    def fit_descriptors(self, descriptors: np.ndarray, grid: tuple[int, int]) -> "PNI":
        cfg = self.config
        x = check_descriptors(descriptors)
        self.grid_ = check_grid(x, grid)
        rng = np.random.default_rng(cfg.seed)
        flat = x.reshape(-1, x.shape[2])

        emb_idx = greedy_coreset(flat, coreset_size(len(flat), cfg.embedding_fraction), rng, cfg.projection_dim,
                                 device=cfg.device)
        emb = np.ascontiguousarray(flat[emb_idx])
        dist_idx = greedy_coreset(emb, min(cfg.distribution_size, len(emb)), rng, cfg.projection_dim,
                                  device=cfg.device)
        self.embedding_coreset_ = emb
        self.distribution_coreset_ = np.ascontiguousarray(emb[dist_idx])
        n_dist = len(dist_idx)
        self.emb_to_dist_ = np.empty(len(emb), np.int64)
        self.emb_to_dist_[:] = nearest(emb, self.distribution_coreset_, 1, cfg.device)[1][:, 0]
        self.emb_to_dist_[dist_idx] = np.arange(n_dist)  # each C_dist element is its own cell (ties aside)
        self.tau_ = float(cfg.tau) if cfg.tau is not None else 1.0 / (2 * n_dist)

        assign = nearest(flat, self.distribution_coreset_, 1, cfg.device)[1][:, 0]  # (N*P,)
        self.position_prob_ = self._position_histogram(assign, len(x), n_dist) if cfg.use_position else None
        self.mlp_ = self._train_mlp(x, assign, n_dist, rng) if cfg.use_neighborhood else None
        return self

    def _position_histogram(self, assign: np.ndarray, n_images: int, n_dist: int) -> np.ndarray:
        """p(c | x): (P, |C_dist|) rows summing to 1."""
        h, w = self.grid_  # type: ignore[misc]
        pos = np.tile(np.arange(h * w), n_images)
        counts = np.bincount(pos * n_dist + assign, minlength=h * w * n_dist).astype(np.float64)
        counts = counts.reshape(h, w, n_dist)
        win = self.config.position_window
        if win > 1:  # window sums (zero outside the grid); the constant factor cancels below
            counts = uniform_filter(counts, size=(win, win, 1), mode="constant", cval=0.0)
        prob = counts.reshape(h * w, n_dist)
        return (prob / prob.sum(1, keepdims=True)).astype(np.float32)

    def _train_mlp(self, x: np.ndarray, assign: np.ndarray, n_dist: int, rng: np.random.Generator) -> nn.Sequential:
        cfg = self.config
        neighbours = _Neighbours(x, self.grid_, cfg.neighborhood, cfg.device)  # type: ignore[arg-type]
        rows = np.arange(len(assign))
        if cfg.max_train_patches is not None and len(rows) > cfg.max_train_patches:
            rows = np.sort(rng.choice(len(rows), cfg.max_train_patches, replace=False))
        target = torch.from_numpy(assign).to(neighbours.flat.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = _mlp(neighbours.width, cfg.hidden, cfg.layers, n_dist).to(neighbours.flat.device)
        optimiser = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        schedule = torch.optim.lr_scheduler.StepLR(optimiser, step_size=cfg.lr_step, gamma=0.1)
        loss_fn = nn.CrossEntropyLoss()
        self.train_loss_ = []
        model.train()
        for _ in range(cfg.epochs):
            order = rows[rng.permutation(len(rows))]
            total = 0.0
            for start in range(0, len(order), cfg.batch_size):
                batch = order[start:start + cfg.batch_size]
                if len(batch) < 2 and len(order) > 1:  # BatchNorm needs two samples; drop a lone leftover
                    continue
                loss = loss_fn(model(neighbours(batch)), target[torch.from_numpy(batch).to(target.device)])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total += loss.item() * len(batch)
            schedule.step()
            self.train_loss_.append(total / len(order))
        return model.eval()

    # ---------------------------------------------------------------- score
    def _check_fitted(self, descriptors: np.ndarray) -> np.ndarray:
        if self.embedding_coreset_ is None:
            raise RuntimeError("PNI is not fitted: call fit_descriptors first")
        x = check_descriptors(descriptors, self.embedding_coreset_.shape[1])
        if x.shape[1] != self.grid_[0] * self.grid_[1]:  # type: ignore[index]
            raise ValueError(f"descriptors have P={x.shape[1]} patches but the model was fitted on grid {self.grid_}")
        return x

    def _probabilities(self, rows: np.ndarray, neighbours: _Neighbours | None) -> torch.Tensor:
        """p(c | Omega) (B, |C_dist|) for flat patch indices ``rows`` (eq. 5)."""
        terms = []
        if self.position_prob_ is not None:
            terms.append(torch.from_numpy(self.position_prob_[rows % len(self.position_prob_)]))
        if self.mlp_ is not None and neighbours is not None:
            with torch.no_grad():
                logits = self.mlp_(neighbours(rows))
            terms.append(torch.softmax(logits / self.config.temperature, dim=1).cpu())
        if not terms:
            n = len(self.distribution_coreset_)  # type: ignore[arg-type]
            return torch.full((len(rows), n), 1.0 / n)
        return sum(terms) / len(terms)  # type: ignore[return-value]

    def conditional_probabilities(self, descriptors: np.ndarray) -> np.ndarray:
        """p(c | Omega) for every test patch: (M, P, |C_dist|) float32 (for inspection; memory M*P*|C|)."""
        x = self._check_fitted(descriptors)
        prob = self._probabilities(np.arange(x.shape[0] * x.shape[1]), self._neighbours(x))
        return prob.numpy().reshape(x.shape[0], x.shape[1], -1)

    def _neighbours(self, x: np.ndarray) -> _Neighbours | None:
        if self.mlp_ is None:
            return None
        return _Neighbours(x, self.grid_, self.config.neighborhood, self.config.device)  # type: ignore[arg-type]

    def patch_scores(self, descriptors: np.ndarray) -> np.ndarray:
        x = self._check_fitted(descriptors)
        # a few images at a time: the neighbour gatherer holds a zero-padded copy of its images
        return np.concatenate([self._score_images(x[i:i + IMAGES_PER_CHUNK])
                               for i in range(0, len(x), IMAGES_PER_CHUNK)])

    def _score_images(self, x: np.ndarray) -> np.ndarray:
        cfg = self.config
        emb = as_tensor(self.embedding_coreset_, cfg.device)  # type: ignore[arg-type]
        cell = torch.from_numpy(self.emb_to_dist_).to(emb.device)  # type: ignore[arg-type]
        queries = as_tensor(x.reshape(-1, x.shape[2]), cfg.device)
        neighbours = self._neighbours(x)
        out = np.empty(len(queries), np.float32)
        for start, sq in squared_distance_blocks(queries, emb):
            rows = np.arange(start, start + len(sq))
            prob = self._probabilities(rows, neighbours)
            allowed = (prob > self.tau_) | (prob == prob.max(1, keepdim=True).values)  # eq. 10; never empty
            allowed = allowed.to(emb.device)
            sq.masked_fill_(~allowed[:, cell], float("inf"))  # C_emb elements whose c is not normal here
            idx = sq.argmin(1, keepdim=True)
            d = exact_distances(queries[start:start + len(sq)], emb, idx)[:, 0]
            out[start:start + len(sq)] = (cfg.lam * d).cpu().numpy()  # -log of eq. 11
        return out.reshape(x.shape[:2])
