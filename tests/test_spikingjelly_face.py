"""SpikingJelly face: DietLIFNode behaves like any BaseNode and computes with the core."""

import io

import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from torch import nn

from snn_ext.core import Triangle, clamp_leak_, diet_lif_multistep
from snn_ext.spikingjelly import DietLIFNode


def test_is_a_basenode_with_parameters():
    node = DietLIFNode(leak=0.9, v_threshold=0.5)
    assert isinstance(node, neuron.BaseNode)
    assert {n for n, _ in node.named_parameters()} == {"leak", "v_threshold"}
    assert isinstance(node.surrogate_function, Triangle)
    assert "leak=0.9" in repr(node)
    assert "v_threshold=0.5" in repr(node)


def test_hand_computed_steps():
    node = DietLIFNode(leak=0.5, v_threshold=1.0)
    assert node(torch.tensor([[1.5]])).item() == 1.0
    assert node.v.item() == pytest.approx(0.5)
    assert node(torch.tensor([[0.2]])).item() == 0.0
    assert node.v.item() == pytest.approx(0.45)


def test_single_step_loop_equals_multi_step_and_core():
    torch.manual_seed(0)
    x_seq = torch.randn(5, 2, 3, 4, 4)
    node = DietLIFNode(leak=torch.full((3,), 0.8), v_threshold=torch.tensor([0.3, 0.5, 0.7]), step_mode="m")
    node.store_v_seq = True
    spk_m = node(x_seq)
    ref_spk, ref_v, _ = diet_lif_multistep(x_seq, None, node.leak, node.v_threshold)
    assert torch.equal(spk_m, ref_spk)
    assert torch.equal(node.v_seq, ref_v)
    functional.reset_net(node)
    functional.set_step_mode(node, "s")
    assert node.step_mode == "s"
    for t in range(5):
        assert torch.equal(node(x_seq[t]), spk_m[t])
        assert torch.equal(node.v, ref_v[t])


def test_multi_step_without_store_keeps_last_potential():
    x_seq = torch.full((3, 1, 1), 0.4)
    node = DietLIFNode(leak=1.0, v_threshold=1.0, step_mode="m")
    assert node(x_seq).flatten().tolist() == [0.0, 0.0, 1.0]
    assert node.v.item() == pytest.approx(0.2)


def test_reset_net_and_independent_networks():
    net_a = nn.Sequential(layer.Linear(2, 2), DietLIFNode(v_threshold=10.0))
    net_b = nn.Sequential(layer.Linear(2, 2), DietLIFNode(v_threshold=10.0))
    net_b.load_state_dict(net_a.state_dict())
    x = torch.ones(1, 2)
    net_a(x)
    net_b(x)
    functional.reset_net(net_a)
    assert net_a[1].v == 0.0
    assert isinstance(net_b[1].v, torch.Tensor)
    assert net_b[1].v.abs().sum() > 0


def test_multi_step_layers_and_detach_net():
    torch.manual_seed(0)
    net = nn.Sequential(
        layer.Conv2d(1, 4, 3, padding=1), DietLIFNode(v_threshold=0.3), layer.Flatten(), layer.Linear(64, 2)
    )
    functional.set_step_mode(net, "m")
    out = net(torch.rand(5, 2, 1, 4, 4))
    assert out.shape == (5, 2, 2)
    functional.detach_net(net)
    assert not net[1].v.requires_grad


def test_whole_module_save_and_load():
    net = nn.Sequential(layer.Linear(3, 3), DietLIFNode(leak=0.8, v_threshold=torch.tensor([0.2, 0.3, 0.4])))
    x = torch.rand(4, 3)
    expected = net(x)
    functional.reset_net(net)
    buffer = io.BytesIO()
    torch.save(net, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert torch.equal(loaded(x), expected)


def test_accepts_spikingjelly_surrogates():
    x = torch.randn(3, 4, 8)
    ours = DietLIFNode(leak=0.9, v_threshold=0.5, step_mode="m")
    atan = DietLIFNode(leak=0.9, v_threshold=0.5, step_mode="m", surrogate_function=surrogate.ATan())
    s_atan = atan(x)
    assert torch.equal(ours(x), s_atan)
    s_atan.sum().backward()
    assert atan.v_threshold.grad.abs() > 0
    assert atan.leak.grad.abs() > 0


def test_clamp_leak():
    net = nn.Sequential(DietLIFNode(leak=0.5), DietLIFNode(leak=1.0))
    with torch.no_grad():
        net[1].leak.fill_(1.2)
    clamp_leak_(net)
    assert net[0].leak.item() == 0.5
    assert net[1].leak.item() == 1.0
