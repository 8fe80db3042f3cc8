"""Import FAISS so that its bundled BLAS runs the kernels this CPU supports.

The faiss-cpu wheels bundle an OpenBLAS (0.3.15 in faiss-cpu 1.15.1) that picks its
kernels from the CPU model. A CPU newer than that OpenBLAS (Emerald Rapids, model 207,
say) is not recognised and falls back to the generic SSE3 "Prescott" kernels: FAISS
Flat search and IVF training, which run on sgemm, were 4-6x slower on such a machine.
OpenBLAS reads ``OPENBLAS_CORETYPE`` once, when it is loaded; so while faiss is first
imported it is set to the kernel family the CPU's flags support, then restored. A
value the user set is left alone.
"""

from __future__ import annotations

import os
import sys

from ..errors import require

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


def load_faiss():
    """The faiss module; on first import its OpenBLAS is pinned to this CPU's kernels."""
    pinned = "faiss" in sys.modules or "OPENBLAS_CORETYPE" in os.environ
    core = None if pinned else openblas_core(cpu_flags())
    if core is not None:
        os.environ["OPENBLAS_CORETYPE"] = core
    try:
        return require("faiss", "all", "the FAISS backend")
    finally:
        if core is not None:
            del os.environ["OPENBLAS_CORETYPE"]
