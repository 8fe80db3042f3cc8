"""Models that train item embeddings and return them in the one shape.

Each fitter takes interactions (``Interactions`` or a users x items matrix) plus
keyword parameters and returns ``Factors`` (sparse, served by the inverted index)
or ``DenseFactors`` (dense, served by FAISS). ``fit(name, X, **params)`` finds a
fitter by model name, importing its module only when it is used.
"""

from __future__ import annotations

import importlib

FITTERS = {
    "chol": ("sparseidx.models.cholesky", "fit_cholesky"),
    "sansa": ("sparseidx.models.sansa", "fit_sansa"),
    "puresvd": ("sparseidx.models.lowrank", "fit_puresvd"),
    "chol-lowrank": ("sparseidx.models.lowrank", "fit_cholesky_lowrank"),
    "elsa": ("sparseidx.models.elsa", "fit_elsa"),
    "celsa": ("sparseidx.models.elsa", "fit_compressed_elsa"),
}


def fitter(name: str):
    """The fit function of model ``name``."""
    from ..errors import DataError

    if name not in FITTERS:
        raise DataError(f"unknown model {name!r}; choose one of {', '.join(FITTERS)}")
    module, func = FITTERS[name]
    return getattr(importlib.import_module(module), func)


def fit(name: str, X, **params):
    """Train model ``name`` on interactions X; returns Factors or DenseFactors."""
    return fitter(name)(X, **params)
