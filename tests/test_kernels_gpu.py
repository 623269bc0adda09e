"""Triton kernels on a CUDA GPU against the core reference (skipped without one; ``benchmarks/gpu_check.sh``).

float32/float64: values bit-identical, gradients as ``kernel_cases.py`` states; 100 random cases here (each new
combination of kernel flags compiles), 200 for the same kernels under the interpreter. float16/bfloat16: the
kernels compute in float32, so spikes equal the float32 reference on the upcast inputs, potentials equal it
rounded to the input dtype, gradients agree within 1e-2 relative; against the reference run in
bfloat16/float16 itself (which rounds after every operation) at least 98% of the spikes agree.
"""

import pytest
import torch
from hypothesis import given, settings
from kernel_cases import Case, assert_matches_reference, cases

from snn_ext import kernels
from snn_ext.core import neuron as core
from snn_ext.core.surrogate import STDB, Triangle
from snn_ext.spikingjelly import DietLIFNode

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@settings(max_examples=100, deadline=None)
@given(case=cases(max_size=9))
def test_triton_matches_reference_on_random_cases(case):
    assert_matches_reference(case, "triton", device="cuda")


@pytest.mark.parametrize("fire_once", [False, True])
def test_benchmark_shape_matches_reference(fire_once):
    surrogate = STDB(0.3, 0.05) if fire_once else Triangle(0.3)
    case = Case(fire_once, (5, 32, 64, 32, 32), "contiguous", torch.float32, "channel", "channel", surrogate, True,
                True, ("spikes", "potentials", "final"), ("x", "u", "leak", "threshold"), 3)  # fmt: skip
    assert_matches_reference(case, "triton", device="cuda")


def test_auto_uses_triton_for_cuda_tensors_in_both_faces():
    x = torch.rand(4, 8, 16, 8, 8, device="cuda", requires_grad=True)
    out = kernels.diet_lif_multistep(x, None, 0.9, 0.5)
    assert type(out.spikes.grad_fn).__name__ == "_FusedLIFBackward"
    node = DietLIFNode(leak=0.9, v_threshold=0.5, step_mode="m").cuda()
    spikes = node(x)
    assert type(spikes.grad_fn).__name__ == "_FusedLIFBackward"
    assert torch.equal(spikes, out.spikes)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fire_once", [False, True])
def test_half_precision(dtype, fire_once):
    torch.manual_seed(0)
    x32 = torch.randn(5, 8, 16, 12, 12, device="cuda") * 0.8 + 0.35
    x = x32.to(dtype).requires_grad_(True)
    up = x.detach().float().requires_grad_(True)
    leak = torch.linspace(0.6, 1.0, 16, device="cuda").to(dtype)
    threshold = torch.linspace(0.3, 0.9, 16, device="cuda").to(dtype)
    grad = torch.randn_like(x32).to(dtype)
    fn = kernels.single_spike_lif_multistep if fire_once else kernels.diet_lif_multistep
    ref_fn = core.single_spike_lif_multistep if fire_once else core.diet_lif_multistep
    out = fn(x, None, leak, threshold)
    ref32 = ref_fn(up, None, leak.float(), threshold.float())
    assert torch.equal(out.spikes.float(), ref32.spikes)
    assert torch.equal(out.potentials, ref32.potentials.to(dtype))
    (out.spikes * grad).sum().backward()
    (ref32.spikes * grad.float()).sum().backward()
    torch.testing.assert_close(x.grad.float(), up.grad, rtol=1e-2, atol=1e-2 * float(up.grad.abs().max()))
    with kernels.use_backend("reference"):
        ref_half = ref_fn(x.detach(), None, leak, threshold)
    agree = (out.spikes == ref_half.spikes).float().mean()
    assert agree >= 0.98, f"only {agree:.3%} of the spikes agree with the {dtype} reference"


@pytest.mark.parametrize("fire_once", [False, True])
@pytest.mark.parametrize("face", ["snntorch", "spikingjelly"])
def test_neurons_never_synchronise_with_the_host(face, fire_once):
    """Forward and backward of whole sequences and of single steps read no CUDA value on the host."""
    from snn_ext.snntorch import DietLeaky, SingleSpikeLeaky
    from snn_ext.spikingjelly import SingleSpikeLIFNode

    threshold = torch.linspace(0.3, 0.9, 16, device="cuda")
    if face == "snntorch":
        neuron = (SingleSpikeLeaky if fire_once else DietLeaky)(beta=0.9, threshold=threshold.view(16, 1, 1)).cuda()
    else:
        neuron = (SingleSpikeLIFNode if fire_once else DietLIFNode)(leak=0.9, v_threshold=threshold).cuda()
    x = torch.rand(4, 8, 16, 8, 8, device="cuda", requires_grad=True)
    neuron(x[0])  # warm up (first calls may load kernels) before the check
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        if face == "snntorch":
            neuron.reset_mem()
            spikes = neuron.forward_sequence(x)[0]
            mem = neuron.reset_mem()
            steps = [neuron(step, mem)[0] for step in x]  # the loop idiom, one call per step
        else:
            neuron.reset()
            neuron.step_mode = "m"
            spikes = neuron(x)
            neuron.reset()
            neuron.step_mode = "s"
            steps = [neuron(step) for step in x]
        (spikes.sum() + torch.stack(steps).sum()).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
