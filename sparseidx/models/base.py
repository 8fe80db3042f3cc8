"""The estimator shape every model shares (scikit-learn style) and the parameters several models take.

A model is a ``Model`` subclass with a ``name``, whether its embeddings are ``dense``,
and its ``params`` declarations. Parameters are set (and checked) in ``__init__``;
``fit(X)`` trains and leaves the result in ``factors_``. ``fit_function`` gives the
one-call form, ``fit_cholesky(X, l2=200)``, with the declared signature.
"""

from __future__ import annotations

import inspect

import numpy as np

from ..data import as_matrix
from .params import AT_LEAST_1, POSITIVE, Param, check_params


def l2_param(default: float) -> Param:
    """The L2 regularisation lambda of the models built on X^T X + l2 I."""
    return Param("l2", float, default, "L2 regularisation lambda", POSITIVE)


def dims_param(default: int) -> Param:
    """Embedding dimensions of the dense and ELSA models."""
    return Param("dims", int, default, "embedding dimensions", AT_LEAST_1)


SEED = Param("seed", int, 0, "random seed")
MEMORY_LIMIT = Param("memory_limit", int, None, "bytes the dense N x N route may use (None: what the system has)",
                     AT_LEAST_1, also=(None,), cli=False)


class Model:
    """An embedding model: declared parameters in, ``Factors`` or ``DenseFactors`` out (``factors_``)."""

    name: str = ""
    dense: bool = False
    params: tuple[Param, ...] = ()

    def __init__(self, **params):
        for name, value in check_params(self.params, params, self.name).items():
            setattr(self, name, value)
        self._check_together()

    def _check_together(self) -> None:
        """Constraints between parameters (each one alone was checked from its declaration)."""

    def get_params(self) -> dict:
        """The parameters, by name."""
        return {p.name: getattr(self, p.name) for p in self.params}

    def fit(self, X, item_ids: np.ndarray | None = None) -> Model:
        """Train on interactions X (``Interactions`` or a users x items matrix); the result is ``factors_``."""
        X, item_ids = as_matrix(X, item_ids)
        self.factors_ = self._fit(X, item_ids)
        return self

    def _fit(self, X, item_ids):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"


def fit_function(cls: type[Model], name: str):
    """``name(X, item_ids=None, **params) -> factors`` for model ``cls``, with the declared signature."""

    def fit(X, item_ids=None, **params):
        return cls(**params).fit(X, item_ids).factors_

    fit.__name__ = fit.__qualname__ = name
    fit.__module__ = cls.__module__
    fit.__doc__ = f"Train {cls.__name__} on interactions X and return its factors.\n\n{inspect.getdoc(cls)}"
    fit.__signature__ = inspect.Signature(
        [inspect.Parameter("X", inspect.Parameter.POSITIONAL_OR_KEYWORD),
         inspect.Parameter("item_ids", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)]
        + [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default) for p in cls.params])
    return fit
