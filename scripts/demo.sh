#!/usr/bin/env bash
# Install everything into ./.venv, then run the main job on samples/: enroll the sample borrowers into
# ./enrollment, check every sample call in one batch (call embeddings go to ./embeddings), and list
# the flagged calls. Results: out/samples/results.jsonl, summary.json, report.html.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh
export HF_HUB_OFFLINE=1
# voiceprints and call embeddings are encrypted at rest: the first run creates the per-user key
# ($XDG_CONFIG_HOME/voicecheck/key, 0600; never overwritten), later runs use it
.venv/bin/voicecheck key show >/dev/null 2>&1 || .venv/bin/voicecheck key init
# stores left by an older voicecheck (unencrypted, schema 1/2) are upgraded in place; no-op otherwise
.venv/bin/voicecheck store migrate
# samples/enroll.csv gives each recording's consent reference: public-corpus recordings (SOURCES.md)
.venv/bin/voicecheck enroll --manifest samples/enroll.csv
# a batch resumes into an existing --out; the demo starts a fresh run so it shows today's scoring
# (call embeddings already in ./embeddings are reused, keyed by audio content)
rm -rf out/samples
.venv/bin/voicecheck batch samples/calls.csv --out out/samples
