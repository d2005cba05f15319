#!/usr/bin/env bash
# Create (once) the project's virtual environment in .venv and install weightzoo into it.
# torch 2.13.0 (CPU build) goes in first, pinned, so pip never pulls a multi-GB CUDA build.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again (it skips what is done).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${WEIGHTZOO_VENV:-$ROOT/.venv}"
PY="${PYTHON:-}"
# Python 3.11 first: this machine's CPU build of torch 2.13.0 is a 3.11 wheel; 3.12 and 3.13 work too.
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.13 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))'; then
      PY="$cand"; break
    fi
  done
fi
if [ -z "$PY" ]; then
  echo "error: weightzoo needs Python 3.11, 3.12 or 3.13 (set PYTHON=/path/to/python3.x)" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment in $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
if ! python -c 'import torch' >/dev/null 2>&1; then
  echo "[setup] installing torch==2.13.0 (CPU)"
  pip install --quiet torch==2.13.0
fi
STAMP="$VENV/.weightzoo-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ] || ! command -v zoo >/dev/null 2>&1; then
  echo "[setup] installing weightzoo and its dependencies"
  pip install --quiet -e "$ROOT[dev]"
  echo "$WANT" > "$STAMP"
fi
