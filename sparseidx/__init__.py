"""sparseidx: train, index and serve sparse high-dimensional item embeddings for recommendation."""

__version__ = "0.1.0"

from .data import Interactions, load_interactions  # noqa: E402
from .errors import DataError, IndexFormatError, SparseIdxError  # noqa: E402
from .evaluate import evaluate  # noqa: E402
from .embeddings import load_embeddings  # noqa: E402
from .factors import DenseFactors, Factors  # noqa: E402
from .index import FaissSearchOptions, Index, SparseIndex, SparseSearchOptions  # noqa: E402
from .models.cholesky import fit_cholesky  # noqa: E402
from .models.lowrank import fit_cholesky_lowrank, fit_puresvd  # noqa: E402
from .models.elsa import fit_compressed_elsa, fit_elsa  # noqa: E402
from .models.sansa import fit_sansa  # noqa: E402

__all__ = ["__version__", "Interactions", "load_interactions", "Factors", "DenseFactors", "load_embeddings",
           "fit_cholesky", "fit_sansa", "fit_puresvd", "fit_cholesky_lowrank", "fit_elsa", "fit_compressed_elsa",
           "Index", "SparseIndex", "SparseSearchOptions", "FaissSearchOptions", "evaluate", "SparseIdxError",
           "DataError", "IndexFormatError"]
