"""How ELSA and Compressed ELSA are trained: the loss and its gradient, NAdam, and the staged loop.

The loss of a batch X_b (users x items) with item rows A (row-normalised: A_hat) is the
squared distance between the row-normalised residual Y = X_b A_hat A_hat^T - X_b and the
row-normalised X_b, summed over the output columns and averaged over users. Options
follow Compressed ELSA's reference code: the residual clipped to [0, clip] (its ReLU6),
output columns limited to the batch's items plus negatives sampled with replacement
(``max_output``; a sampled item counts as often as it was drawn), and the loss averaged
over those columns (Keras's MSE). Gradients are analytic.

A stage keeps k non-zeros per item row (the k largest |values| of the rows the previous
stage trained). Rows are dense arrays while k > dims / SPARSE_BELOW and k non-zeros each
(ELL: column and value arrays, items x k) from there on, where every product costs k
rather than dims per item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..progress import counter, log
from ._elsa_kernels import (add_sparse_times_dense, ell_column_scores, ell_dim_sums, ell_gradient, ell_user_rows,
                            nadam_update, normalise_rows_into, project_rows, residual_gradient, residual_sums)

SPARSE_BELOW = 8
NO_MASK = np.zeros(0, dtype=np.uint8)


class NAdam:
    """NAdam for one array: torch.optim.NAdam with the defaults (momentum_decay 4e-3, eps 1e-8);
    Keras's Nadam with momentum_decay=1, eps=1e-7 (its momentum schedule is 0.96**t, not 0.96**(0.004 t))."""

    def __init__(self, shape, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, momentum_decay: float = 4e-3):
        self.lr, self.beta1, self.beta2, self.eps, self.psi = lr, betas[0], betas[1], eps, momentum_decay
        self.m = np.zeros(shape, dtype=np.float32)
        self.v = np.zeros(shape, dtype=np.float32)
        self.t = 0
        self.mu_product = 1.0

    def step(self, param: np.ndarray, grad: np.ndarray, keep: np.ndarray | None = None) -> None:
        """Update ``param`` in place from ``grad``; where ``keep`` (bool or uint8, param's shape) is false the
        gradient is taken as 0 and param stays 0."""
        self.t += 1
        t, b1, b2 = self.t, self.beta1, self.beta2
        mu = b1 * (1.0 - 0.5 * 0.96 ** (t * self.psi))
        mu_next = b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * self.psi))
        self.mu_product *= mu
        step_g = self.lr * (1 - mu) / (1 - self.mu_product)
        step_m = self.lr * mu_next / (1 - self.mu_product * mu_next)
        mask = NO_MASK if keep is None else keep.view(np.uint8).ravel()
        nadam_update(param.reshape(-1), np.ascontiguousarray(grad, dtype=param.dtype).reshape(-1),
                     self.m.reshape(-1), self.v.reshape(-1), mask, b1, b2, self.eps, step_g, step_m, 1 - b2 ** t)


def normalise_rows(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A with unit-norm rows, the row norms); all-zero rows stay zero (norm reported as 1)."""
    out = np.empty_like(A)
    norms = np.empty(A.shape[0], dtype=A.dtype)
    normalise_rows_into(np.ascontiguousarray(A), out, norms)
    return out, norms


def top_k_rows(A: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask of the k largest |values| of every row of A."""
    if k >= A.shape[1]:
        return np.ones(A.shape, dtype=bool)
    mask = np.zeros(A.shape, dtype=bool)
    np.put_along_axis(mask, _top_k_columns(A, k), True, axis=1)
    return mask


def _top_k_columns(A: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest |values| of every row, ascending within the row."""
    return np.sort(np.argpartition(-np.abs(A), k - 1, axis=1)[:, :k], axis=1)


def output_columns(Xb: sp.csr_matrix, n_items: int, max_output: int, rng: np.random.Generator):
    """(items, weights) a batch is scored on: its items, plus negatives drawn uniformly with replacement from
    the items no user of the batch touched, max_output in all and at least one; (None, None): every item."""
    if max_output <= 0:
        return None, None
    positives = np.unique(Xb.indices)
    untouched = np.setdiff1d(np.arange(n_items), positives, assume_unique=True)
    ones = np.ones(positives.size, dtype=np.float32)
    if untouched.size == 0:
        return positives, ones
    drawn = rng.choice(untouched, max(max_output - positives.size, 1))
    negatives, counts = np.unique(drawn, return_counts=True)
    return np.concatenate([positives, negatives]), np.concatenate([ones, counts.astype(np.float32)])


def residual_loss(yt: np.ndarray, xt: np.ndarray, weights=None, clip: float = 0.0, column_mean: bool = False):
    """(loss, dL/dY^T) for the residual Y^T and the batch X^T, both columns x users; ``yt`` becomes the gradient."""
    w = np.ones(yt.shape[0], dtype=yt.dtype) if weights is None else weights.astype(yt.dtype)
    scale = yt.shape[1] * (float(w.sum()) if column_mean else 1.0)
    yy, xx, yx = residual_sums(yt, xt, w, clip)
    y_norm, x_norm = np.maximum(np.sqrt(yy), 1e-12), np.maximum(np.sqrt(xx), 1e-12)
    value = float(np.sum(yy / y_norm**2 - 2 * yx / (y_norm * x_norm) + xx / x_norm**2) / scale)
    s = (2.0 / scale) * (yy / y_norm**2 - yx / (y_norm * x_norm))  # sum_r dL/dY_hat * Y_hat, per user
    residual_gradient(yt, xt, w, y_norm.astype(yt.dtype), x_norm.astype(yt.dtype), s.astype(yt.dtype),
                      2.0 / scale, clip)
    return value, yt


def _batch_columns(Xb: sp.csr_matrix, columns, dtype) -> tuple[sp.csr_matrix, np.ndarray]:
    """(X_b^T as CSR items x users, X_b^T's rows ``columns`` (all if None) as a dense array)."""
    xt = sp.csr_matrix(Xb.T, dtype=dtype)
    return xt, (xt if columns is None else xt[columns]).toarray()


def loss_and_gradient(A: np.ndarray, Xb: sp.csr_matrix, columns=None, weights=None, clip: float = 0.0,
                      column_mean: bool = False) -> tuple[float, np.ndarray]:
    """The batch loss and its gradient with respect to dense rows A (before normalisation);
    ``columns``/``weights`` as from ``output_columns``."""
    A_hat, norms = normalise_rows(A)
    Xb = sp.csr_matrix(Xb, dtype=A.dtype)
    Z = np.asarray(Xb @ A_hat)  # users x dims
    A_c = A_hat if columns is None else A_hat[columns]
    xt_all, xt = _batch_columns(Xb, columns, A.dtype)
    yt = A_c @ Z.T
    yt -= xt
    value, gt = residual_loss(yt, xt, weights, clip, column_mean)
    if columns is None:
        grad = gt @ Z
    else:
        grad = np.zeros_like(A)
        grad[columns] = gt @ Z
    add_sparse_times_dense(grad, xt_all.indptr, xt_all.indices, xt_all.data, np.ascontiguousarray(gt.T @ A_c))
    project_rows(grad, A_hat, norms)
    return value, grad


def entries_by_dimension(cols: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """(pointer, flat ELL positions) grouping the entries of ``cols`` by dimension."""
    flat = cols.ravel()
    ptr = np.zeros(dims + 1, dtype=np.int64)
    np.cumsum(np.bincount(flat, minlength=dims), out=ptr[1:])
    return ptr, np.argsort(flat, kind="stable").astype(np.int64)


def ell_loss_and_gradient(cols: np.ndarray, vals: np.ndarray, Xb: sp.csr_matrix, dims: int, columns=None,
                          weights=None, clip: float = 0.0, column_mean: bool = False, by_dimension=None):
    """``loss_and_gradient`` for rows of k non-zeros each (column indices ``cols``, values ``vals``, items x k);
    the gradient is with respect to ``vals``. ``by_dimension``: ``entries_by_dimension(cols, dims)`` if known."""
    n = cols.shape[0]
    v_hat, norms = normalise_rows(vals)
    Xb = sp.csr_matrix(Xb, dtype=np.float32)
    zt = np.ascontiguousarray(ell_user_rows(Xb.indptr, Xb.indices, Xb.data, cols, v_hat, dims).T)
    items = np.arange(n, dtype=np.int64) if columns is None else np.asarray(columns, dtype=np.int64)
    xt_all, xt = _batch_columns(Xb, columns, np.float32)
    yt = ell_column_scores(items, cols, v_hat, zt)
    yt -= xt
    value, gt = residual_loss(yt, xt, weights, clip, column_mean)
    column_of = np.full(n, -1, dtype=np.int64)
    column_of[items] = np.arange(items.size)
    ptr, entries = by_dimension if by_dimension is not None else entries_by_dimension(cols, dims)
    w = np.ascontiguousarray(ell_dim_sums(ptr, entries, column_of, v_hat, gt, dims).T)
    grad = ell_gradient(xt_all.indptr, xt_all.indices, xt_all.data, w, gt, zt, column_of, cols, v_hat, norms)
    return value, grad


@dataclass(frozen=True)
class Recipe:
    """How the rows are trained: ``stages`` of (non-zeros per row, epochs); ``rewind``: a pruned row restarts
    from its initial values; ``restart``: a fresh optimiser each stage, with one extra step on the stage's
    first batch; NAdam's ``momentum_decay``/``eps``; the loss options of ``residual_loss`` and
    ``output_columns``."""

    stages: tuple[tuple[int, int], ...]
    rewind: bool = False
    restart: bool = False
    momentum_decay: float = 4e-3
    eps: float = 1e-8
    clip: float = 0.0
    max_output: int = 0
    column_mean: bool = False


class _Rows:
    """The trained item rows: dense (items x dims, ``keep`` marking the kept entries) or ELL (``cols``)."""

    def __init__(self, values: np.ndarray, dims: int):
        self.values, self.dims, self.cols, self.keep = values, dims, None, None

    @property
    def k(self) -> int:
        return self.dims if self.cols is None else self.cols.shape[1]

    def prune(self, k: int, initial: np.ndarray | None, opt: NAdam | None) -> None:
        """Keep each row's k largest |values|, restarting them from ``initial`` if given; the optimiser's
        moments follow the kept entries."""
        if self.cols is None and k * SPARSE_BELOW > self.dims:
            self.keep = top_k_rows(self.values, k)
            self.values = np.where(self.keep, self.values if initial is None else initial, 0).astype(np.float32)
            return
        picked = _top_k_columns(self.values, k)  # columns of dense rows, positions within ELL rows
        self.cols = picked.astype(np.int32) if self.cols is None else np.take_along_axis(self.cols, picked, axis=1)
        self.keep = None
        kept = np.take_along_axis(self.values, picked, axis=1)
        self.values = np.ascontiguousarray(kept if initial is None else np.take_along_axis(initial, self.cols, 1))
        if opt is not None:
            opt.m = np.ascontiguousarray(np.take_along_axis(opt.m, picked, axis=1))
            opt.v = np.ascontiguousarray(np.take_along_axis(opt.v, picked, axis=1))

    def normalised(self):
        """The row-normalised rows: a dense array, or a CSR matrix once rows are ELL."""
        if self.cols is None:
            return normalise_rows(self.values)[0]
        n, k = self.cols.shape
        return sp.csr_matrix((normalise_rows(self.values)[0].ravel(), self.cols.ravel(),
                              np.arange(0, n * k + 1, k)), shape=(n, self.dims))


def train(X: sp.csr_matrix, dims: int, recipe: Recipe, batch_size: int, lr: float, seed: int):
    """Train item rows on X (users x items) by ``recipe``; (the row-normalised rows, the loss of every epoch)."""
    n_items = X.shape[1]
    rng = np.random.default_rng(seed)
    bound = np.sqrt(6.0 / (n_items + dims))
    initial = rng.uniform(-bound, bound, size=(n_items, dims)).astype(np.float32)
    rows = _Rows(initial.copy(), dims)
    users = np.flatnonzero(np.diff(X.indptr) > 0)
    opt, losses = None, []
    for s, (k, epochs) in enumerate(recipe.stages):
        if k < rows.k:
            rows.prune(k, initial if recipe.rewind else None, None if recipe.restart else opt)
            log.info("stage %d/%d: %d non-zeros per item%s", s + 1, len(recipe.stages), k,
                     " (sparse passes)" if rows.cols is not None else "")
        if opt is None or recipe.restart:
            opt = NAdam(rows.values.shape, lr, eps=recipe.eps, momentum_decay=recipe.momentum_decay)
        by_dim = entries_by_dimension(rows.cols, dims) if rows.cols is not None else None

        def step(batch_users):
            Xb = X[batch_users]
            columns, weights = output_columns(Xb, n_items, recipe.max_output, rng)
            if rows.cols is None:
                value, grad = loss_and_gradient(rows.values, Xb, columns, weights, recipe.clip, recipe.column_mean)
            else:
                value, grad = ell_loss_and_gradient(rows.cols, rows.values, Xb, dims, columns, weights, recipe.clip,
                                                    recipe.column_mean, by_dim)
            opt.step(rows.values, grad, rows.keep)
            return value

        for epoch in range(epochs):
            order = rng.permutation(users)
            if recipe.restart and epoch == 0:
                step(order[:batch_size])
            total = 0.0
            label = f"stage {s + 1}/{len(recipe.stages)}, k={k}, epoch {epoch + 1}/{epochs}"
            with counter(len(order), label) as progress:
                for start in range(0, len(order), batch_size):
                    batch = order[start: start + batch_size]
                    total += step(batch) * len(batch)
                    progress.update(len(batch))
            losses.append(total / max(len(users), 1))
            log.info("%s: loss %.6g", label, losses[-1])
    return rows.normalised(), losses
