"""LAPACK's Cholesky factorization and inverse, in place, called without holding the GIL.

scipy's ``lapack.spotrf`` / ``spotri`` (and d-) wrappers keep the GIL for the whole call (minutes
on a large catalogue), so no other thread, such as a progress heartbeat, runs meanwhile.
These call the same routines (scipy's own LAPACK, through ``scipy.linalg.cython_lapack``)
by ctypes, which releases the GIL during a foreign call.

Double precision runs on one OpenBLAS thread: scipy's OpenBLAS 0.3.30 (SkylakeX kernels)
segfaults in a multi-threaded dpotrf from n = 16,000 on this project's machine (12,000 passes;
and with the Haswell kernels at 24,915; one thread passes).
"""

from __future__ import annotations

import ctypes
import glob
import os
from contextlib import contextmanager

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


@contextmanager
def _one_thread():
    """scipy's bundled OpenBLAS on one thread for this thread's calls, where it can be found; else as it is."""
    import scipy

    libs = glob.glob(os.path.join(os.path.dirname(scipy.__file__) + ".libs", "libscipy_openblas*.so"))
    setter = getattr(ctypes.CDLL(libs[0]), "openblas_set_num_threads_local", None) if libs else None
    if setter is None:
        yield
        return
    before = setter(1)
    try:
        yield
    finally:
        setter(before)


def _call(name: str, a: np.ndarray) -> int:
    """LAPACK routine ``name`` (without its type letter) on ``a``, in single or double precision by its dtype."""
    if a.dtype not in (np.float32, np.float64) or a.ndim != 2 or a.shape[0] != a.shape[1] or not a.flags.c_contiguous:
        raise ValueError("a square, C-contiguous float32 or float64 matrix is needed")
    n = ctypes.c_int(a.shape[0])
    info = ctypes.c_int(0)
    args = (b"U", ctypes.byref(n), a.ctypes.data_as(ctypes.c_void_p), ctypes.byref(n), ctypes.byref(info))
    if a.dtype == np.float32:
        _routine("s" + name)(*args)
    else:
        with _one_thread():
            _routine("d" + name)(*args)
    return info.value


def cholesky_lower(a: np.ndarray) -> int:
    """Replace the lower triangle of ``a`` (C order) by its Cholesky factor L (A = L L^T); LAPACK's info.

    Only the lower triangle is read and written (LAPACK's upper triangle of the
    column-major ``a.T``); info > 0 means A is not positive definite.
    """
    return _call("potrf", a)


def inverse_from_cholesky_lower(a: np.ndarray) -> int:
    """Replace the factor L in the lower triangle of ``a`` by that triangle of (L L^T)^-1; LAPACK's info."""
    return _call("potri", a)
