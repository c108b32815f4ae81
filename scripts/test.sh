#!/usr/bin/env bash
# Install everything into ./.venv, then run the test suite (no network, no model hub).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest -q "$@"
