#!/usr/bin/env bash
# Create .venv and install vidcompress with everything the demo, the tests and the benchmarks need.
# torch==2.13.0 goes first so that pip takes the local CPU build instead of a CUDA one.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
python -m pip install -q torch==2.13.0 2>&1 | grep -v '^WARNING: Location' || true
python -m pip install -q -e ".[dev,video,plots,cpu]" 2>&1 | grep -v '^WARNING: Location' || true
python -c "import torch, vidcompress; print(f'vidcompress {vidcompress.__version__}, torch {torch.__version__}')"
