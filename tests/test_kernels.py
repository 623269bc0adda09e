"""Fused neurons (snn_ext.kernels) against the core reference: values, all gradients, dispatch and fallbacks.

Tolerances are stated in ``kernel_cases.py``: forward values bit-identical, gradients within 1e-4 (float32)
or 1e-9 (float64). Triton runs in ``test_kernels_triton.py`` (interpreter) and ``test_kernels_gpu.py``;
``test_kernels_triton_compile.py`` builds its kernels for NVIDIA GPUs without one.
"""

import re
import sys
import warnings
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from kernel_cases import Case, assert_matches_reference, cases
from spikingjelly.activation_based import functional

from snn_ext import kernels
from snn_ext.core import neuron as core
from snn_ext.core.checks import validate_values
from snn_ext.core.surrogate import STDB, Box, Triangle
from snn_ext.kernels import KernelFallbackWarning, cpu
from snn_ext.snntorch import DietLeaky, SingleSpikeLeaky
from snn_ext.spikingjelly import DietLIFNode, SingleSpikeLIFNode


@settings(max_examples=200, deadline=None)
@given(case=cases())
def test_cpu_fused_matches_reference_on_random_cases(case):
    assert_matches_reference(case, "cpu_fused")


class _CompiledCodeRunEagerly:
    """The functions that ``cpu_compiled`` compiles, run op by op: their logic on many cases at no compile cost."""

    def forward(self, *args):
        return cpu._forward(*args, False)

    def backward(self, *args):
        grad_x, grad_u0, grad_leak, grad_thr = cpu._backward(*args, False)
        return grad_x, grad_u0, grad_leak.sum(0), grad_thr.sum(0)


@settings(max_examples=100, deadline=None)
@given(case=cases())
def test_compiled_backend_code_matches_reference_on_random_cases(case):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cpu, "COMPILED", _CompiledCodeRunEagerly())
        assert_matches_reference(case, "cpu_compiled")


COMPILED_CASES = [
    Case(False, (3, 2, 4, 5, 3), "contiguous", torch.float32, "channel", "scalar", Triangle(0.3), True, True,
         ("spikes", "potentials", "final"), ("x", "u", "leak", "threshold"), 0),
    Case(True, (1, 3, 2, 3, 3), "channels_last", torch.float64, "scalar", "channel", STDB(0.3, 0.1), True, False,
         ("spikes", "final"), ("x", "u", "leak", "threshold"), 1),
    Case(False, (4, 3, 5), "strided", torch.float32, "float", "channel", Box(0.5, 1.0), False, False,
         ("spikes",), ("x", "threshold"), 2),
]  # fmt: skip


@pytest.mark.parametrize("case", COMPILED_CASES, ids=["diet-f32-nchw", "fire_once-f64-channels_last-T1", "diet-flat"])
def test_cpu_compiled_matches_reference(case):
    assert_matches_reference(case, "cpu_compiled")


class _Spy:
    """Wraps a backend's ops and records which of them ran."""

    def __init__(self, ops):
        self.ops, self.calls = ops, []

    def forward(self, *args):
        self.calls.append("forward")
        return self.ops.forward(*args)

    def backward(self, *args):
        self.calls.append("backward")
        return self.ops.backward(*args)


@pytest.fixture
def spies(monkeypatch):
    """Eager and 'compiled' CPU ops replaced by spies (both run eagerly, so nothing compiles)."""
    eager, compiled = _Spy(cpu.EAGER), _Spy(cpu.EAGER)
    monkeypatch.setattr(cpu, "EAGER", eager)
    monkeypatch.setattr(cpu, "COMPILED", compiled)
    return eager, compiled


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each test sees the one-time warnings as if for the first time."""
    monkeypatch.setattr(kernels._warn, "_issued", set())


def _sequence(*shape, seed=0):
    torch.manual_seed(seed)
    return (torch.randn(*shape) * 0.8 + 0.35).requires_grad_(True)


def _params(channels):
    leak = torch.linspace(0.6, 1.0, channels).requires_grad_(True)
    threshold = torch.linspace(0.3, 0.9, channels).requires_grad_(True)
    return leak, threshold


def _values_and_grads(fn, x, params):
    out = fn()
    spikes = out[0]
    (spikes * torch.arange(1.0, spikes.shape[0] + 1).view(-1, *[1] * (spikes.dim() - 1))).sum().backward()
    grads = [p.grad.clone() for p in (x, *params)]
    for p in (x, *params):
        p.grad = None
    return [o for o in out if isinstance(o, torch.Tensor)], grads


def _assert_same(a, b):
    for va, vb in zip(a[0], b[0], strict=True):
        assert torch.equal(va, vb)
    for ga, gb in zip(a[1], b[1], strict=True):
        torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-6)


def test_auto_compiles_a_kernel_key_once_its_calls_of_any_shape_have_run_enough_elements(spies, monkeypatch):
    eager, compiled = spies
    monkeypatch.setattr(kernels, "AUTO_COMPILE_AFTER_ELEMENTS", 3 * 2 * 4 * 50 * 3)  # three large calls
    monkeypatch.setattr(kernels, "_elements", Counter())
    leak, threshold = _params(4)

    def run(*shape: int, u: torch.Tensor | None = None) -> None:
        kernels.diet_lif_multistep(_sequence(*shape), u, leak, threshold).spikes.sum().backward()

    for _ in range(10):
        run(3, 2, 4, 5)  # a small layer: a tenth of the budget in all
    assert (len(eager.calls), compiled.calls) == (20, [])
    for call in range(2):
        run(3, 2, 4, 50)  # a large layer with the same T, dtype and arguments adds to the same count
        assert len(compiled.calls) == (2 if call == 1 else 0)  # 10 small + 2 large calls reach the budget
    run(3, 2, 4, 5)
    assert len(compiled.calls) == 4  # the small layer runs compiled now too
    run(3, 2, 4, 50, u=torch.zeros(2, 4, 50))  # another kernel key (an initial potential): counted apart
    run(2, 2, 4, 50)  # another T: counted apart
    assert (len(eager.calls), len(compiled.calls)) == (26, 4)
    monkeypatch.setattr(kernels, "AUTO_COMPILE_MAX_STEPS", 2)
    run(3, 2, 4, 50)
    assert (len(eager.calls), len(compiled.calls)) == (28, 4)  # too many steps to compile


@pytest.mark.parametrize("face", ["DietLeaky", "DietLIFNode", "SingleSpikeLeaky", "SingleSpikeLIFNode"])
def test_faces_run_the_fused_kernel_by_default_and_equal_the_reference(spies, face):
    eager, _ = spies
    x = _sequence(4, 3, 5, 6, 6)
    leak, threshold = (torch.full((5,), 0.9), torch.linspace(0.4, 0.8, 5))
    if face in ("DietLeaky", "SingleSpikeLeaky"):
        cls = {"DietLeaky": DietLeaky, "SingleSpikeLeaky": SingleSpikeLeaky}[face]
        neuron = cls(beta=leak.view(-1, 1, 1), threshold=threshold.view(-1, 1, 1))  # snnTorch's per-channel shape
        params = (neuron.beta, neuron.threshold)

        def call():
            neuron.reset_mem()
            return neuron.forward_sequence(x)

    else:
        cls = {"DietLIFNode": DietLIFNode, "SingleSpikeLIFNode": SingleSpikeLIFNode}[face]
        neuron = cls(leak=leak, v_threshold=threshold, step_mode="m")
        params = (neuron.leak, neuron.v_threshold)

        def call():
            functional.reset_net(neuron)
            return (neuron(x), neuron.v)

    fused = _values_and_grads(call, x, params)
    assert eager.calls == ["forward", "backward"]
    with kernels.use_backend("reference"):
        reference = _values_and_grads(call, x, params)
    assert eager.calls == ["forward", "backward"]
    assert fused[0][0].sum() > 0
    _assert_same(fused, reference)


def test_use_backend_overrides_and_restores(spies):
    eager, _ = spies
    x = _sequence(2, 3, 4)
    assert kernels.current_backend() == "auto"
    with kernels.use_backend("reference"):
        assert kernels.current_backend() == "reference"
        with kernels.use_backend("cpu_fused"):
            out = kernels.diet_lif_multistep(x, None, 0.9, 0.5)
            assert type(out.spikes.grad_fn).__name__ == "_FusedLIFBackward"
        out = kernels.diet_lif_multistep(x, None, 0.9, 0.5)
        assert type(out.spikes.grad_fn).__name__ == "StackBackward0"
    assert kernels.current_backend() == "auto"
    assert eager.calls == ["forward"]


def test_use_backend_rejects_unknown_names():
    with pytest.raises(ValueError, match="name must be one of"), kernels.use_backend("cuda"):
        pass


class _ShiftedTriangle(Triangle):
    """A subclass may change the derivative, so the kernels do not take it."""

    def derivative(self, z):
        return super().derivative(z - 0.1)


def _fallback_case(spies, expected_warning, call, reference):
    eager, compiled = spies
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        first = call()
        call()
    messages = [str(w.message) for w in record if issubclass(w.category, KernelFallbackWarning)]
    assert len(messages) == 1, "the fallback warns once"
    assert re.search(expected_warning, messages[0]), messages[0]
    assert eager.calls == compiled.calls == []
    assert torch.equal(first.spikes, reference.spikes)
    torch.testing.assert_close(first.final, reference.final)


def test_unsupported_surrogate_falls_back_with_one_warning(spies):
    x, surrogate = _sequence(3, 2, 4), _ShiftedTriangle()
    reference = core.diet_lif_multistep(x, None, 0.9, 0.5, surrogate)
    _fallback_case(
        spies,
        "no fused kernel for the surrogate _ShiftedTriangle",
        lambda: kernels.diet_lif_multistep(x, None, 0.9, 0.5, surrogate),
        reference,
    )


def test_stdb_is_fused_only_for_fire_once_neurons(spies):
    x = _sequence(3, 2, 4)
    with pytest.raises(TypeError), pytest.warns(KernelFallbackWarning, match="surrogate STDB"):
        kernels.diet_lif_multistep(x, None, 0.9, 0.5, STDB())  # the reference rejects it, as without kernels


def test_unsupported_dtype_falls_back(spies):
    x = _sequence(3, 2, 4).detach().half()
    reference = core.diet_lif_multistep(x, None, 0.9, 0.5)
    _fallback_case(
        spies,
        "supports float32 and float64, got torch.float16",
        lambda: kernels.diet_lif_multistep(x, None, 0.9, 0.5),
        reference,
    )


@pytest.mark.parametrize("x_dtype", [torch.float64, torch.bfloat16])
def test_mixed_dtypes_compute_in_the_promoted_dtype_like_the_reference(spies, x_dtype):
    eager, _ = spies
    x = _sequence(3, 2, 4).detach().to(x_dtype).requires_grad_(True)
    u0 = torch.zeros(2, 4, dtype=x_dtype)
    threshold = torch.linspace(0.3, 0.9, 4).requires_grad_(True)  # float32, per channel: promotes

    def call(fn):
        out = fn(x, u0, 0.9, threshold)
        (out.spikes * torch.arange(1.0, 4.0).view(3, 1, 1)).sum().backward()
        grads = (x.grad.clone(), threshold.grad.clone())
        x.grad, threshold.grad = None, None
        return out, grads

    fused, fused_grads = call(kernels.diet_lif_multistep)
    assert eager.calls == ["forward", "backward"]
    reference, ref_grads = call(core.diet_lif_multistep)
    assert fused.spikes.dtype == reference.spikes.dtype == torch.promote_types(x_dtype, torch.float32)
    assert torch.equal(fused.spikes, reference.spikes)
    assert torch.equal(fused.potentials, reference.potentials)
    for got, ref in zip(fused_grads, ref_grads, strict=True):
        assert got.dtype == ref.dtype
        tol = 1e-5 if got.dtype != torch.bfloat16 else 1e-2  # float32 sums in another order, then rounded
        torch.testing.assert_close(got, ref, rtol=tol, atol=tol)


def test_triton_without_cuda_falls_back(spies, monkeypatch):
    monkeypatch.setattr(kernels, "_triton_ops", lambda: (object(), False))
    x = _sequence(3, 2, 4)
    reference = core.diet_lif_multistep(x, None, 0.9, 0.5)
    with kernels.use_backend("triton"):
        _fallback_case(spies, "needs CUDA tensors", lambda: kernels.diet_lif_multistep(x, None, 0.9, 0.5), reference)


def test_missing_triton_falls_back(spies, monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # import triton now raises ImportError
    monkeypatch.delitem(sys.modules, "snn_ext.kernels.triton_ops", raising=False)
    monkeypatch.delattr(kernels, "triton_ops", raising=False)
    x = _sequence(3, 2, 4)
    reference = core.diet_lif_multistep(x, None, 0.9, 0.5)
    with kernels.use_backend("triton"):
        _fallback_case(
            spies,
            "needs Triton, which cannot be imported",
            lambda: kernels.diet_lif_multistep(x, None, 0.9, 0.5),
            reference,
        )


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (lambda fn: torch._dynamo.exc.BackendCompilerFailed(fn, RuntimeError("no C++ compiler"), None), "no C.. comp"),
        (lambda fn: torch._dynamo.exc.Unsupported("cannot trace list.__setitem__"), "Unsupported: cannot trace list"),
    ],
    ids=["no-compiler", "untraceable"],
)
def test_failed_compilation_warns_once_and_runs_eagerly(monkeypatch, error, message):
    ops = cpu.CpuOps(compiled=True)

    def broken(*args):
        raise error(broken)

    monkeypatch.setattr(ops, "_compiled_forward", broken)
    monkeypatch.setattr(cpu, "COMPILED", ops)
    x, (leak, threshold) = _sequence(3, 2, 4), _params(4)
    with kernels.use_backend("cpu_compiled"), pytest.warns(KernelFallbackWarning, match=message):
        fused = _values_and_grads(lambda: kernels.diet_lif_multistep(x, None, leak, threshold), x, (leak, threshold))
    assert not ops.compiled
    reference = _values_and_grads(lambda: core.diet_lif_multistep(x, None, leak, threshold), x, (leak, threshold))
    _assert_same(fused, reference)


def test_default_surrogates_match_the_core_defaults():
    x, (leak, threshold) = _sequence(4, 3, 4), _params(4)
    for fused_fn, core_fn in (
        (kernels.diet_lif_multistep, core.diet_lif_multistep),
        (kernels.single_spike_lif_multistep, core.single_spike_lif_multistep),
    ):
        fused = _values_and_grads(lambda f=fused_fn: f(x, None, leak, threshold), x, (leak, threshold))
        reference = _values_and_grads(lambda f=core_fn: f(x, None, leak, threshold), x, (leak, threshold))
        _assert_same(fused, reference)


@pytest.mark.parametrize("backend", ["cpu_fused", "reference"])
def test_potentials_false_returns_none(backend):
    with kernels.use_backend(backend):
        assert kernels.diet_lif_multistep(_sequence(2, 3, 4), None, 0.9, 0.5, potentials=False).potentials is None
        out = kernels.single_spike_lif_multistep(_sequence(2, 3, 4), None, 0.9, 0.5, potentials=False)
    assert out.potentials is None
    assert out.state.step == 2


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda f: f(torch.zeros(0, 2, 3), None, 0.9, 0.5), ValueError, "empty time dimension"),
        (lambda f: f(torch.full((2, 2, 3), float("nan")), None, 0.9, 0.5), ValueError, "x_seq contains NaN"),
        (lambda f: f(torch.zeros(2, 2, 3), None, torch.ones(4), 0.5), ValueError, "per-channel leak has 4 values"),
        (lambda f: f(torch.zeros(2, 2, 3), None, 0.9, -1.0), ValueError, "threshold must be > 0"),
    ],
)
@pytest.mark.parametrize("fn", ["diet_lif_multistep", "single_spike_lif_multistep"])
def test_bad_input_raises_the_core_errors(call, error, match, fn):
    with validate_values(), pytest.raises(error, match=match):
        call(getattr(kernels, fn))


def test_initial_potential_of_wrong_shape_raises_the_core_error():
    x, u = torch.zeros(2, 2, 3), torch.zeros(2, 4)
    with pytest.raises(ValueError, match=r"u \(membrane potential\)"):
        kernels.diet_lif_multistep(x, u, 0.9, 0.5)
    state = core.SingleSpikeState(u, core.SpikeTimeRecord(u), 0)
    with pytest.raises(ValueError, match=r"u \(membrane potential\)"):
        kernels.single_spike_lif_multistep(x, state, 0.9, 0.5)


def _saved_bytes(fn):
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


@pytest.mark.parametrize("fire_once", [False, True])
def test_fused_saves_only_the_input_and_small_state(fire_once):
    x, (leak, threshold) = _sequence(6, 4, 8, 16, 16), _params(8)
    u0 = torch.zeros(4, 8, 16, 16)
    if fire_once:
        fused = _saved_bytes(lambda: kernels.single_spike_lif_multistep(x, None, leak, threshold))
        reference = _saved_bytes(lambda: core.single_spike_lif_multistep(x, None, leak, threshold))
    else:
        fused = _saved_bytes(lambda: kernels.diet_lif_multistep(x, u0, leak, threshold))
        reference = _saved_bytes(lambda: core.diet_lif_multistep(x, u0, leak, threshold))
    step_bytes = u0.nbytes
    assert fused <= x.nbytes + step_bytes + 1024  # x itself, plus u0 (DIET) or the spike times (fire-once)
    assert reference >= 3 * fused


@pytest.mark.parametrize("surrogate", [Triangle(0.3), STDB(0.3, 0.2)])
def test_fire_once_continued_over_two_calls_equals_the_reference(surrogate):
    x, (leak, threshold) = _sequence(6, 3, 4, 5), _params(4)
    grad = torch.randn(6, 3, 4, 5)

    def two_calls(fn):
        first = fn(x[:2], None, leak, threshold, surrogate)
        second = fn(x[2:], first.state, leak, threshold, surrogate)
        spikes = torch.cat([first.spikes, second.spikes])
        (spikes * grad).sum().backward()  # STDB reads the spike times of the whole sequence, as the core does
        grads = [p.grad.clone() for p in (x, leak, threshold)]
        for p in (x, leak, threshold):
            p.grad = None
        return spikes, second.state, grads

    spikes, state, grads = two_calls(kernels.single_spike_lif_multistep)
    ref_spikes, ref_state, ref_grads = two_calls(core.single_spike_lif_multistep)
    assert torch.equal(spikes, ref_spikes)
    assert torch.equal(state.record.times, ref_state.record.times)
    assert (state.step, state.record.steps) == (ref_state.step, ref_state.record.steps) == (6, 6)
    for g, ref in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, ref, rtol=1e-5, atol=1e-6)


def test_final_potential_can_be_detached_in_place_and_no_grad_works():
    x = _sequence(3, 2, 4)
    out = kernels.diet_lif_multistep(x, None, 0.9, 0.5)
    out.final.detach_()  # SpikingJelly's detach_net does this to its memories
    assert not out.final.requires_grad
    with torch.no_grad():
        out = kernels.diet_lif_multistep(x, None, 0.9, 0.5)
    assert out.spikes.grad_fn is None
