"""ELSA and Compressed ELSA (Vancura et al.): item embeddings trained by gradient descent, in numpy.

ELSA: A (items x dims) with L2-normalised rows A_hat; a user's prediction is
x A_hat A_hat^T - x (zero diagonal in effect); the loss is the squared distance
between the row-normalised prediction and the row-normalised input, averaged
over the users of a batch; NAdam as in torch.optim.NAdam; Xavier-uniform init.
Gradients are analytic (checked against finite differences in the tests).

Compressed ELSA: the same model with every row of A kept to its top-k |values|;
k goes from dims down to ``nnz_per_item`` on a schedule (one stage per epoch, the
last epochs at the target), optionally rewinding surviving weights to their
initial values at each stage; the result is sparse: E = V = A_hat, priors 1.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from ..data import popularity
from ..errors import DataError
from ..factors import DenseFactors, Factors
from ..progress import counter, log
from .base import SEED, Model, dims_param, fit_function
from .params import AT_LEAST_1, POSITIVE, OneOf, Param, ParamError

SCHEDULES = ("exponential", "linear", "step")


class NAdam:
    """torch.optim.NAdam's update (betas 0.9/0.999, eps 1e-8, momentum decay 4e-3), for one array."""

    def __init__(self, shape, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, momentum_decay: float = 4e-3):
        self.lr, self.beta1, self.beta2, self.eps, self.psi = lr, betas[0], betas[1], eps, momentum_decay
        self.m = np.zeros(shape, dtype=np.float32)
        self.v = np.zeros(shape, dtype=np.float32)
        self.t = 0
        self.mu_product = 1.0

    def step(self, param: np.ndarray, grad: np.ndarray) -> None:
        """Update ``param`` in place from ``grad``."""
        self.t += 1
        t, b1, b2 = self.t, self.beta1, self.beta2
        mu = b1 * (1.0 - 0.5 * 0.96 ** (t * self.psi))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * self.psi))
        self.mu_product *= mu
        self.m *= b1
        self.m += (1 - b1) * grad
        self.v *= b2
        self.v += (1 - b2) * grad * grad
        denom = np.sqrt(self.v / (1 - b2 ** t)) + self.eps
        param -= (self.lr * (1 - mu) / (1 - self.mu_product)) * grad / denom
        param -= (self.lr * mu_next / (1 - self.mu_product * mu_next)) * self.m / denom


def normalise_rows(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A with unit-norm rows, the row norms); all-zero rows stay zero."""
    norms = np.linalg.norm(A, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    return A / safe[:, None], safe


def loss_and_gradient(A: np.ndarray, Xb: sp.csr_matrix) -> tuple[float, np.ndarray]:
    """ELSA's batch loss and its gradient with respect to A (before row normalisation)."""
    A_hat, norms = normalise_rows(A)
    Z = np.asarray(Xb @ A_hat)  # users x dims
    X = Xb.toarray().astype(A.dtype)
    Y = Z @ A_hat.T - X
    y_norm = np.maximum(np.linalg.norm(Y, axis=1, keepdims=True), 1e-12)
    x_norm = np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    Y_hat, T = Y / y_norm, X / x_norm
    b = X.shape[0]
    value = float(np.sum((Y_hat - T) ** 2) / b)
    G = 2.0 * (Y_hat * np.sum(Y_hat * T, axis=1, keepdims=True) - T) / y_norm / b  # dL/dY
    grad_hat = np.asarray(Xb.T @ (G @ A_hat)) + G.T @ Z  # dL/dA_hat
    grad = (grad_hat - A_hat * np.sum(A_hat * grad_hat, axis=1, keepdims=True)) / norms[:, None]
    return value, grad.astype(A.dtype)


def top_k_rows(A: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the k largest |values| of every row of A."""
    if k >= A.shape[1]:
        return np.ones(A.shape, dtype=bool)
    idx = np.argpartition(-np.abs(A), k - 1, axis=1)[:, :k]
    mask = np.zeros(A.shape, dtype=bool)
    np.put_along_axis(mask, idx, True, axis=1)
    return mask


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


def _train(X, dims, epochs, batch_size, lr, seed, masks=None, rewind=False):
    """The shared training loop; ``masks`` maps epoch -> nnz per row kept after it (Compressed ELSA)."""
    n_items = X.shape[1]
    rng = np.random.default_rng(seed)
    bound = np.sqrt(6.0 / (n_items + dims))
    A = rng.uniform(-bound, bound, size=(n_items, dims)).astype(np.float32)
    initial = A.copy() if rewind else None
    keep = np.ones(A.shape, dtype=bool)
    opt = NAdam(A.shape, lr)
    users = np.flatnonzero(np.diff(X.indptr) > 0)
    losses = []
    for epoch in range(epochs):
        order = rng.permutation(users)
        total = 0.0
        with counter(len(order), f"epoch {epoch + 1}/{epochs}") as progress:
            for s in range(0, len(order), batch_size):
                rows = order[s: s + batch_size]
                value, grad = loss_and_gradient(A, X[rows])
                if masks is not None:
                    grad *= keep
                opt.step(A, grad)
                if masks is not None:
                    A *= keep
                total += value * len(rows)
                progress.update(len(rows))
        losses.append(total / max(len(users), 1))
        log.info("epoch %d: loss %.5f", epoch + 1, losses[-1])
        if masks is not None and masks[epoch] < int(keep.sum(axis=1).max()):
            keep = top_k_rows(np.where(keep, A, 0.0), masks[epoch])
            A = np.where(keep, initial if rewind else A, 0.0).astype(np.float32)
            log.info("kept %d non-zeros per item", masks[epoch])
    return A, losses


class _ElsaBase(Model):
    """The training parameters ELSA and Compressed ELSA share."""

    training = (
        Param("epochs", int, 10, "training epochs", AT_LEAST_1),
        Param("batch_size", int, 1024, "users per batch", AT_LEAST_1),
        Param("lr", float, 0.1, "learning rate", POSITIVE),
    )

    def _train(self, X, masks=None, rewind=False) -> tuple[np.ndarray, list[float]]:
        if X.nnz == 0:
            raise DataError("no interactions to train on")
        A, losses = _train(sp.csr_matrix(X, dtype=np.float32), self.dims, self.epochs, self.batch_size, self.lr,
                           self.seed, masks=masks, rewind=rewind)
        return normalise_rows(A)[0], losses


class Elsa(_ElsaBase):
    """Dense ELSA: E = V = A_hat (served by FAISS), priors 1."""

    name = "elsa"
    dense = True
    params = (dims_param(256), *_ElsaBase.training, SEED)

    def _fit(self, X, item_ids) -> DenseFactors:
        t0 = time.perf_counter()
        A_hat, losses = self._train(X)
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
        Param("schedule", str, "exponential", "how non-zeros per item decrease during training", OneOf(SCHEDULES)),
        Param("rewind", bool, False, "rewind surviving weights to their initial values each stage"),
        SEED,
    )

    def _check_together(self) -> None:
        if self.nnz_per_item > self.dims:
            raise ParamError("nnz_per_item", f"nnz_per_item must be between 1 and dims ({self.dims}), "
                                             f"got {self.nnz_per_item}")

    def _fit(self, X, item_ids) -> Factors:
        plan = nnz_schedule(self.dims, self.nnz_per_item, self.epochs, self.schedule)
        t0 = time.perf_counter()
        A_hat, losses = self._train(X, masks=plan, rewind=self.rewind)
        params = {**self.get_params(), "rewind": bool(self.rewind), "nnz_plan": plan, "losses": losses,
                  "fit_seconds": round(time.perf_counter() - t0, 3)}
        return Factors(encoder=sp.csr_matrix(A_hat), embeddings=sp.csr_matrix(A_hat),
                       priors=np.ones(X.shape[1], dtype=np.float32), item_ids=item_ids, model=self.name,
                       params=params, popularity=popularity(X))


fit_elsa = fit_function(Elsa, "fit_elsa")
fit_compressed_elsa = fit_function(CompressedElsa, "fit_compressed_elsa")
