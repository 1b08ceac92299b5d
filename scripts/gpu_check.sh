#!/usr/bin/env bash
# The GPU checks in one command, for a bare machine that has torch, CuPy and a CUDA GPU:
# installs what it lacks (bitarray, from a wheel in .whl/ when offline), runs the GPU tests and the GPU
# rows of the kernel benchmarks, and writes benchmarks/results/spmv_gpu_<device>.{md,json},
# conv_gpu_<device>.{md,json} and gpu_tests_<device>.log.
#   bash scripts/gpu_check.sh [--quick]
# With $OUT set (a device machine's output folder), results and logs are copied there too.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c "import bitarray" 2>/dev/null; then
  if compgen -G ".whl/bitarray-*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/vidcompress-site .whl/bitarray-*.whl
  else
    "$PYTHON" -m pip install -q --target /tmp/vidcompress-site bitarray
  fi
  export PYTHONPATH=/tmp/vidcompress-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
logs=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.memory --format=csv | tee "$logs/gpu.txt"
"$PYTHON" -c "import torch, cupy; print('torch', torch.__version__, 'cupy', cupy.__version__, torch.cuda.get_device_name())"
status=0
"$PYTHON" -m pytest -q -p no:cacheprovider -m gpu tests/kernels 2>&1 | tee "$logs/gpu_tests.log" || status=1
"$PYTHON" -m benchmarks.spmv --gpu "$@" 2>&1 | tee "$logs/spmv_gpu.log" || status=1
"$PYTHON" -m benchmarks.conv_gpu "$@" 2>&1 | tee "$logs/conv_gpu.log" || status=1
slug=$("$PYTHON" -c "import torch; print(''.join(c if c.isalnum() else '-' for c in torch.cuda.get_device_name().lower()).strip('-'))")
{ echo "# bash scripts/gpu_check.sh (pytest -q -m gpu tests/kernels)"
  cat "$logs/gpu.txt" "$logs/gpu_tests.log"; } > "benchmarks/results/gpu_tests_$slug.log"
if [ -n "${OUT:-}" ]; then
  cp benchmarks/results/spmv_gpu_* benchmarks/results/conv_gpu_* "benchmarks/results/gpu_tests_$slug.log" "$OUT/" 2>/dev/null || true
fi
exit $status
