#!/usr/bin/env bash
# Every benchmark with its default sizes; add --events 1000000 to rebuild.py by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
$PY bench/append.py
$PY bench/rebuild.py
$PY bench/catchup.py
$PY bench/lag.py
$PY bench/service_load.py --db sqlite
$PY bench/service_load.py --db postgres
$PY bench/sdk.py
