#!/usr/bin/env bash
# Set up everything sparseidx needs on a fresh Debian machine: system libraries, then a virtualenv.
# Usage: scripts/setup.sh [VENV_DIR] [EXTRAS]   (defaults: .venv and "test")
set -euo pipefail
venv="${1:-.venv}"
extras="${2:-test}"
here="$(cd "$(dirname "$0")/.." && pwd)"

# SuiteSparse headers (CHOLMOD, for scikit-sparse) and OpenBLAS (otherwise CHOLMOD runs on the reference BLAS).
# The test extra also needs a PostgreSQL server: the export tests load the pgvector file with its own COPY.
packages=(libsuitesparse-dev libopenblas-dev)
[[ ",$extras," == *",test,"* ]] && packages+=(postgresql)
need=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing system packages: ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >&2
fi

# The virtualenv, reinstalled only when pyproject.toml or the extras change.
stamp="$venv/.sparseidx-installed"
want="$(cat "$here/pyproject.toml" | sha256sum | cut -d' ' -f1) $extras"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$venv/bin/pip" install -q --upgrade pip >&2
  "$venv/bin/pip" install -q -e "$here[$extras]" >&2
  echo "$want" > "$stamp"
fi
