"""What a vector store is given: item vectors whose inner product with u = x E is sparseidx's score.

sparseidx ranks by prior_i * <u, V_i>. A store ranks by <u, v_i> alone, so the (non-negative)
prior is folded into each stored vector, v_i = prior_i * V_i, unless asked not to; every
companion file says which was done.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..factors import Factors
from ..progress import log
from .parquet import description
from .rows import csr_parts, factors_of, progress_batches

FOLDED = "folded: each stored vector is v_i = prior_i * V_i, so the store's <u, v_i> is sparseidx's score"
NOT_FOLDED = ("not folded (--no-fold-priors): stored vectors are V_i and the store ranks by <u, V_i>, "
              "not by sparseidx's prior_i * <u, V_i>")


@dataclass
class StoreVectors:
    """The item vectors a store target writes (``matrix``, CSR float32) and the factors they come from."""

    factors: Factors
    matrix: sp.csr_matrix
    folded: bool

    @property
    def n_dims(self) -> int:
        return self.matrix.shape[1]

    @property
    def item_ids(self) -> np.ndarray:
        return self.factors.item_ids

    def signed(self) -> bool:
        """Whether the item vectors or the encoder (hence user vectors) hold negative weights."""
        return bool((self.matrix.data < 0).any() or (self.factors.encoder.data < 0).any())

    def batches(self):
        """Row batches of the stored vectors (see ``rows.batches``), with a progress bar."""
        return progress_batches(*csr_parts(self.matrix), self.item_ids, "items")

    def describe(self, index, target: str, **more) -> dict:
        """The metadata of a store export: counts, model, score, and whether priors are folded."""
        return description(index, target, priors=FOLDED if self.folded else NOT_FOLDED, **more)


def store_vectors(index, fold_priors: bool = True) -> StoreVectors:
    """The stored item vectors of ``index``: prior_i * V_i (explicit zeros dropped), or V_i when not folding."""
    factors = factors_of(index)
    V = sp.csr_matrix(factors.embeddings, dtype=np.float32)
    if fold_priors:
        scale = np.repeat(factors.priors.astype(np.float32), np.diff(V.indptr))
        V = sp.csr_matrix((V.data * scale, V.indices, V.indptr), shape=V.shape)
        V.eliminate_zeros()
        V.sort_indices()
    elif len(np.unique(factors.priors)) > 1:
        log.warning("Warning: priors are not folded into the vectors; the store will rank by <u, V_i>, not by "
                    "sparseidx's prior_i * <u, V_i> (drop --no-fold-priors to rank alike)")
    return StoreVectors(factors, V, fold_priors)
