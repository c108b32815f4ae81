#!/usr/bin/env bash
# Install everything into ./.venv, check the house habits (ruff lint + format, mypy), then run the
# test suite (no network, no model hub). CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
# the tests also start a real local Ray cluster (on 127.0.0.1), so the ray extra is installed too
EXTRAS=${EXTRAS:-ecapa,onnx,rings,ray,dev} scripts/install.sh
export HF_HUB_OFFLINE=1
.venv/bin/ruff check voicecheck tests scripts benchmarks recipes
.venv/bin/ruff format --check voicecheck tests scripts benchmarks recipes
.venv/bin/mypy voicecheck recipes
exec .venv/bin/python -m pytest -q "$@"
