"""The one shape every model reduces to: score(x, i) = prior_i * <x E, V_i>.

E (encoder, items x dims) turns a history x into a user vector u = x E; V (item
embeddings, items x dims) is served as one posting list per dimension; priors
scale each item's score. Everything after training (index, query, evaluation,
export, benchmark) works on this shape alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .errors import DataError


@dataclass
class _OneShape:
    """Fields and checks shared by the sparse and the dense form of the one shape."""

    encoder: sp.csr_matrix | np.ndarray
    embeddings: sp.csr_matrix | np.ndarray
    priors: np.ndarray
    item_ids: np.ndarray
    model: str = "imported"
    params: dict = field(default_factory=dict)
    popularity: np.ndarray | None = None

    def __post_init__(self):
        self.encoder = self._matrix(self.encoder, "encoder")
        self.embeddings = self._matrix(self.embeddings, "embeddings")
        self.priors = np.ascontiguousarray(self.priors, dtype=np.float32)
        self.item_ids = np.asarray(self.item_ids)
        if self.popularity is not None:
            self.popularity = np.asarray(self.popularity, dtype=np.int64)
        self.validate()

    @staticmethod
    def _matrix(M, name: str):  # pragma: no cover
        """``M`` in this form's matrix type."""
        raise NotImplementedError

    @staticmethod
    def _values(M) -> np.ndarray:
        """The stored values of a matrix of this form."""
        return M

    @property
    def n_items(self) -> int:
        """Items: rows of the encoder and of the item embeddings."""
        return int(self.embeddings.shape[0])

    @property
    def n_dims(self) -> int:
        """Dimensions: their columns."""
        return int(self.embeddings.shape[1])

    def validate(self) -> None:
        """Raise DataError unless shapes, dtypes and values are consistent and finite."""
        n, d = self.embeddings.shape
        if self.encoder.shape != (n, d):
            raise DataError(f"encoder has shape {self.encoder.shape} but item embeddings have {(n, d)}: "
                            "both must be items x dims")
        if self.priors.shape != (n,):
            raise DataError(f"priors have shape {self.priors.shape}, expected ({n},), one per item")
        if self.item_ids.shape != (n,):
            raise DataError(f"item ids have shape {self.item_ids.shape}, expected ({n},)")
        if len(np.unique(self.item_ids)) != n:
            raise DataError("item ids are not unique")
        if self.popularity is not None and self.popularity.shape != (n,):
            raise DataError(f"popularity has shape {self.popularity.shape}, expected ({n},)")
        for name, arr in (("encoder", self._values(self.encoder)), ("embeddings", self._values(self.embeddings)),
                          ("priors", self.priors)):
            if not np.all(np.isfinite(arr)):
                raise DataError(f"{name} contain NaN or infinite values")

    def dense_scores(self, X: sp.spmatrix) -> np.ndarray:
        """Brute-force scores of every item for every row of X (for checks on small data)."""
        scores = (sp.csr_matrix(X, dtype=np.float32) @ self.encoder) @ self.embeddings.T
        return (scores.toarray() if sp.issparse(scores) else np.asarray(scores)) * self.priors[None, :]


@dataclass
class Factors(_OneShape):
    """Encoder, item embeddings, priors and item ids of one trained model (sparse CSR matrices)."""

    @staticmethod
    def _matrix(M, name: str) -> sp.csr_matrix:
        return _canonical_csr(M, name)

    @staticmethod
    def _values(M) -> np.ndarray:
        return M.data


@dataclass
class DenseFactors(_OneShape):
    """The one shape with dense low-rank matrices, served by FAISS: score = prior_i * <x E, V_i>."""

    @staticmethod
    def _matrix(M, name: str) -> np.ndarray:
        M = np.ascontiguousarray(M, dtype=np.float32)
        if M.ndim != 2:
            raise DataError(f"{name} must be a 2-d matrix, got {M.ndim} dimensions")
        return M


def _canonical_csr(M, name: str) -> sp.csr_matrix:
    """CSR float32 with sorted, duplicate-free indices and no explicit zeros."""
    if not sp.issparse(M):
        M = np.asarray(M)
        if M.ndim != 2:
            raise DataError(f"{name} must be a 2-d matrix, got {M.ndim} dimensions")
    M = sp.csr_matrix(M, dtype=np.float32, copy=True)
    # one index dtype for scipy's in-place routines (a canonical matrix has int32 indices, int64 indptr)
    M.indices = M.indices.astype(np.int64)
    M.indptr = M.indptr.astype(np.int64)
    M.sum_duplicates()
    M.eliminate_zeros()
    M.sort_indices()
    M.indices = M.indices.astype(np.int32, copy=False)
    M.indptr = M.indptr.astype(np.int64, copy=False)
    return M
