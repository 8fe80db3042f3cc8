"""Load a library's own OpenBLAS with the kernels this CPU supports.

OpenBLAS picks its kernels from the CPU model when it is loaded, and a build older
than the CPU does not recognise it: it falls back to the generic SSE3 "Prescott"
kernels. Two libraries sparseidx uses bring such a build. faiss-cpu 1.15.1 bundles
OpenBLAS 0.3.15, and scikit-sparse's CHOLMOD links Debian 12's OpenBLAS 0.3.21; neither
knows an Emerald Rapids Xeon (model 207). There FAISS Flat search ran 4.6x slower and
CHOLMOD's factorization of amazon-book's Gram matrix 4.3x slower than with the kernels
the CPU supports (benchmarks/openblas.py). OpenBLAS reads ``OPENBLAS_CORETYPE`` once, when it is loaded, so
``pinned_openblas`` sets it around the first import of those libraries, to the best
kernel family the CPU's flags allow, then restores the environment. A value the user
set is left alone. ``import_pinned`` does that for one module, and only on its first
import: later calls read nothing and set nothing.
"""

from __future__ import annotations

import importlib
import os
import sys
from contextlib import contextmanager

CPUINFO = "/proc/cpuinfo"
# OpenBLAS kernel families by the instruction sets they need, best first
CORE_TYPES = (
    ("SkylakeX", frozenset({"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"})),
    ("Haswell", frozenset({"avx2", "fma"})),
)


def openblas_core(flags: set[str]) -> str | None:
    """The best OpenBLAS kernel family a CPU with these /proc/cpuinfo flags can run, or None."""
    for core, needs in CORE_TYPES:
        if needs <= flags:
            return core
    return None


def cpu_flags(path: str = CPUINFO) -> set[str]:
    """The instruction-set flags of the first CPU in /proc/cpuinfo (empty where there is none)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


@contextmanager
def pinned_openblas():
    """While active, an OpenBLAS loaded for the first time runs this CPU's best kernel family."""
    core = None if "OPENBLAS_CORETYPE" in os.environ else openblas_core(cpu_flags())
    if core is not None:
        os.environ["OPENBLAS_CORETYPE"] = core
    try:
        yield
    finally:
        if core is not None:
            del os.environ["OPENBLAS_CORETYPE"]


def import_pinned(module: str, load=importlib.import_module):
    """``module``, loaded by ``load(module)`` under ``pinned_openblas`` unless it is imported already."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        return loaded
    with pinned_openblas():
        return load(module)
