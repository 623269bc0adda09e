"""Multi-spike DIET neurons with the official STDB rule (``STDB(time="since_last")``), both faces.

Hand-computed example: one neuron, leak 1, threshold 1, input 0.625 at each of 5 steps. The potential is
0.625, 1.25 (spike, -> 0.25), 0.875, 1.5 (spike, -> 0.5), 1.125 (spike): spikes at steps 1, 3, 4. The official
pseudo-derivative at step t is ``alpha * exp(-beta * (t - t_last))`` with ``t_last`` the latest spike before
``t`` (-1000 before the first): ``d = 0.3 * exp(-0.01 * [1000, 1001, 1, 2, 1])``. With leak 1 and threshold 1,
``z_t`` depends on every earlier input with slope 1 (the reset is detached), so the gradient of the spike count
with respect to ``x_s`` is ``sum(d[t] for t >= s)``.
"""

import math

import pytest
import torch
from compile_checks import assert_compiled_equals_eager, breaks, spikes_and_loss
from spikingjelly.activation_based import functional

from snn_ext.core.neuron import DietSTDBState, diet_stdb_multistep, diet_stdb_step
from snn_ext.core.surrogate import STDB
from snn_ext.kernels import KernelFallbackWarning
from snn_ext.snntorch import DietLeaky
from snn_ext.spikingjelly import DietLIFNode

SPIKES = [0.0, 1.0, 0.0, 1.0, 1.0]
D = [0.3 * math.exp(-0.01 * gap) for gap in (1000, 1001, 1, 2, 1)]
GRAD = [sum(D[t:]) for t in range(5)]


def _x() -> torch.Tensor:
    return torch.full((5, 1), 0.625, requires_grad=True)


def _snntorch_steps(lif: DietLeaky, x_seq: torch.Tensor) -> torch.Tensor:
    mem, spikes = lif.reset_mem(), []
    for x in x_seq:
        spk, mem = lif(x, mem)
        spikes.append(spk)
    return torch.stack(spikes)


def _spikingjelly(node: DietLIFNode, x_seq: torch.Tensor) -> torch.Tensor:
    functional.reset_net(node)
    return node(x_seq) if node.step_mode == "m" else torch.stack([node(x) for x in x_seq])


def _since_last() -> STDB:
    return STDB(0.3, 0.01, time="since_last")


def _core_steps(x_seq: torch.Tensor) -> torch.Tensor:
    state, spikes = None, []
    for x in x_seq:
        spike, state = diet_stdb_step(x, state, 1.0, 1.0, _since_last())
        spikes.append(spike)
    assert isinstance(state, DietSTDBState)
    assert state.last_spike.item() == 4
    assert state.step == 5
    return torch.stack(spikes)


RUNS = {
    "snntorch-steps": lambda x: _snntorch_steps(DietLeaky(beta=1.0, spike_grad=_since_last()), x),
    "snntorch-sequence": lambda x: DietLeaky(beta=1.0, spike_grad=_since_last()).forward_sequence(x)[0],
    "spikingjelly-s": lambda x: _spikingjelly(DietLIFNode(surrogate_function=_since_last()), x),
    "spikingjelly-m": lambda x: _spikingjelly(DietLIFNode(surrogate_function=_since_last(), step_mode="m"), x),
    "core-steps": _core_steps,
    "core-sequence": lambda x: diet_stdb_multistep(x, None, 1.0, 1.0, _since_last()).spikes,
}


@pytest.mark.filterwarnings("ignore::snn_ext.kernels.KernelFallbackWarning")
@pytest.mark.parametrize("name", list(RUNS))
def test_official_rule_on_the_hand_computed_example(name):
    x = _x()
    spikes = RUNS[name](x)
    assert spikes.flatten().tolist() == SPIKES
    spikes.sum().backward()
    assert x.grad.flatten().tolist() == pytest.approx(GRAD, rel=1e-6)


def test_a_reset_starts_a_new_sequence_and_whole_sequences_say_they_run_the_reference(monkeypatch):
    from snn_ext import kernels

    monkeypatch.setattr(kernels._warn, "_issued", set())
    lif = DietLeaky(beta=1.0, spike_grad=_since_last())
    _snntorch_steps(lif, _x())
    x = _x()
    again = _snntorch_steps(lif, x)  # reset_mem() inside: no spike before step 0 of the new sequence
    again.sum().backward()
    assert x.grad.flatten().tolist() == pytest.approx(GRAD, rel=1e-6)
    with pytest.warns(KernelFallbackWarning, match=r"STDB\(time='since_last'\)"):
        lif.forward_sequence(_x())


def test_fire_once_rule_is_refused_for_multi_spike_neurons():
    with pytest.raises(ValueError, match=r"multi-spike DIET neurons train with STDB\(time='since_last'\)"):
        DietLeaky(spike_grad=STDB())
    with pytest.raises(ValueError, match="since_last"):
        DietLIFNode(surrogate_function=STDB(time="spike"))


def test_the_causal_rule_compiles_single_steps_without_a_break():
    x_seq = (torch.arange(20.0).view(5, 4) % 7 + 0.125) / 8

    def step(lif, x):
        return spikes_and_loss(_snntorch_steps(lif, x))

    lif = DietLeaky(beta=0.5, spike_grad=_since_last())
    assert breaks(lambda x: _snntorch_steps(lif, x), x_seq) == 0
    eager, compiled = (DietLeaky(beta=0.5, spike_grad=_since_last()) for _ in range(2))
    assert_compiled_equals_eager(step, eager, compiled, x_seq)


def test_the_plain_diet_functions_point_to_the_stdb_ones():
    from snn_ext import kernels
    from snn_ext.core.neuron import diet_lif_multistep, diet_lif_step

    for call in (
        lambda: diet_lif_step(torch.ones(2, 3), None, 1.0, 1.0, _since_last()),
        lambda: diet_lif_multistep(torch.ones(4, 2, 3), None, 1.0, 1.0, _since_last()),
        lambda: kernels.diet_lif_multistep(torch.ones(4, 2, 3), None, 1.0, 1.0, _since_last()),
    ):
        with pytest.raises(TypeError, match="DIET neurons train with it through diet_stdb_step"):
            call()
