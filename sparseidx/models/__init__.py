"""Models that train item embeddings and return them in the one shape.

Each model is a ``Model`` (``base.py``) that declares its parameters once
(``params.py``): ``MODELS[name](**params).fit(X).factors_`` is ``Factors`` (sparse,
served by the inverted index) or ``DenseFactors`` (dense, served by FAISS). The
command line builds its options from the same declarations.
"""

from __future__ import annotations

from ..errors import DataError
from .base import Model
from .cholesky import Cholesky
from .elsa import CompressedElsa, Elsa
from .lowrank import CholeskyLowRank, PureSVD
from .sansa import Sansa

MODELS: dict[str, type[Model]] = {m.name: m for m in (Cholesky, Sansa, PureSVD, CholeskyLowRank, Elsa, CompressedElsa)}


def model(name: str, **params) -> Model:
    """Model ``name`` with ``params`` (checked against its declaration), ready to ``fit``."""
    if name not in MODELS:
        raise DataError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    return MODELS[name](**params)
