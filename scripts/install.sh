#!/usr/bin/env bash
# Install voicecheck and everything it needs into ./.venv, CPU-only.
#
#   scripts/install.sh            runtime + ECAPA and ONNX backends + test tools
#   EXTRAS=ecapa,onnx,rings,ray,dev scripts/install.sh
#
# Why each step:
# - torch is pinned *in the same pip command* as the package. Left to itself pip resolves an
#   unpinned torch (asked for by resemblyzer, silero-vad, speechbrain) to the newest release, which on
#   Linux is a CUDA build of several GB. TORCH_SPEC overrides the pin (e.g. another CPU build), and
#   PIP_EXTRA passes extra pip options such as an index that serves CPU builds.
# - setuptools<81: resemblyzer's webrtcvad imports pkg_resources, which setuptools 81 removed.
# - torchaudio (needed by speechbrain, the ECAPA backend) exists on the registry only as a CUDA build
#   whose compiled libraries fail to load next to CPU torch. torchaudio falls back to pure Python
#   when torchaudio/lib/*.so are absent, and speechbrain's ECAPA runs that way (voicecheck decodes
#   and resamples audio itself, so none of torchaudio's compiled I/O is used). We delete those files.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-ecapa,onnx,rings,dev}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC2086
.venv/bin/python -m pip install --quiet --disable-pip-version-check ${PIP_EXTRA:-} \
    "$TORCH_SPEC" "setuptools<81" -e ".[$EXTRAS]"

.venv/bin/python - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("torchaudio")
if spec is not None and spec.origin:
    lib = pathlib.Path(spec.origin).parent / "lib"
    removed = [p.name for p in lib.glob("*.so")]
    for p in lib.glob("*.so"):
        p.unlink()
    if removed:
        print("install.sh: torchaudio set to pure-Python mode (removed " + ", ".join(removed) + ")")
PY
.venv/bin/python - <<'PY'
import torch
cuda = torch.version.cuda
print(f"install.sh: torch {torch.__version__} ({'CUDA ' + cuda if cuda else 'CPU build'}) in ./.venv")
PY
