"""OpenBLAS kernels pinned to the CPU while faiss and CHOLMOD load their own OpenBLAS."""

import os
import re
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


def _openblas_cores(code):
    """The kernel family each OpenBLAS loaded by ``code`` reports, in load order."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    env["OPENBLAS_VERBOSE"] = "2"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return re.findall(r"^Core: (\S+)$", run.stdout + run.stderr, flags=re.MULTILINE)


@pytest.mark.parametrize("load", [
    "from sparseidx.index.dense import _faiss; _faiss()",
    "from sparseidx.models.sansa import _cholmod; _cholmod()",
])
def test_a_librarys_own_openblas_runs_this_cpus_kernels(load):
    expected = openblas.openblas_core(openblas.cpu_flags())
    if expected is None:
        pytest.skip("this CPU has no AVX2: OpenBLAS's own choice stands")
    imports = "import numpy, scipy.sparse, sparseidx.index.dense, sparseidx.models.sansa\n"
    before = _openblas_cores(imports)
    theirs = _openblas_cores(imports + load)[len(before):]
    if not theirs:
        pytest.skip("the library links no dynamic-arch OpenBLAS of its own")
    assert theirs == [expected] * len(theirs)
