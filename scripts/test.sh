#!/usr/bin/env bash
# Run the test suite. Sets up .venv first when needed (see scripts/setup_env.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export TQDM_DISABLE=1
exec python -m pytest tests -q "$@"
