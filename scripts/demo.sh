#!/usr/bin/env bash
# The main job on a fresh machine: install, then generate the synthetic action set, train a CPU-sized
# T-C3D, compress it through the paper's five steps and write runs/demo/compressed/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m examples.tc3d demo "$@"
