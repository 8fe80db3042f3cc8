"""LAPACK's Cholesky factorization and inverse, in place, called without holding the GIL.

scipy's ``lapack.spotrf`` / ``spotri`` wrappers keep the GIL for the whole call (minutes
on a large catalogue), so no other thread, such as a progress heartbeat, runs meanwhile.
These call the same routines (scipy's own LAPACK, through ``scipy.linalg.cython_lapack``)
by ctypes, which releases the GIL during a foreign call.
"""

from __future__ import annotations

import ctypes

import numpy as np
from numba.extending import get_cython_function_address

_ARGS = (ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_void_p, ctypes.POINTER(ctypes.c_int),
         ctypes.POINTER(ctypes.c_int))  # (uplo, n, a, lda, info), as LAPACK takes them
_routines: dict = {}


def _routine(name: str):
    if name not in _routines:
        address = get_cython_function_address("scipy.linalg.cython_lapack", name)
        _routines[name] = ctypes.CFUNCTYPE(None, *_ARGS)(address)
    return _routines[name]


def _call(name: str, a: np.ndarray) -> int:
    if a.dtype != np.float32 or a.ndim != 2 or a.shape[0] != a.shape[1] or not a.flags.c_contiguous:
        raise ValueError("a square, C-contiguous float32 matrix is needed")
    n = ctypes.c_int(a.shape[0])
    info = ctypes.c_int(0)
    _routine(name)(b"U", ctypes.byref(n), a.ctypes.data_as(ctypes.c_void_p), ctypes.byref(n), ctypes.byref(info))
    return info.value


def cholesky_lower(a: np.ndarray) -> int:
    """Replace the lower triangle of ``a`` (C order) by its Cholesky factor L (A = L L^T); LAPACK's info.

    Only the lower triangle is read and written (LAPACK's upper triangle of the
    column-major ``a.T``); info > 0 means A is not positive definite.
    """
    return _call("spotrf", a)


def inverse_from_cholesky_lower(a: np.ndarray) -> int:
    """Replace the factor L in the lower triangle of ``a`` by that triangle of (L L^T)^-1; LAPACK's info."""
    return _call("spotri", a)
