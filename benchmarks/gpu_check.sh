#!/usr/bin/env bash
# GPU check of the fused neurons and the Lightning recipes in one run on one NVIDIA GPU, under 8 minutes (the
# steps' time limits add up to 480 s): the GPU and kernel tests, a digits recipe (ann, convert, snn, test) with
# --trainer.accelerator gpu, benchmarks/neurons.py on CUDA (every shape with SpikingJelly's automatic choice of
# LIF kernel; then at [5, 32, 64, 32, 32] against its Triton kernel and torch.compile of the plain loop, which
# compiles anew per shape, and with our kernels in other BLOCKxWARPS launch configurations: the default, 1024x4,
# holds 8 neurons per thread and compiles to 71 (forward) and 168 (backward) registers per thread on sm_90,
# 256x4 to 30 and 43) and benchmarks/training.py on CUDA. Every step runs and logs to
# OUT_DIR/<step>.txt; the exit status is non-zero if any step failed or overran its time limit.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # default OUT_DIR: $TMPDIR/snn_ext_gpu_check
#
# Python, first that applies:
#   1. ./.venv (the README's setup);
#   2. a python3 that already holds torch and triton, as on a GPU image without a package index: the package
#      runs from this checkout (PYTHONPATH), and the pure-Python packages such an image may lack are installed
#      from the wheels in ./.whl into a temporary folder. Make them where the index is reachable:
#        pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl snntorch==1.0.0 \
#            spikingjelly==2.0.0 loguru==0.7.3 jsonargparse==4.53.0 docstring_parser==0.18.0 typeshed_client==2.15.0
#   3. else the README's setup command is run (needs the package index).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${1:-${TMPDIR:-/tmp}/snn_ext_gpu_check}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
status=0

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to OUT/NAME.txt, remember failures
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    SECONDS=0
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.txt"
    local rc=${PIPESTATUS[0]}
    echo "-- $name: exit status $rc after ${SECONDS}s" | tee -a "$OUT/$name.txt"
    [ "$rc" -eq 0 ] || status=1
}

if [ -x .venv/bin/python ]; then
    PY=$ROOT/.venv/bin/python
elif python3 -c 'import torch, triton' 2>/dev/null; then
    PY=$(command -v python3)
    site=$(mktemp -d)
    if compgen -G ".whl/*.whl" >/dev/null; then
        step wheels 30 "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
    fi
    export PYTHONPATH="$ROOT:$site${PYTHONPATH:+:$PYTHONPATH}"
else
    step install 600 bash -c 'python -m venv .venv && .venv/bin/pip install -e ".[dev]"'
    PY=$ROOT/.venv/bin/python
fi

step device 30 "$PY" -c "import subprocess, torch, triton
from spikingjelly.activation_based import functional
subprocess.run(['nvidia-smi', '--query-gpu=name,memory.total,driver_version', '--format=csv'], check=True)
print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())
print('SpikingJelly LIF on CUDA:', functional.neuron_implementation('lif', torch.device('cuda')))"
step tests 110 "$PY" -m pytest -q -p no:cacheprovider tests/test_kernels_gpu.py tests/test_kernels.py \
    tests/test_kernels_triton.py tests/test_faces_agree.py

# The DIET digits recipe, its three stages on the GPU, in OUT/recipe (the recipe writes to ./runs).
recipe="$ROOT/recipes/diet_snn/digits_vgg_small.yaml"
gpu=(--trainer.accelerator gpu --trainer.devices 1 --trainer.enable_progress_bar false)
mkdir -p "$OUT/recipe"
step recipe 75 bash -c "cd \"$OUT/recipe\" && set -e
    \"$PY\" -m snn_ext.cli fit -c \"$recipe\" --stage ann ${gpu[*]}
    \"$PY\" -m snn_ext.cli test -c \"$recipe\" --stage convert ${gpu[*]}
    \"$PY\" -m snn_ext.cli fit -c \"$recipe\" --stage snn ${gpu[*]}
    \"$PY\" -m snn_ext.cli test -c \"$recipe\" --stage snn ${gpu[*]} \
        --ckpt_path runs/diet_snn/digits_vgg_small/snn/checkpoints/last.ckpt"

step neurons 130 "$PY" benchmarks/neurons.py --device cuda --repeats 10 --warmup 2 --only ours snnTorch SJ "torch loop"
step neurons_t5 75 env SJ_LIF_CUDA_IMPLEMENTATION=triton "$PY" benchmarks/neurons.py --device cuda --repeats 10 \
    --warmup 2 --steps 5 --no-vgg --only ours "SJ LIFNode" "torch.compile" --triton-configs 256x4 512x4 1024x8 2048x8
step training 30 "$PY" benchmarks/training.py --device cuda --batch 64 --iters 10
echo "logs in $OUT/; exit status $status"
exit "$status"
