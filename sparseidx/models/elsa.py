"""ELSA and Compressed ELSA (Vancura et al.): item embeddings trained by gradient descent, in numpy.

ELSA: A (items x dims) with L2-normalised rows A_hat; a user's prediction is
x A_hat A_hat^T - x (zero diagonal in effect); the loss is the squared distance
between the row-normalised prediction and the row-normalised input, averaged
over the users of a batch; NAdam; Xavier-uniform init (``_elsa_training``).

Compressed ELSA: the same model with every row of A kept to its top-k |values|,
k going from dims down to ``nnz_per_item`` in stages; the result is sparse:
E = V = A_hat, priors 1. Two recipes:

- ``reference``, the authors' code (zombak79/compressed_elsa, docs/elsa-reference.md):
  stage i keeps int(dims * 2^-(1 + i/epochs)) non-zeros for one epoch, halving every
  ``epochs`` stages down to the target, then ``epochs`` epochs at the target; every stage
  restarts from the initial weights under its mask with a fresh Keras-style Nadam; the
  residual is clipped to [0, 6] and the loss averaged over the output columns
  (``max_output``: the batch's items plus sampled negatives).
- ``short``: ``epochs`` epochs in all, one pruning stage per epoch on ``schedule``, one
  optimiser throughout, optionally rewinding; no clipping, every item an output column.
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp

from ..data import popularity
from ..errors import DataError
from ..factors import DenseFactors, Factors
from ._elsa_training import Recipe, train
from .base import SEED, Model, dims_param, fit_function
from .params import AT_LEAST_1, POSITIVE, OneOf, Param, ParamError, Range

SCHEDULES = ("exponential", "linear", "step")
RECIPES = ("short", "reference")
MAX_OUTPUT = 10**7  # negatives are drawn one by one: 80 MB of draws per batch at most


def nnz_schedule(dims: int, target: int, epochs: int, schedule: str) -> list[int]:
    """Non-zeros per row kept after each epoch: from dims down to ``target``, reached by the last epoch.

    ``schedule`` is one of SCHEDULES (Compressed ELSA's declaration refuses any other).
    """
    steps = max(epochs - 1, 1)
    out = []
    for e in range(1, epochs + 1):
        frac = min(e / steps, 1.0)
        if schedule == "exponential":
            k = dims * (target / dims) ** frac
        elif schedule == "linear":
            k = dims + (target - dims) * frac
        else:  # step: halve each epoch until the target
            k = dims / 2 ** e
        out.append(int(max(target, round(k))))
    out[-1] = target
    return out


def reference_schedule(dims: int, target: int, epochs: int) -> list[int]:
    """Non-zeros per row of the reference recipe's one-epoch stages: dims, then int(dims * 2^-(1 + i/epochs))
    for i = 1 .. epochs * (log2(dims/target) - 1) - 1, never below ``target`` (4096 -> 16: 70 stages)."""
    stages = max(1, round(epochs * (math.log2(dims / target) - 1)))
    return [dims] + [max(target, int(dims * 2.0 ** -(1 + i / epochs))) for i in range(1, stages)]


def recipe(name: str, dims: int, target: int, epochs: int, schedule: str = "exponential", rewind: bool = False,
           max_output: int = 0) -> Recipe:
    """The training recipe ``name`` (one of RECIPES) from ``dims`` down to ``target`` non-zeros per row."""
    if name == "reference":
        stages = [(k, 1) for k in reference_schedule(dims, target, epochs)] + [(target, epochs)]
        return Recipe(tuple(stages), rewind=True, restart=True, momentum_decay=1.0, eps=1e-7, clip=6.0,
                      max_output=max_output, column_mean=True)
    ks = [dims] + nnz_schedule(dims, target, epochs, schedule)[:-1]
    ks[-1] = target
    return Recipe(tuple((k, 1) for k in ks), rewind=rewind, max_output=max_output)


class _ElsaBase(Model):
    """The training parameters ELSA and Compressed ELSA share."""

    training = (
        Param("epochs", int, 10, "training epochs (celsa's reference recipe: stages per halving and epochs "
                                 "at the target)", AT_LEAST_1),
        Param("batch_size", int, 1024, "users per batch", AT_LEAST_1),
        Param("lr", float, 0.1, "learning rate", POSITIVE),
    )

    def _train(self, X, how: Recipe):
        if X.nnz == 0:
            raise DataError("no interactions to train on")
        return train(sp.csr_matrix(X, dtype=np.float32), self.dims, how, self.batch_size, self.lr, self.seed)


class Elsa(_ElsaBase):
    """Dense ELSA: E = V = A_hat (served by FAISS), priors 1."""

    name = "elsa"
    dense = True
    params = (dims_param(256), *_ElsaBase.training, SEED)

    def _fit(self, X, item_ids) -> DenseFactors:
        t0 = time.perf_counter()
        A_hat, losses = self._train(X, Recipe(((self.dims, self.epochs),)))
        params = {**self.get_params(), "losses": losses, "fit_seconds": round(time.perf_counter() - t0, 3)}
        return DenseFactors(encoder=A_hat, embeddings=A_hat, priors=np.ones(X.shape[1], dtype=np.float32),
                            item_ids=item_ids, model=self.name, params=params, popularity=popularity(X))


class CompressedElsa(_ElsaBase):
    """Compressed ELSA: sparse A_hat with at most ``nnz_per_item`` non-zeros per row; E = V = A_hat, priors 1."""

    name = "celsa"
    params = (
        dims_param(1024),
        Param("nnz_per_item", int, 16, "non-zeros per item after compression (at most dims)", AT_LEAST_1),
        *_ElsaBase.training,
        Param("recipe", str, "short", "how training compresses: short (epochs in all) or reference (the "
                                      "authors' code: one-epoch stages, rewinding, ReLU6)", OneOf(RECIPES)),
        Param("schedule", str, "exponential", "short recipe: how non-zeros per item decrease",
              OneOf(SCHEDULES)),
        Param("rewind", bool, False, "short recipe: rewind surviving weights to their initial values each stage "
                                     "(the reference recipe always does)"),
        Param("max_output", int, 0, "output columns per batch: the batch's items plus negatives sampled with "
                                    "replacement (0: every item)", Range(0, MAX_OUTPUT)),
        SEED,
    )

    def _check_together(self) -> None:
        if self.nnz_per_item > self.dims:
            raise ParamError("nnz_per_item", f"nnz_per_item must be between 1 and dims ({self.dims}), "
                                             f"got {self.nnz_per_item}")

    def _fit(self, X, item_ids) -> Factors:
        how = recipe(self.recipe, self.dims, self.nnz_per_item, self.epochs, self.schedule, self.rewind,
                     self.max_output)
        t0 = time.perf_counter()
        A_hat, losses = self._train(X, how)
        A_hat = sp.csr_matrix(A_hat, dtype=np.float32)
        params = {**self.get_params(), "rewind": how.rewind, "nnz_plan": [k for k, _ in how.stages],
                  "losses": losses, "fit_seconds": round(time.perf_counter() - t0, 3)}
        return Factors(encoder=A_hat, embeddings=A_hat, priors=np.ones(X.shape[1], dtype=np.float32),
                       item_ids=item_ids, model=self.name, params=params, popularity=popularity(X))


fit_elsa = fit_function(Elsa, "fit_elsa")
fit_compressed_elsa = fit_function(CompressedElsa, "fit_compressed_elsa")
