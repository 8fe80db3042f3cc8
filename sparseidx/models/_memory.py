"""How much memory this process may still use, to refuse work that cannot fit."""

from __future__ import annotations

import os

from ..errors import MemoryBudgetError

CGROUP_FILES = (("memory.max", "memory.current"),  # cgroup v2
                ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"))  # cgroup v1


def available_bytes() -> int:
    """Bytes this process may still allocate: the least of MemAvailable, the cgroup's and ulimit -v's headroom."""
    limits = (_mem_available(), _cgroup_headroom(), _address_space_headroom())
    return min(x for x in limits if x is not None)


def _mem_available() -> int:
    kib = _proc_field("/proc/meminfo", "MemAvailable:")
    return kib * 1024 if kib is not None else os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _proc_field(path: str, field: str) -> int | None:
    """The number after ``field`` in a /proc file (kB for memory fields); None where it is absent."""
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _read_bytes(path: str) -> int | None:
    """A byte count from a cgroup file; None when it is absent or says "max"."""
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_headroom(root: str = "/sys/fs/cgroup") -> int | None:
    """The cgroup memory limit minus the cgroup's current usage (v2 and v1); None without a limit."""
    headroom = None
    for limit_file, usage_file in CGROUP_FILES:
        limit = _read_bytes(os.path.join(root, limit_file))
        if limit is not None:
            left = max(limit - (_read_bytes(os.path.join(root, usage_file)) or 0), 0)
            headroom = left if headroom is None else min(headroom, left)
    return headroom


def _address_space_headroom() -> int | None:
    """RLIMIT_AS (ulimit -v) minus this process's virtual size; None without a limit."""
    try:
        import resource
    except ImportError:  # not a Unix
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    return max(soft - virtual_size(), 0)


def virtual_size() -> int:
    """This process's virtual memory size in bytes (VmSize), 0 where /proc is not available."""
    return (_proc_field("/proc/self/status", "VmSize:") or 0) * 1024


def check_dense(n: int, what: str, alternative: str, n_buffers: float = 1.0,
                limit: int | None = None) -> int:
    """Raise MemoryBudgetError unless ``n_buffers`` float32 n x n matrices fit in memory."""
    need = int(n * n * 4 * n_buffers)
    have = available_bytes() if limit is None else limit
    if need > 0.9 * have:
        raise MemoryBudgetError(
            f"{what} needs {need / 2**30:.1f} GiB ({n_buffers:g} x a dense {n:,} x {n:,} float32 matrix) but only "
            f"{have / 2**30:.1f} GiB of memory is available (free memory, cgroup limit and ulimit -v); use "
            f"{alternative}, whose memory grows with the number of non-zeros instead of items squared")
    return need
