"""SpikingJelly conformance: the idioms SpikingJelly's own test suite and its users rely on, native nodes and ours
side by side (compile without graph breaks, keywords, threshold assignment, 0-d input, op counter, pickling,
deepcopy mid-sequence, dtype moves).

Inputs are multiples of 1/16 plus 1/128 and parameters powers of two, so potentials are exact and never equal a
threshold (SpikingJelly fires at ``v >= v_threshold``, DIET and snnTorch at ``v > threshold``), and the native LIF
node (``tau=2, decay_input=False, v_reset=None, detach_reset=True``: DIET's update with leak 1/2) and ours can be
compared with ``torch.equal``.
"""

import copy
import io

import pytest
import torch
from compile_checks import assert_compiled_equals_eager, breaks, spikes_and_loss
from spikingjelly.activation_based import functional, neuron
from spikingjelly.activation_based.op_counter import base, neuron_state

from snn_ext import kernels
from snn_ext.core import Triangle
from snn_ext.spikingjelly import DietLIFNode, SingleSpikeLIFNode

T = 4


def _dyadic(*shape: int, high: int = 24) -> torch.Tensor:
    torch.manual_seed(0)
    return (torch.randint(0, high, shape).float() + 0.125) / 16


def _native(**keywords) -> neuron.LIFNode:
    """SpikingJelly's LIF node with DIET's update: ``v = (1 - 1/tau) v + x``, soft reset, detached reset."""
    return neuron.LIFNode(tau=2.0, decay_input=False, v_reset=None, detach_reset=True, **keywords)


def _ours(**keywords) -> DietLIFNode:
    return DietLIFNode(tau=2.0, decay_input=False, **keywords)


def _run(node, x_seq: torch.Tensor) -> torch.Tensor:
    functional.reset_net(node)
    if node.step_mode == "m":
        return node(x_seq)
    return torch.stack([node(x) for x in x_seq])


NODES = {
    "LIFNode": lambda **kw: _native(**kw),
    "DietLIFNode": lambda **kw: DietLIFNode(**kw),
    "SingleSpikeLIFNode": lambda **kw: SingleSpikeLIFNode(surrogate_function=Triangle(), **kw),
}


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("name", list(NODES))
def test_no_graph_break(name, step_mode):
    node = NODES[name](step_mode=step_mode)
    x = torch.rand(T, 3, 4) if step_mode == "m" else torch.rand(3, 4)
    assert breaks(node, x) == 0


@pytest.mark.parametrize("backend", kernels.BACKENDS[:-1])  # Triton needs CUDA (or its interpreter)
@pytest.mark.parametrize("cls", [DietLIFNode, SingleSpikeLIFNode])
def test_multi_step_has_no_graph_break_on_every_backend(cls, backend):
    node = cls(v_threshold=torch.full((2,), 0.75), step_mode="m")
    with kernels.use_backend(backend):
        assert breaks(node, torch.rand(T, 3, 2, 4, 4)) == 0


def _loss(node, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return spikes_and_loss(_run(node, x_seq))


@pytest.mark.parametrize(
    ("name", "step_mode"),
    [("LIFNode", "s"), ("LIFNode", "m"), ("DietLIFNode", "s"), ("DietLIFNode", "m"), ("STDB", "m")],
)
def test_fullgraph_training_step_equals_eager(name, step_mode):
    make = (lambda **kw: SingleSpikeLIFNode(**kw)) if name == "STDB" else NODES[name]
    eager, compiled = make(step_mode=step_mode), make(step_mode=step_mode)
    assert_compiled_equals_eager(_loss, eager, compiled, _dyadic(T, 3, 2, 4))


def test_fire_once_single_steps_with_stdb_stay_exact_under_compile():
    """STDB's backward reads the spike times after the sequence; per-step graphs run that call outside the graph."""
    x_seq = _dyadic(T, 3, 4, high=40)
    assert breaks(_loss, SingleSpikeLIFNode(), x_seq) > 0
    assert_compiled_equals_eager(_loss, SingleSpikeLIFNode(), SingleSpikeLIFNode(), x_seq, fullgraph=False)


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_lif_keywords_with_diets_values_give_the_native_numbers(step_mode):
    x_seq = _dyadic(T, 3, 4)
    native = _run(_native(step_mode=step_mode, store_v_seq=True), x_seq)
    ours_node = _ours(step_mode=step_mode, store_v_seq=True, v_reset=None, detach_reset=True)
    assert ours_node.leak.item() == 0.5
    ours = _run(ours_node, x_seq)
    assert torch.equal(ours, native)
    assert native.sum() > 0


@pytest.mark.parametrize(
    ("keywords", "says"),
    [
        ({"v_reset": 0.0}, "DIET resets by subtracting the threshold"),
        ({"detach_reset": False}, "reset indicator carries no gradient"),
        ({"tau": 2.0}, "tau needs decay_input=False"),
        ({"tau": 2.0, "decay_input": True}, "scales the input by 1/tau"),
        ({"decay_input": True}, "scales the input by 1/tau"),
        ({"tau": 2.0, "decay_input": False, "leak": 0.5}, "pass leak or tau, not both"),
        ({"tau": 0.5, "decay_input": False}, "tau must be a number >= 1"),
    ],
)
@pytest.mark.parametrize("cls", [DietLIFNode, SingleSpikeLIFNode])
def test_keywords_diet_does_not_implement_are_refused(cls, keywords, says):
    with pytest.raises(ValueError, match=says):
        cls(**keywords)


def test_threshold_assignment_like_threshold_balancing_scripts():
    native, ours = _native(), _ours()
    native.v_threshold = 0.5  # a float attribute of SpikingJelly's nodes
    ours.v_threshold = 0.5  # sets our Parameter's value, checked
    ours.leak = torch.tensor(0.5)
    x_seq = _dyadic(T, 3, 4)
    assert isinstance(ours.v_threshold, torch.nn.Parameter)
    assert ours.v_threshold.item() == 0.5
    assert torch.equal(_run(ours, x_seq), _run(native, x_seq))
    with pytest.raises(ValueError, match="v_threshold must be > 0"):
        ours.v_threshold = 0.0
    with pytest.raises(ValueError, match="v_threshold must be a scalar .* or a 1-d tensor"):
        ours.v_threshold = torch.ones(2, 2)


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_zero_dim_input_like_spikingjelly(step_mode):
    x_seq = _dyadic(T)  # 's': T calls with a 0-d tensor; 'm': one [T] sequence of 0-d steps
    native = _run(_native(step_mode=step_mode), x_seq)
    ours = _run(_ours(step_mode=step_mode), x_seq)
    assert torch.equal(ours, native)
    assert ours.shape == (T,)


def _state_metrics(node, x_seq: torch.Tensor) -> dict[str, int]:
    counter = neuron_state.NeuronStateCounter()
    functional.reset_net(node)
    with base.DispatchCounterMode([counter]):
        node(x_seq)
    return dict(counter.metric_records["Global"])


def test_spikingjellys_op_counter_sees_the_multi_step_neuron():
    """Under a TorchDispatchMode the whole-sequence call runs the reference, whose state ops the counter counts."""
    x_seq = _dyadic(T, 2, 29)
    counted = _state_metrics(DietLIFNode(step_mode="m"), x_seq)
    with kernels.use_backend("reference"):
        reference = _state_metrics(DietLIFNode(step_mode="m"), x_seq)
    assert counted == reference
    assert counted["state_writes"] > 0
    # DIET compares twice per neuron and step (to fire, and for the reset indicator), SpikingJelly's IF node once
    assert counted["state_comps"] == _state_metrics(neuron.IFNode(step_mode="m"), x_seq)["state_comps"] * 2


@pytest.mark.parametrize("cls", [neuron.LIFNode, DietLIFNode, SingleSpikeLIFNode])
def test_pickle_and_deepcopy_mid_sequence(cls):
    x_seq = _dyadic(T, 3, 4, high=40)
    node = cls(surrogate_function=Triangle())
    with torch.no_grad():  # a state with autograd history cannot be deep-copied, for SpikingJelly's nodes either
        first = [node(x) for x in x_seq[:2]]
        clone = copy.deepcopy(node)
        buffer = io.BytesIO()
        torch.save(node, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        rest = [node(x) for x in x_seq[2:]]
        assert all(torch.equal(a, b) for a, b in zip(rest, [clone(x) for x in x_seq[2:]], strict=True))
        assert all(torch.equal(a, b) for a, b in zip(rest, [loaded(x) for x in x_seq[2:]], strict=True))
    assert torch.stack(first + rest).sum() > 0


def test_dtype_moves_like_spikingjelly():
    native, ours = _native().double(), _ours().double()
    x = _dyadic(3, 4).double()
    assert ours.leak.dtype == ours.v_threshold.dtype == torch.float64
    native(x)
    ours(x)
    assert native.v.dtype == ours.v.dtype == torch.float64
