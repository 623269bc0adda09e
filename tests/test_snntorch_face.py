"""snnTorch face: DietLeaky keeps snnTorch's idioms and computes with the core."""

import io

import pytest
import snntorch as snn
import torch
from snntorch import surrogate, utils
from torch import nn

from snn_ext.core import Triangle, clamp_leak_, diet_lif_multistep
from snn_ext.core.neuron import single_spike_lif_multistep
from snn_ext.snntorch import DietLeaky, SingleSpikeLeaky, reset


def test_is_an_snntorch_leaky_with_trainable_leak_and_threshold():
    lif = DietLeaky(beta=0.9, threshold=0.5)
    assert isinstance(lif, snn.Leaky)
    names = dict(lif.named_parameters())
    assert set(names) == {"beta", "threshold"}
    assert isinstance(lif.spike_grad, Triangle)
    assert lif.spike_grad.gamma == 0.3
    frozen = DietLeaky(beta=0.9, learn_beta=False, learn_threshold=False)
    assert not list(frozen.parameters())


def test_hand_computed_step_differs_from_snntorch_leaky_reset_delay():
    x = torch.tensor([[1.5], [0.2]]).unsqueeze(1)  # [T=2, B=1, F=1]
    lif = DietLeaky(beta=0.5, threshold=1.0)
    spk0, mem0 = lif(x[0])
    spk1, mem1 = lif(x[1])
    # DIET: fire and subtract in the same step: 1.5 -> 0.5; then 0.25 + 0.2 = 0.45.
    assert (spk0.item(), mem0.item(), spk1.item()) == (1.0, 0.5, 0.0)
    assert mem1.item() == pytest.approx(0.45)
    ref = snn.Leaky(beta=0.5, threshold=1.0)
    _, ref_mem0 = ref(x[0])
    assert ref_mem0.item() == 1.5  # snnTorch subtracts one step later (reset_delay)


def test_single_step_loop_equals_forward_sequence_and_core():
    torch.manual_seed(0)
    x_seq = torch.randn(5, 2, 3, 4, 4)
    lif = DietLeaky(beta=torch.full((3, 1, 1), 0.8), threshold=torch.tensor([0.3, 0.5, 0.7]).view(3, 1, 1))
    spk_seq, mem_seq = lif.forward_sequence(x_seq)
    ref_spk, ref_mem, _ = diet_lif_multistep(x_seq, None, lif.beta.view(3), lif.threshold.view(3))  # the core: [C]
    assert torch.equal(spk_seq, ref_spk)
    assert torch.equal(mem_seq, ref_mem)
    mem = None
    for t in range(5):
        spk, mem = lif(x_seq[t], mem if mem is not None else torch.zeros_like(x_seq[0]))
        assert torch.equal(spk, spk_seq[t])
        assert torch.equal(mem, mem_seq[t])


@pytest.mark.parametrize("kind", ["DietLeaky", "SingleSpikeLeaky"])
def test_snntorch_state_idiom_reset_mem_before_each_batch(kind):
    """``mem = lif.reset_mem()`` (or ``init_leaky()``) then ``spk, mem = lif(x, mem)``, batch after batch: the
    reset state is an empty tensor before the first step and zeros of the previous batch's shape after, so the
    last, smaller batch of an epoch starts from zeros too, as in snnTorch."""
    torch.manual_seed(0)
    lif = {"DietLeaky": DietLeaky, "SingleSpikeLeaky": SingleSpikeLeaky}[kind](beta=0.9, threshold=0.5)
    core = single_spike_lif_multistep if kind == "SingleSpikeLeaky" else diet_lif_multistep
    for batch, init in ((4, lif.init_leaky), (4, lif.reset_mem), (3, lif.reset_mem)):
        x_seq = torch.rand(5, batch, 6)
        mem = init()
        assert not mem.count_nonzero()
        for t in range(5):
            spk, mem = lif(x_seq[t], mem)
            assert torch.equal(spk, core(x_seq, None, 0.9, 0.5).spikes[t])
        spk_seq, _ = lif.forward_sequence(x_seq, lif.reset_mem() if batch == 3 else lif.init_leaky())
        assert torch.equal(spk_seq, core(x_seq, None, 0.9, 0.5).spikes)
    with pytest.raises(ValueError, match="shape"):  # a real potential of the wrong shape is an error
        lif(torch.rand(2, 6), torch.ones(3, 6))


def test_init_hidden_inside_sequential_and_output():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(4, 6),
        DietLeaky(beta=0.9, threshold=0.3, init_hidden=True),
        nn.Linear(6, 2),
        DietLeaky(beta=0.9, threshold=0.3, init_hidden=True, output=True),
    )
    x = torch.rand(5, 3, 4)
    outs = [net(x[t]) for t in range(5)]
    assert all(isinstance(o, tuple) and len(o) == 2 for o in outs)
    assert isinstance(net[1](torch.rand(3, 6)), torch.Tensor)  # init_hidden without output: spk only
    # Same numbers with explicit state passing
    reset(net)
    lif1 = DietLeaky(beta=0.9, threshold=0.3)
    lif2 = DietLeaky(beta=0.9, threshold=0.3)
    m1 = m2 = None
    for t in range(5):
        s1, m1 = lif1(net[0](x[t]), m1)
        s2, m2 = lif2(net[2](s1), m2)
        assert torch.equal(s2, outs[t][0])
        assert torch.equal(m2, outs[t][1])
    with pytest.raises(TypeError, match="init_hidden"):
        net[1](torch.rand(3, 6), torch.zeros(3, 6))


def test_forward_sequence_with_init_hidden_returns_spikes_and_keeps_state():
    lif = DietLeaky(beta=1.0, threshold=1.0, init_hidden=True)
    spk_seq = lif.forward_sequence(torch.full((3, 1, 1), 0.4))
    assert spk_seq.flatten().tolist() == [0.0, 0.0, 1.0]
    assert lif.mem.item() == pytest.approx(0.2)
    lif.forward_sequence(torch.full((1, 1, 1), 0.4))
    assert lif.mem.item() == pytest.approx(0.6)  # continued from the stored state


def test_snntorch_utils_reset_and_our_reset_zero_the_state():
    net = nn.Sequential(nn.Linear(2, 2), DietLeaky(beta=1.0, threshold=5.0, init_hidden=True))
    net(torch.ones(1, 2))
    assert net[1].mem.abs().sum() > 0
    utils.reset(net)
    assert net[1].mem.abs().sum() == 0
    net(torch.ones(1, 2))
    reset(net)
    assert net[1].mem.abs().sum() == 0


def test_reset_is_local_and_reaches_nested_snntorch_neurons():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Sequential(nn.Identity(), snn.Synaptic(alpha=0.9, beta=0.9, init_hidden=True))
            self.lif = DietLeaky(beta=1.0, threshold=10.0, init_hidden=True)

    net_a, net_b = Block(), Block()
    x = torch.ones(2, 3)
    for net in (net_a, net_b):
        net.inner(x)
        net.lif(x)
    reset(net_a)
    assert net_a.lif.mem.abs().sum() == 0
    assert net_a.inner[1].mem.abs().sum() == 0
    assert net_a.inner[1].syn.abs().sum() == 0
    assert net_b.lif.mem.abs().sum() > 0
    assert net_b.inner[1].mem.abs().sum() > 0


def test_two_networks_never_share_state():
    a, b = DietLeaky(beta=1.0, threshold=10.0), DietLeaky(beta=1.0, threshold=10.0)
    a(torch.ones(1, 1))
    b(torch.full((1, 1), 2.0))
    assert (a.mem.item(), b.mem.item()) == (1.0, 2.0)


def test_state_dict_round_trip_and_whole_module_pickle():
    lif = DietLeaky(beta=torch.tensor([0.7, 0.8]), threshold=0.4)
    other = DietLeaky(beta=torch.tensor([1.0, 1.0]), threshold=1.0)
    other.load_state_dict(lif.state_dict())
    x = torch.rand(4, 3, 2)
    assert torch.equal(lif.forward_sequence(x)[0], other.forward_sequence(x)[0])
    buffer = io.BytesIO()
    torch.save(lif, buffer)  # snnTorch's own surrogates are closures and cannot be pickled; ours can
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    torch.testing.assert_close(loaded.beta, lif.beta)


def test_accepts_any_snntorch_surrogate():
    torch.manual_seed(0)
    x = torch.randn(4, 8, requires_grad=True)
    ours = DietLeaky(beta=0.9, threshold=0.5)
    fast = DietLeaky(beta=0.9, threshold=0.5, spike_grad=surrogate.fast_sigmoid(slope=25))
    s_ours, _ = ours.forward_sequence(x.unsqueeze(0))
    s_fast, _ = fast.forward_sequence(x.unsqueeze(0))
    assert torch.equal(s_ours, s_fast)
    s_fast.sum().backward()
    assert fast.threshold.grad.abs() > 0


def test_clamp_leak_on_a_network():
    net = nn.Sequential(nn.Linear(2, 2), DietLeaky(beta=0.5), DietLeaky(beta=1.0))
    with torch.no_grad():
        net[2].beta.fill_(1.4)
    clamp_leak_(net)
    assert net[1].beta.item() == 0.5
    assert net[2].beta.item() == 1.0


def test_leak_and_threshold_get_gradients_in_conv_net():
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 3, 3)
    with torch.no_grad():
        conv.weight.abs_()  # every channel gets positive drive, so every channel fires sometimes
    lif = DietLeaky(beta=torch.full((3, 1, 1), 0.9), threshold=torch.full((3, 1, 1), 1.0))
    x = torch.rand(5, 2, 1, 6, 6)
    spk, _ = lif.forward_sequence(conv(x.flatten(0, 1)).unflatten(0, (5, 2)))
    spk.sum().backward()
    assert lif.beta.grad.abs().min() > 0
    assert lif.threshold.grad.abs().min() > 0
