"""Fire-once (single-spike) DIET LIF neurons with the STDB surrogate: core and both faces."""

import io
import math

import pytest
import snntorch as snn
import torch
from sklearn.datasets import load_digits
from snntorch import utils
from spikingjelly.activation_based import functional, layer
from torch import nn

from snn_ext import kernels
from snn_ext.core import heaviside
from snn_ext.core.encoding import hybrid
from snn_ext.core.neuron import single_spike_lif_multistep, single_spike_lif_step
from snn_ext.core.surrogate import STDB, SpikeTimeRecord, Triangle
from snn_ext.snntorch import SingleSpikeLeaky, reset
from snn_ext.spikingjelly import SingleSpikeLIFNode


def test_hand_computed_fire_once_dynamics():
    x_seq = torch.full((4, 1, 1), 0.6, dtype=torch.float64)
    out = single_spike_lif_multistep(x_seq, None, 1.0, 1.0)
    # u: 0.6 -> 1.2 (fires, reset to 0.2) -> 0.8 -> 1.4 (above threshold, but already fired: silent)
    assert out.spikes.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]
    torch.testing.assert_close(out.potentials.flatten(), torch.tensor([0.6, 0.2, 0.8, 1.4], dtype=torch.float64))
    assert out.state.record.times.item() == 1.0
    assert out.state.step == 4


def test_stdb_derivative_by_hand():
    record = SpikeTimeRecord(torch.zeros(2))
    record.times = torch.tensor([1.0, float("inf")])
    record.steps = 4
    stdb = STDB(alpha=0.3, beta=0.5)
    expected = torch.tensor([0.3 * math.exp(-0.5), 0.3 * math.exp(-0.5 * 4)])  # never fired -> t_spike = T = 4
    torch.testing.assert_close(stdb.derivative(0, record), expected)


@pytest.mark.parametrize("t", [0, 2, 5])
def test_gradcheck_stdb_function(t):
    torch.manual_seed(0)
    record = SpikeTimeRecord(torch.zeros(16, dtype=torch.float64))
    record.times = torch.where(torch.rand(16) > 0.5, torch.randint(0, 6, (16,)).double(), float("inf"))
    record.steps = 6
    stdb = STDB(alpha=0.5, beta=0.035)
    z = torch.empty(16, dtype=torch.float64).uniform_(-2, 2).requires_grad_(True)

    def f(z):  # value of primitive, gradient only from the custom Function's backward
        return stdb(z, t, record) + (stdb.primitive(z, t, record) - heaviside(z)).detach()

    assert torch.autograd.gradcheck(f, (z,), eps=1e-6, atol=1e-6)


def test_gradient_reaches_input_through_stdb():
    x = torch.tensor([[1.5]], dtype=torch.float64, requires_grad=True)
    spike, state = single_spike_lif_step(x, None, 1.0, 2.0, STDB(alpha=0.3, beta=0.01))
    # z = 1.5/2 - 1 < 0: no spike, never fires in a 1-step sequence -> t_spike = T = 1, |0 - 1| = 1
    spike.sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([[0.3 * math.exp(-0.01) / 2.0]], dtype=torch.float64))
    assert state.record.steps == 1


def test_step_loop_and_multistep_agree_in_values_and_gradients():
    torch.manual_seed(0)
    x_seq = (torch.rand(6, 3, 5) * 1.2).requires_grad_(True)
    thr = torch.tensor(0.8, requires_grad=True)
    out = single_spike_lif_multistep(x_seq, None, 0.9, thr)
    (out.spikes * torch.arange(1, 7).view(6, 1, 1)).sum().backward()
    grads = (x_seq.grad.clone(), thr.grad.clone())
    x_seq.grad, thr.grad = None, None
    state, spikes = None, []
    for x in x_seq:
        s, state = single_spike_lif_step(x, state, 0.9, thr)
        spikes.append(s)
    spikes = torch.stack(spikes)
    assert torch.equal(spikes, out.spikes)
    (spikes * torch.arange(1, 7).view(6, 1, 1)).sum().backward()
    torch.testing.assert_close(x_seq.grad, grads[0])
    torch.testing.assert_close(thr.grad, grads[1])
    assert grads[0].abs().sum() > 0


def test_triangle_surrogate_also_works():
    x_seq = torch.rand(4, 2, 3, requires_grad=True)
    out = single_spike_lif_multistep(x_seq * 2, None, 1.0, 0.5, Triangle(0.3))
    assert out.spikes.sum(0).max() <= 1
    out.spikes.sum().backward()
    assert x_seq.grad.abs().sum() > 0


def _digits_batch(n=64):
    data = load_digits()
    return torch.tensor(data.data[:n], dtype=torch.float32) / 16.0


def _nets():
    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(64, 32), nn.Linear(32, 10)
    with torch.no_grad():
        fc1.weight.mul_(3)
    st = nn.ModuleDict(
        {"fc1": fc1, "lif1": SingleSpikeLeaky(beta=0.9, threshold=0.5), "fc2": fc2, "lif2": SingleSpikeLeaky()}
    )
    sj = nn.Sequential(
        layer.Linear(64, 32), SingleSpikeLIFNode(leak=0.9, v_threshold=0.5), layer.Linear(32, 10), SingleSpikeLIFNode()
    )
    sj[0].load_state_dict(fc1.state_dict())
    sj[2].load_state_dict(fc2.state_dict())
    return st, sj


def _run_snntorch(st, x_seq):
    reset(st)
    hidden, out = [], []
    for x in x_seq:
        s1, _ = st["lif1"](st["fc1"](x))
        s2, _ = st["lif2"](st["fc2"](s1))
        hidden.append(s1)
        out.append(s2)
    return torch.stack(hidden), torch.stack(out)


def _run_spikingjelly(sj, x_seq, mode):
    functional.reset_net(sj)
    functional.set_step_mode(sj, mode)
    if mode == "m":
        hidden = sj[1](sj[0](x_seq))
        return hidden, sj[3](sj[2](hidden))
    hidden = torch.stack([sj[1](sj[0](x)) for x in x_seq])
    return hidden, torch.stack([sj[3](sj[2](h)) for h in hidden])


@pytest.mark.parametrize("mode", ["s", "m"])
def test_faces_identical_on_real_digits_and_fire_at_most_once(mode):
    x_seq = hybrid(_digits_batch(), 6)
    st, sj = _nets()
    st_hidden, st_out = _run_snntorch(st, x_seq)
    sj_hidden, sj_out = _run_spikingjelly(sj, x_seq, mode)
    assert st_hidden.sum() > 0
    assert st_hidden.sum(0).max() == 1
    assert st_out.sum(0).max() <= 1
    assert torch.equal(st_hidden, sj_hidden)
    assert torch.equal(st_out, sj_out)
    weights = torch.arange(1, 7.0).view(6, 1, 1)
    (st_out * weights).sum().add((st_hidden * weights).sum()).backward()
    (sj_out * weights).sum().add((sj_hidden * weights).sum()).backward()
    pairs = {
        "fc1.weight": "0.weight",
        "fc2.weight": "2.weight",
        "lif1.beta": "1.leak",
        "lif1.threshold": "1.v_threshold",
        "lif2.threshold": "3.v_threshold",
    }
    st_params, sj_params = dict(st.named_parameters()), dict(sj.named_parameters())
    for st_name, sj_name in pairs.items():
        assert st_params[st_name].grad.abs().sum() > 0, st_name
        torch.testing.assert_close(st_params[st_name].grad, sj_params[sj_name].grad, rtol=1e-5, atol=1e-6)


def test_fire_at_most_once_on_random_input_in_both_faces():
    torch.manual_seed(1)
    x_seq = torch.randn(10, 8, 4, 6, 6) * 2
    st_spikes, _ = SingleSpikeLeaky(beta=1.0, threshold=0.3).forward_sequence(x_seq)
    sj_spikes = SingleSpikeLIFNode(leak=1.0, v_threshold=0.3, step_mode="m")(x_seq)
    assert st_spikes.sum(0).max() == 1
    assert torch.equal(st_spikes, sj_spikes)


def test_snntorch_resets_start_a_new_sequence():
    lif = SingleSpikeLeaky(beta=1.0, threshold=1.0, init_hidden=True)
    net = nn.Sequential(nn.Identity(), lif)
    fire = torch.full((1, 1), 2.0)
    assert net(fire).item() == 1.0
    assert net(fire).item() == 0.0  # fired already
    reset(net)
    assert net(fire).item() == 1.0
    utils.reset(net)  # snnTorch's own reset zeroes mem, which also starts a new sequence
    assert net(fire).item() == 1.0
    lif.reset_mem()
    assert net(fire).item() == 1.0
    assert isinstance(lif, snn.Leaky)


def test_snntorch_explicit_mem_continues_or_restarts():
    lif = SingleSpikeLeaky(beta=1.0, threshold=1.0)
    fire = torch.full((1, 1), 2.0)
    spk, mem = lif(fire)
    assert spk.item() == 1.0
    spk, mem = lif(fire, mem)  # the returned state continues the sequence
    assert spk.item() == 0.0
    spk, _ = lif(fire, torch.zeros(1, 1))  # a new potential starts a new one
    assert spk.item() == 1.0


def test_spikingjelly_reset_net_and_save():
    node = SingleSpikeLIFNode(leak=1.0, v_threshold=1.0)
    fire = torch.full((1, 1), 2.0)
    assert node(fire).item() == 1.0
    assert node(fire).item() == 0.0
    buffer = io.BytesIO()
    torch.save(node, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert loaded(fire).item() == 0.0  # the saved memories keep the fired record
    functional.reset_net(node)
    assert node.record is None
    assert node.step == 0
    assert node(fire).item() == 1.0


def test_plugins_registered():
    import snn_ext

    assert "single_spike_lif" in snn_ext.list_plugins("neuron")
    assert {"direct", "hybrid"} <= set(snn_ext.list_plugins("encoder"))
    assert isinstance(snn_ext.create("neuron", "single_spike_lif", framework="snntorch"), SingleSpikeLeaky)
    assert isinstance(snn_ext.create("neuron", "single_spike_lif", framework="spikingjelly"), SingleSpikeLIFNode)
    enc = snn_ext.create("encoder", "hybrid", framework="spikingjelly", T=4, step_mode="m")
    assert enc(torch.rand(2, 3)).shape == (4, 2, 3)
    assert snn_ext.PLUGINS.encoder.get("hybrid", "core") is hybrid


def test_stdb_since_last_is_the_official_rule_by_hand():
    """Official STDB: alpha * exp(-beta * (t - t_last)), t_last the last spike *before* t, -1000 before any."""
    record = SpikeTimeRecord(torch.zeros(2, dtype=torch.float64))
    record.times = torch.tensor([2.0, float("inf")], dtype=torch.float64)  # fires at step 2; never
    record.steps = 4
    stdb = STDB(alpha=0.3, beta=0.01, time="since_last")
    for t in range(4):
        last = 2.0 if t > 2 else -1000.0  # the spike at step 2 is not earlier than step 2 itself
        expected = torch.tensor([0.3 * math.exp(-0.01 * (t - last)), 0.3 * math.exp(-0.01 * (t + 1000))])
        torch.testing.assert_close(stdb.derivative(t, record), expected.double())
    assert "since_last" in repr(stdb)
    with pytest.raises(ValueError, match="time must be one of 'spike', 'since_last'"):
        STDB(time="last")


def test_stdb_since_last_runs_the_reference_with_a_warning(monkeypatch):
    monkeypatch.setattr(kernels._warn, "_issued", set())
    torch.manual_seed(0)
    x = (torch.rand(5, 3, 4, dtype=torch.float64) * 1.5).requires_grad_(True)
    stdb = STDB(time="since_last")
    with pytest.warns(kernels.KernelFallbackWarning, match=r"STDB\(time='since_last'\)"):
        fused = kernels.single_spike_lif_multistep(x, None, 1.0, 1.0, stdb)
    fused.spikes.sum().backward()
    fused_grad, x.grad = x.grad, None
    reference = single_spike_lif_multistep(x, None, 1.0, 1.0, stdb)
    reference.spikes.sum().backward()
    assert torch.equal(fused.spikes, reference.spikes)
    torch.testing.assert_close(fused_grad, x.grad)
