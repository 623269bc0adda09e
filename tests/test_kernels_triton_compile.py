"""The Triton kernels compile for NVIDIA GPUs (A100: sm_80, H100/H200: sm_90) on any machine, without a GPU.

Triton lowers each kernel to PTX and assembles it with the ``ptxas`` it bundles, ahead of time, for every
dtype the backend accepts and for the flag combinations at their extremes (inputs present or absent,
DIET or fire-once, each surrogate, outputs stored or not). A kernel that would not build on a real GPU fails
here, while the interpreter (``test_kernels_triton.py``) checks only the arithmetic. Arguments are typed as
``TritonOps`` passes them: sequences, parameters and spike times in the input's dtype; the backward pass's
scratch, accumulators and surrogate parameters in the compute dtype (float64 for float64, else float32).
"""

import inspect
import os

import pytest
import torch

if os.environ.get("CI") != "true":  # CI installs the dev extra, which brings Triton: never skip there
    pytest.importorskip("triton")

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from snn_ext.kernels import triton_ops  # noqa: E402

TARGETS = {"sm80": GPUTarget("cuda", 80, 32), "sm90": GPUTarget("cuda", 90, 32)}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32, "fp64": torch.float64}
COMPUTE_DTYPE_POINTERS = ("h_ptr", "acc_leak_ptr", "acc_thr_ptr", "sur_ptr")
FORWARD_FLAGS = [
    {"HAS_U0": False, "FIRE_ONCE": False, "STORE_POT": False},
    {"HAS_U0": True, "FIRE_ONCE": True, "STORE_POT": True},
]
BACKWARD_FLAG_NAMES = ("HAS_U0", "FIRE_ONCE", "KIND", "HAS_GS", "HAS_GP", "HAS_GF", "STORE_GU0")
BACKWARD_FLAGS = [
    dict(zip(BACKWARD_FLAG_NAMES, values, strict=True))
    for values in (
        (False, False, 0, True, False, False, False),  # DIET, triangle, gradient through the spikes only
        (False, False, 0, False, True, False, False),  # gradient through the potentials only
        (True, False, 1, True, True, True, True),  # box surrogate, every input and gradient present
        (True, True, 2, True, True, True, True),  # fire-once with STDB
    )
]


def compile_for(kernel, dtype: str, target: str, flags: dict[str, object]):
    """``kernel`` compiled for ``target`` as a launch on ``dtype`` tensors with ``flags`` would compile it."""
    assert not triton_ops.INTERPRETED, "TRITON_INTERPRET is set: the kernels are not compilable JIT functions"
    params = list(inspect.signature(kernel.fn).parameters)
    element = "*" + dtype
    compute = "*fp64" if dtype == "fp64" else "*fp32"
    constants = {**flags, "FP32": dtype != "fp64", "BLOCK": triton_ops._BLOCK}
    signature = {
        name: "constexpr"
        if name in constants
        else (compute if name in COMPUTE_DTYPE_POINTERS else element if name.endswith("_ptr") else "i32")
        for name in params
    }
    assert set(constants) <= set(params), f"flags {set(constants) - set(params)} are not parameters of the kernel"
    source = ASTSource(kernel, signature, constexprs={(params.index(k),): v for k, v in constants.items()})
    return triton.compile(source, target=TARGETS[target], options={"enable_fp_fusion": False})


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("dtype", list(DTYPES))
def test_forward_and_backward_kernels_compile_for_nvidia_gpus(dtype, target):
    for flags in FORWARD_FLAGS:
        assert compile_for(triton_ops._lif_forward_kernel, dtype, target, flags).asm["cubin"]
    for flags in BACKWARD_FLAGS:
        assert compile_for(triton_ops._lif_backward_kernel, dtype, target, flags).asm["cubin"]
