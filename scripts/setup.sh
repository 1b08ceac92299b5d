#!/usr/bin/env bash
# Create .venv and install vidcompress with everything the demo, the tests and the benchmarks need.
# torch==2.13.0 goes first so that pip takes the local CPU build instead of a CUDA one.
# A failing install stops here with pip's own message (pipefail keeps pip's exit status through the filter).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate

# pip's and setuptools' notices that are not about this install: the location warning of a venv, and
# setuptools' multi-line BuildBackendWarning about editable installs (harmless: the package is importable).
quiet_pip() {
  python -m pip install -q --disable-pip-version-check "$@" 2>&1 | python scripts/filter_pip.py
}

quiet_pip --upgrade pip
quiet_pip torch==2.13.0
quiet_pip -e ".[dev,video,plots,cpu]"
python -c "import torch, vidcompress; print(f'vidcompress {vidcompress.__version__}, torch {torch.__version__}')"
