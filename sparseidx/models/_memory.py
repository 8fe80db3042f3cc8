"""How much memory this process may still use, to refuse work that cannot fit."""

from __future__ import annotations

import os

from ..errors import MemoryBudgetError


def available_bytes() -> int:
    """Bytes available to this process: MemAvailable, capped by a cgroup limit if one is set."""
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                text = fh.read().strip()
            if text.isdigit():
                avail = min(avail, int(text))
        except OSError:
            continue
    return avail


def check_dense(n: int, what: str, alternative: str, n_buffers: float = 1.0,
                limit: int | None = None) -> int:
    """Raise MemoryBudgetError unless ``n_buffers`` float32 n x n matrices fit in memory."""
    need = int(n * n * 4 * n_buffers)
    have = available_bytes() if limit is None else limit
    if need > 0.9 * have:
        raise MemoryBudgetError(
            f"{what} needs a dense {n:,} x {n:,} float32 matrix ({need / 2**30:.1f} GiB) but only "
            f"{have / 2**30:.1f} GiB of memory is available; use {alternative}, whose memory grows "
            "with the number of non-zeros instead of items squared")
    return need
