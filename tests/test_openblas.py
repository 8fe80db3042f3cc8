"""OpenBLAS kernels pinned to the CPU while faiss and CHOLMOD load their own OpenBLAS."""

import json
import os
import subprocess
import sys
import types

import pytest

from sparseidx import openblas

AVX512 = {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma", "sse3"}


@pytest.mark.parametrize("flags, core", [
    (AVX512, "SkylakeX"),
    ({"avx512f", "avx2", "fma", "sse3"}, "Haswell"),  # AVX-512 foundation alone is not SkylakeX's set
    ({"avx2", "fma"}, "Haswell"),
    ({"avx", "sse3"}, None),
    (set(), None),
])
def test_openblas_core_is_the_best_family_the_flags_allow(flags, core):
    assert openblas.openblas_core(flags) == core


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel\t\t: 207\nflags\t\t: fpu sse3 avx2 fma\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert openblas.cpu_flags(str(cpuinfo)) == {"fpu", "sse3", "avx2", "fma"}
    assert openblas.cpu_flags(str(tmp_path / "absent")) == set()


def test_pinned_only_while_active(monkeypatch):
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    monkeypatch.setattr(openblas, "cpu_flags", lambda: AVX512)
    with pytest.raises(RuntimeError):
        with openblas.pinned_openblas():
            assert os.environ["OPENBLAS_CORETYPE"] == "SkylakeX"
            raise RuntimeError("the import failed")
    assert "OPENBLAS_CORETYPE" not in os.environ


def test_pinned_keeps_the_users_core(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    monkeypatch.setattr(openblas, "cpu_flags", lambda: AVX512)
    with openblas.pinned_openblas():
        assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"
    assert os.environ["OPENBLAS_CORETYPE"] == "Haswell"


def test_pinned_sets_nothing_on_a_cpu_without_avx2(monkeypatch):
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    monkeypatch.setattr(openblas, "cpu_flags", lambda: {"sse3", "avx"})
    with openblas.pinned_openblas():
        assert "OPENBLAS_CORETYPE" not in os.environ


def test_import_pinned_loads_once_under_the_pin(monkeypatch):
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    monkeypatch.setattr(openblas, "cpu_flags", lambda: AVX512)
    seen = []

    def load(name):
        seen.append(os.environ.get("OPENBLAS_CORETYPE"))
        module = types.ModuleType(name)
        monkeypatch.setitem(sys.modules, name, module)
        return module

    module = openblas.import_pinned("sparseidx_test_blas_user", load)
    assert seen == ["SkylakeX"] and "OPENBLAS_CORETYPE" not in os.environ
    # imported already: returned as is, neither the CPU nor the environment is read
    monkeypatch.setattr(openblas, "cpu_flags", lambda: pytest.fail("cpuinfo read for a loaded module"))
    assert openblas.import_pinned("sparseidx_test_blas_user", lambda name: pytest.fail("loaded twice")) is module


CORES = """
import json, sys
from threadpoolctl import threadpool_info
import numpy, scipy.sparse, sparseidx.index.dense, sparseidx.models.sansa
from sparseidx import openblas
if sys.argv[1]:
    openblas.cpu_flags = lambda path=None: set(sys.argv[1].split())  # a CPU with only these flags
before = {lib["filepath"] for lib in threadpool_info()}
exec(sys.argv[2])
print(json.dumps([lib["architecture"] for lib in threadpool_info()
                  if lib["internal_api"] == "openblas" and lib["filepath"] not in before]))
"""


def _openblas_cores(load: str, flags: set[str] | None) -> list[str]:
    """The kernel family (threadpoolctl's report) of each OpenBLAS that ``load`` brings in, pinned for ``flags``."""
    pytest.importorskip("threadpoolctl")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    run = subprocess.run([sys.executable, "-c", CORES, " ".join(sorted(flags or ())), load], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(run.stdout)


@pytest.mark.parametrize("load", [
    "from sparseidx.index.dense import _faiss; _faiss()",
    "from sparseidx.models.sansa import _cholmod; _cholmod()",
])
@pytest.mark.parametrize("flags", [None, {"avx2", "fma", "sse3"}], ids=["this-cpu", "haswell-flags"])
def test_a_librarys_own_openblas_runs_the_kernels_the_pin_chose(load, flags):
    """The pin decides: this CPU's best family, and Haswell when the flags say only AVX2 (where it can run)."""
    real = openblas.cpu_flags()
    expected = openblas.openblas_core(flags if flags is not None else real)
    if openblas.openblas_core(real) is None:
        pytest.skip("this CPU has no AVX2: OpenBLAS's own choice stands")
    theirs = _openblas_cores(load, flags)
    assert theirs, "the library loaded no OpenBLAS of its own (faiss-cpu bundles one, CHOLMOD links the system's)"
    assert theirs == [expected] * len(theirs)
