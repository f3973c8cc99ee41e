#!/usr/bin/env bash
# Usage: scripts/install.sh [VENV_DIR]
# Creates a virtual environment (default .venv) with the pinned stack and this package in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' \
  || { echo "install.sh: Python >= 3.11 required, $python is $("$python" --version 2>&1)" >&2; exit 1; }
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" -r requirements.txt
# fairseq main as a prebuilt cp311 wheel; --no-deps skips its unused torchaudio requirement
"${pip[@]}" --no-deps ve-fairseq==0.12.3
# compat mode: a path entry for the repo root, so every top-level package of the checkout imports
"${pip[@]}" --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
"$venv/bin/python" -c 'import torch, fairseq, editable_core; print("installed: torch", torch.__version__, "fairseq", fairseq.__version__)'
