#!/usr/bin/env bash
# Install everything into ./.venv, check the house habits (ruff lint + format, mypy), then run the
# test suite (no network, no model hub). CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
# the tests also start a real local Ray cluster (on 127.0.0.1), so the ray extra is installed too
EXTRAS=${EXTRAS:-ecapa,onnx,rings,ray,dev} scripts/install.sh
# the report's browser test drives Debian's Chromium (tests/browser.py); install it where apt-get can
# (CI runs as root). Without it that one test is skipped, saying so.
if ! command -v chromium >/dev/null 2>&1 && [ -z "${VOICECHECK_CHROMIUM:-}" ] && command -v apt-get >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ]; then
    echo "test.sh: installing Debian's chromium for the browser test" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1 \
        || echo "test.sh: chromium could not be installed; the browser test will be skipped" >&2
fi
export HF_HUB_OFFLINE=1
.venv/bin/ruff check voicecheck tests scripts benchmarks recipes
.venv/bin/ruff format --check voicecheck tests scripts benchmarks recipes
.venv/bin/mypy voicecheck recipes
exec .venv/bin/python -m pytest -q "$@"
