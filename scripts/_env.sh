# Shared by scripts/demo and scripts/test: a project virtual environment with
# the package installed (editable), created on first use.
#
# DG_INSTALL_EXTRAS names the optional dependencies to add: scripts/test sets
# "dev" (pytest, mypy, ruff, ...); scripts/demo installs only what the product
# needs. Each set has its own stamp, and an install with the test tools also
# serves the demo, so switching between the two reinstalls at most once.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
EXTRAS="${DG_INSTALL_EXTRAS:-}"
if [ -n "$EXTRAS" ]; then
  STAMP=".venv/.dg-installed-$EXTRAS"
  SPEC=".[$EXTRAS]"
else
  STAMP=.venv/.dg-installed
  SPEC="."
fi
# Installed since pyproject.toml last changed?
fresh() { [ -f "$1" ] && [ ! pyproject.toml -nt "$1" ]; }
if ! fresh "$STAMP" && { [ -n "$EXTRAS" ] || ! fresh .venv/.dg-installed-dev; }; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e "$SPEC"
  touch "$STAMP"
fi
