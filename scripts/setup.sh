#!/usr/bin/env bash
# Set up everything sparseidx needs on a fresh Debian machine: system packages, then a virtualenv.
# Usage: scripts/setup.sh [VENV_DIR] [EXTRAS]   (defaults: .venv and "test")
set -euo pipefail
venv="${1:-.venv}"
extras="${2:-test}"
here="$(cd "$(dirname "$0")/.." && pwd)"

# SuiteSparse headers (CHOLMOD, for scikit-sparse, which is compiled here) and OpenBLAS (otherwise CHOLMOD
# runs on the reference BLAS); a C compiler, Python's headers and venv where the machine lacks them.
# The test extra also needs a PostgreSQL server: the export tests load the pgvector file with its own COPY.
packages=(libsuitesparse-dev libopenblas-dev)
command -v gcc >/dev/null 2>&1 || packages+=(gcc)
python3 -c "import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" \
  || packages+=(python3-dev)
python3 -c "import venv, ensurepip" 2>/dev/null || packages+=(python3-venv)
[[ ",$extras," == *",test,"* ]] && packages+=(postgresql)
[[ ",$extras," == *",bench,"* ]] && packages+=(postgresql wrk)  # the export and service benchmarks
need=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  log="$(mktemp)"
  echo "setup: installing system packages (once): ${need[*]} ..." >&2
  if ! { $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${need[@]}"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "setup: apt-get failed (its last lines are above; the whole output is in $log)" >&2
    exit 1
  fi
  rm -f "$log"
fi

# The virtualenv, reinstalled only when pyproject.toml or the extras change.
stamp="$venv/.sparseidx-installed"
want="$(sha256sum < "$here/pyproject.toml" | cut -d' ' -f1) $extras"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing sparseidx[$extras] and its dependencies into $venv (once; a few minutes: scikit-sparse is compiled) ..." >&2
  start=$SECONDS
  "$venv/bin/pip" install -q --upgrade pip >&2
  "$venv/bin/pip" install -q -e "$here[$extras]" >&2
  echo "$want" > "$stamp"
  echo "setup: $venv ready in $((SECONDS - start)) s" >&2
fi
