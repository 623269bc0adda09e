#!/usr/bin/env bash
# GPU check of the fused neurons in one run (at most 7.5 minutes plus the install, on one NVIDIA GPU):
# build, the GPU and kernel tests, then benchmarks/neurons.py and benchmarks/training.py on CUDA.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # logs go to OUT_DIR (default: $TMPDIR/snn_ext_gpu_check)
#
# Uses ./.venv when it exists, else creates it with the README's setup command (needs the package index).
# Exits non-zero if any step fails or overruns its time limit; every step still runs and logs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${TMPDIR:-/tmp}/snn_ext_gpu_check}"
mkdir -p "$OUT"
status=0

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to OUT/NAME.txt, remember failures
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -ne 0 ]; then
        echo "!! $name failed with exit status $rc" | tee -a "$OUT/$name.txt"
        status=1
    fi
}

if [ ! -x .venv/bin/python ]; then
    step install 600 bash -c 'python -m venv .venv && .venv/bin/pip install -e ".[dev]"'
fi
PY=.venv/bin/python
step device 30 bash -c "nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; $PY -c \
'import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name())'"
step tests 180 "$PY" -m pytest -q -p no:cacheprovider tests/test_kernels_gpu.py tests/test_kernels.py \
    tests/test_kernels_triton.py tests/test_faces_agree.py
step neurons 180 "$PY" benchmarks/neurons.py --device cuda --repeats 10 --warmup 2
step training 60 "$PY" benchmarks/training.py --device cuda --batch 64 --iters 10
echo "logs in $OUT/; exit status $status"
exit "$status"
