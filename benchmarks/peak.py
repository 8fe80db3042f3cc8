"""A command's peak resident memory, read in a wrapper process of its own so that it is that run's alone."""

from __future__ import annotations

import subprocess
import sys

_WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)")


def run_measured(cmd: list[str]) -> tuple[str, float]:
    """(standard output, peak RSS in MiB) of ``cmd`` run to completion; CalledProcessError when it fails."""
    res = subprocess.run([sys.executable, "-c", _WRAPPER, *cmd], check=True, capture_output=True, text=True)
    return res.stdout, int(res.stderr.strip().splitlines()[-1]) / 1024
