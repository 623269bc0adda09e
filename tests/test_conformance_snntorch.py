"""snnTorch conformance: the idioms snnTorch's own test suite and its users rely on, native ``snn.Leaky`` and ours
side by side (compile without graph breaks, broadcasting of parameter shapes, keywords, assignment, 0-d input,
pickling, deepcopy mid-sequence, dtype moves, NIR export).

Inputs are multiples of 1/16 and parameters powers of two, so every potential is exact in float32 and the
native neuron and ours can be compared with ``torch.equal``. snnTorch's ``reset_delay=False`` equals DIET's
update as long as a potential never stays above threshold after its reset, which inputs below 3/4 of the
smallest threshold (0.5 here) guarantee for ``beta = 0.5``.
"""

import copy
import io
import warnings
from functools import partial

import pytest
import snntorch as snn
import torch
from compile_checks import assert_compiled_equals_eager, breaks, spikes_and_loss
from snntorch import surrogate
from snntorch.functional import quant

from snn_ext import kernels
from snn_ext.core import Triangle
from snn_ext.kernels import KernelFallbackWarning
from snn_ext.snntorch import DietLeaky, SingleSpikeLeaky

T = 4


def _dyadic(*shape: int, high: int = 12) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randint(0, high, shape).float() / 16


def _native(beta=0.5, threshold=1.0, **keywords) -> snn.Leaky:
    """snnTorch's Leaky with DIET's same-step reset (``reset_delay=False``): the same numbers as ``DietLeaky``."""
    return snn.Leaky(beta=beta, threshold=threshold, reset_delay=False, **keywords)


def _steps(neuron, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """snnTorch's loop idiom: ``mem = reset_mem()``, then ``spk, mem = lif(x[t], mem)``."""
    mem = neuron.reset_mem()
    spikes, potentials = [], []
    for x in x_seq:
        spk, mem = neuron(x, mem)
        spikes.append(spk)
        potentials.append(mem)
    return torch.stack(spikes), torch.stack(potentials)


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each test sees the one-time kernel warnings as if for the first time."""
    monkeypatch.setattr(kernels._warn, "_issued", set())


NEURONS = {  # native: snnTorch's defaults (its reset_delay=False path reads a tensor in a Python `if`: a graph break)
    "snn.Leaky": lambda **kw: snn.Leaky(**kw),
    "DietLeaky": lambda **kw: DietLeaky(**kw),
    "SingleSpikeLeaky": lambda **kw: SingleSpikeLeaky(spike_grad=Triangle(), **kw),
}


@pytest.mark.parametrize("init_hidden", [False, True])
@pytest.mark.parametrize("name", list(NEURONS))
def test_single_step_has_no_graph_break(name, init_hidden):
    neuron = NEURONS[name](beta=0.5, init_hidden=init_hidden)
    assert breaks(neuron, torch.rand(3, 4)) == 0


@pytest.mark.parametrize("backend", kernels.BACKENDS[:-1])  # Triton needs CUDA (or its interpreter)
@pytest.mark.parametrize("cls", [DietLeaky, SingleSpikeLeaky])
def test_whole_sequence_has_no_graph_break_on_every_backend(cls, backend):
    neuron = cls(beta=0.5, threshold=torch.full((2, 1, 1), 0.75))
    with kernels.use_backend(backend):
        assert breaks(neuron.forward_sequence, torch.rand(T, 3, 2, 4, 4)) == 0


def _training_step(neuron, x_seq: torch.Tensor, whole: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if whole:
        neuron.reset_mem()
        return spikes_and_loss(neuron.forward_sequence(x_seq)[0])
    return spikes_and_loss(_steps(neuron, x_seq)[0])


@pytest.mark.parametrize(
    ("name", "whole"),
    [("snn.Leaky", False), ("DietLeaky", False), ("SingleSpikeLeaky", False), ("DietLeaky", True), ("STDB", True)],
)
def test_fullgraph_training_step_equals_eager(name, whole):
    """``torch.compile(fullgraph=True)`` of forward and backward (snnTorch's own test compiles Leaky fullgraph)."""
    make = (lambda **kw: SingleSpikeLeaky(**kw)) if name == "STDB" else NEURONS[name]
    eager, compiled = make(beta=0.5, threshold=0.75), make(beta=0.5, threshold=0.75)
    step = partial(_training_step, whole=whole)
    assert_compiled_equals_eager(step, eager, compiled, _dyadic(T, 3, 2, 4))


def test_inductor_compiles_a_whole_sequence_and_reads_no_value_on_the_host():
    neuron = DietLeaky(beta=0.5, threshold=torch.tensor([0.5, 1.0]).view(2, 1, 1))
    x_seq = _dyadic(T, 3, 2, 4, 4)
    reference = neuron.forward_sequence(x_seq)
    torch._dynamo.reset()
    compiled = torch.compile(neuron.forward_sequence, fullgraph=True)  # Inductor
    neuron.reset_mem()
    out = compiled(x_seq)
    assert torch.equal(out[0], reference[0])
    assert torch.equal(out[1], reference[1])


def test_fire_once_single_steps_with_stdb_break_once_per_step_and_stay_exact():
    """STDB's backward reads the spike times after the sequence: per-step graphs cannot hold that tape."""
    x_seq = _dyadic(T, 3, 4, high=40)
    neuron = SingleSpikeLeaky(beta=0.5)
    assert breaks(lambda x: _steps(neuron, x), x_seq) > 0
    step = partial(_training_step, whole=False)
    assert_compiled_equals_eager(step, SingleSpikeLeaky(beta=0.5), SingleSpikeLeaky(beta=0.5), x_seq, fullgraph=False)


@pytest.mark.parametrize(
    ("step", "shape"),
    [
        ((3, 2, 4, 5), ()),
        ((3, 2, 4, 5), (1,)),
        ((3, 2, 4, 5), (5,)),  # 1-d: the last dimension (W), as in snnTorch
        ((3, 2, 4, 5), (2, 1, 1)),  # per channel
        ((3, 2, 4, 5), (1, 2, 1, 1)),
        ((3, 2, 4, 5), (4, 5)),
        ((3, 2, 4, 5), (2, 4, 5)),  # per neuron
        ((3, 6), (6,)),  # per feature of [B, F]
        ((3, 6), (1, 6)),
    ],
)
def test_parameter_shapes_broadcast_like_snntorch(step, shape):
    torch.manual_seed(1)
    beta = torch.full(shape, 0.5) if not shape else torch.tensor(0.5)
    threshold = 2.0 ** -torch.randint(0, 2, shape).float()  # 1 or 0.5
    x_seq = _dyadic(T, *step)
    native = _steps(_native(beta=beta.clone(), threshold=threshold.clone()), x_seq)
    ours = DietLeaky(beta=beta, threshold=threshold)
    spikes, potentials = _steps(ours, x_seq)
    assert torch.equal(spikes, native[0])
    assert torch.equal(potentials, native[1])
    assert spikes.sum() > 0
    spikes.sum().backward()
    assert ours.beta.grad.shape == ours.beta.shape
    assert ours.threshold.grad.shape == ours.threshold.shape
    ours.reset_mem()
    per_neuron = shape in ((5,), (4, 5), (2, 4, 5))  # the rest is one value per layer or per channel (dimension 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        whole = ours.forward_sequence(x_seq)
    assert torch.equal(whole[0], spikes)
    assert torch.equal(whole[1], potentials)
    fell_back = any(issubclass(w.category, KernelFallbackWarning) and "per-neuron" in str(w.message) for w in caught)
    assert fell_back == per_neuron


def test_parameter_that_does_not_broadcast_is_refused_with_snntorchs_rule():
    with pytest.raises(ValueError, match=r"threshold of shape \(2,\) .*shape \[C, 1, 1\]"):
        DietLeaky(threshold=torch.ones(2))(torch.ones(3, 2, 4, 5))  # snnTorch raises too: (2,) vs W = 5
    with pytest.raises(RuntimeError):
        _native(threshold=torch.ones(2))(torch.ones(3, 2, 4, 5))


def test_keywords_with_diets_values_are_accepted():
    x_seq = _dyadic(T, 3, 4)
    default = _steps(DietLeaky(beta=0.5), x_seq)
    explicit = DietLeaky(
        beta=0.5,
        reset_mechanism="subtract",
        reset_delay=False,
        inhibition=False,
        graded_spikes_factor=1.0,
        learn_graded_spikes_factor=False,
    )
    assert explicit.reset_delay is False
    assert explicit.reset_mechanism == "subtract"
    assert DietLeaky().reset_delay is False
    out = _steps(explicit, x_seq)
    assert torch.equal(out[0], default[0])
    assert torch.equal(out[1], default[1])


@pytest.mark.parametrize(
    ("keyword", "value", "says"),
    [
        ("reset_mechanism", "zero", "DIET resets by subtracting the threshold"),
        ("reset_mechanism", "none", "subtracting"),
        ("reset_delay", True, "in the step that fires"),
        ("inhibition", True, "independently"),
        ("graded_spikes_factor", 2.0, "0 or 1"),
        ("learn_graded_spikes_factor", True, "0 or 1"),
    ],
)
def test_keywords_diet_does_not_implement_are_refused_saying_what_diet_does(keyword, value, says):
    with pytest.raises(ValueError, match=f"{keyword}={value!r} is not DIET's behaviour: .*{says}"):
        DietLeaky(**{keyword: value})
    neuron = DietLeaky()
    with pytest.raises(ValueError, match=says):
        setattr(neuron, keyword, value)  # snnTorch's own tests switch reset_mechanism after construction


def test_surrogate_disable_gives_heaviside_spikes_without_gradient_like_snntorch():
    x = _dyadic(3, 4).requires_grad_()
    native_spk, _ = _native(surrogate_disable=True)(x)
    spk, _ = DietLeaky(beta=0.5, surrogate_disable=True)(x)
    assert torch.equal(spk, native_spk)
    assert not spk.requires_grad
    assert not native_spk.requires_grad


def test_state_quant_is_applied_like_snntorch():
    q = quant.state_quant(num_bits=3, uniform=True, threshold=1.0)
    x_seq = _dyadic(T, 3, 4, high=7)  # inputs below half the threshold keep snnTorch's extra reset term at 0
    native = _steps(_native(state_quant=q), x_seq)
    ours = DietLeaky(beta=0.5, state_quant=q)
    spikes, potentials = _steps(ours, x_seq)
    assert torch.equal(spikes, native[0])
    assert torch.equal(potentials, native[1])
    assert not torch.equal(potentials, _steps(DietLeaky(beta=0.5), x_seq)[1])  # the quantizer changed something
    ours.reset_mem()
    with pytest.warns(KernelFallbackWarning, match="state_quant"):
        whole = ours.forward_sequence(x_seq)
    assert torch.equal(whole[0], spikes)
    assert torch.equal(whole[1], potentials)
    with pytest.raises(TypeError, match="state_quant must be False or a function"):
        DietLeaky(state_quant=3)


def test_assigning_numbers_and_tensors_sets_the_parameters_checked():
    lif = DietLeaky(beta=0.5, threshold=1.0)
    threshold = lif.threshold
    optimizer = torch.optim.SGD(lif.parameters(), lr=0.1)
    lif.threshold = 2.0  # threshold-balancing scripts do this
    lif.beta = 0.25
    assert lif.threshold is threshold
    assert lif.threshold.item() == 2.0
    assert lif.beta.item() == 0.25
    assert any(p is lif.threshold for p in optimizer.param_groups[0]["params"])  # the optimizer still trains it
    lif.threshold = torch.full((4,), 0.5)  # a new shape: a new Parameter, still trainable
    assert isinstance(lif.threshold, torch.nn.Parameter)
    assert lif.threshold.requires_grad
    native = _native(beta=0.25, threshold=torch.full((4,), 0.5))
    assert torch.equal(_steps(lif, _dyadic(T, 3, 4))[0], _steps(native, _dyadic(T, 3, 4))[0])
    with pytest.raises(ValueError, match="threshold must be > 0"):
        lif.threshold = -1.0
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\]"):
        lif.beta = 1.5
    buffers = DietLeaky(learn_threshold=False)
    buffers.threshold = 0.5
    assert "threshold" in dict(buffers.named_buffers())
    assert buffers.threshold.item() == 0.5


def test_zero_dim_input_like_snntorch():
    x_seq = _dyadic(T)
    native = _steps(_native(), x_seq)
    ours = _steps(DietLeaky(beta=0.5), x_seq)
    assert torch.equal(ours[0], native[0])
    assert torch.equal(ours[1], native[1])
    assert ours[0].shape == (T,)


@pytest.mark.parametrize("cls", [snn.Leaky, DietLeaky, SingleSpikeLeaky])
def test_pickle_and_deepcopy_mid_sequence(cls):
    x_seq = _dyadic(T, 3, 4, high=40)
    neuron = cls(beta=0.5, init_hidden=True, spike_grad=Triangle())
    with torch.no_grad():  # a state with autograd history cannot be deep-copied, for snnTorch's neurons either
        first = [neuron(x) for x in x_seq[:2]]
    clone = copy.deepcopy(neuron)  # mid-sequence: the copy continues the same sequence (fire-once record too)
    buffer = io.BytesIO()
    torch.save(neuron, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    with torch.no_grad():
        rest = [neuron(x) for x in x_seq[2:]]
        assert all(torch.equal(a, b) for a, b in zip(rest, [clone(x) for x in x_seq[2:]], strict=True))
        assert all(torch.equal(a, b) for a, b in zip(rest, [loaded(x) for x in x_seq[2:]], strict=True))
    assert torch.stack(first + rest).sum() > 0


def test_dtype_moves_like_snntorch():
    native, ours = _native().double(), DietLeaky(beta=0.5).double()
    x = _dyadic(3, 4).double()
    assert ours.beta.dtype == ours.threshold.dtype == torch.float64
    assert native(x)[1].dtype == ours(x)[1].dtype == torch.float64


def test_snntorch_export_to_nir_refuses_our_neurons():
    pytest.importorskip("nirtorch")
    from snntorch.export_nir import export_to_nir

    net = torch.nn.Sequential(torch.nn.Linear(4, 3), DietLeaky(init_hidden=True))
    with pytest.raises(TypeError, match="cannot export DietLeaky .*a different network"):
        export_to_nir(net, torch.randn(1, 4))
    with pytest.raises(TypeError, match="cannot export SingleSpikeLeaky"):
        export_to_nir(torch.nn.Sequential(torch.nn.Linear(4, 3), SingleSpikeLeaky(init_hidden=True)), torch.randn(1, 4))


def test_native_surrogates_still_work():
    spk, _ = DietLeaky(spike_grad=surrogate.fast_sigmoid())(_dyadic(3, 4, high=40).requires_grad_())
    assert spk.requires_grad
