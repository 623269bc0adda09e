"""The pure-torch DIET LIF reference: hand-computed dynamics, gradients, surrogates, leak clamp."""

import pytest
import torch
from torch import nn

from snn_ext.core import Box, Triangle, clamp_leak_, clamp_threshold_, diet_lif_multistep, diet_lif_step, heaviside


def test_hand_computed_dynamics_per_channel_threshold():
    # Two neurons (features): leak 0.5 for both, thresholds 1.0 and 0.5.
    x_seq = torch.tensor([[[0.6, 0.3]], [[0.6, 0.3]], [[0.6, 0.0]], [[1.5, 2.0]]], dtype=torch.float64)
    spikes, u, _ = diet_lif_multistep(x_seq, None, 0.5, torch.tensor([1.0, 0.5], dtype=torch.float64))
    # Neuron 0: u = 0.6 -> 0.9 -> 1.05 (fires, -1) 0.05 -> 0.025 + 1.5 = 1.525 (fires) 0.525.
    # Neuron 1: u = 0.3 -> 0.45 -> 0.225 -> 2.1125 (fires once: soft reset subtracts 0.5 once) 1.6125.
    expected_spikes = torch.tensor([[[0.0, 0.0]], [[0.0, 0.0]], [[1.0, 0.0]], [[1.0, 1.0]]], dtype=torch.float64)
    expected_u = torch.tensor([[[0.6, 0.3]], [[0.9, 0.45]], [[0.05, 0.225]], [[0.525, 1.6125]]], dtype=torch.float64)
    torch.testing.assert_close(spikes, expected_spikes, rtol=0, atol=0)
    torch.testing.assert_close(u, expected_u, rtol=0, atol=1e-12)


def test_leak_multiplies_old_potential_before_input():
    # u[t] = leak * u[t-1] + x[t]: with leak 0 the potential is just the current input.
    x_seq = torch.tensor([[[0.4]], [[0.4]], [[0.4]]])
    spikes, u, _ = diet_lif_multistep(x_seq, None, 0.0, 1.0)
    assert spikes.sum() == 0
    torch.testing.assert_close(u.flatten(), torch.tensor([0.4, 0.4, 0.4]))


def test_multistep_equals_step_loop_and_continues_from_state():
    torch.manual_seed(0)
    x_seq = torch.randn(6, 3, 4, 5, 5)
    leak, thr = torch.rand(4) * 0.5 + 0.5, torch.rand(4) + 0.2
    u0 = torch.randn(3, 4, 5, 5)
    spikes, u_seq, final = diet_lif_multistep(x_seq, u0, leak, thr)
    u = u0
    for t, x in enumerate(x_seq):
        s, u = diet_lif_step(x, u, leak, thr)
        assert torch.equal(s, spikes[t])
        assert torch.equal(u, u_seq[t])
    assert torch.equal(final, u)
    assert final._base is None


def test_threshold_gradient_by_hand():
    # One step from rest: u = x, z = x / v - 1 = 0.2; spike surrogate 0.3 * (1 - 0.2) = 0.24.
    x = torch.tensor([[1.2]], dtype=torch.float64)
    v = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    spike, _ = diet_lif_step(x, None, 1.0, v)
    spike.sum().backward()
    # d spike / d v = 0.24 * d z / d v = 0.24 * (-x / v^2) = -0.288
    torch.testing.assert_close(v.grad, torch.tensor(-0.288, dtype=torch.float64))
    v.grad = None
    # Through the reset term only: u_after = x - v * 1[z > 0]  ->  d u_after / d v = -1.
    _, u_after = diet_lif_step(x, None, 1.0, v)
    u_after.sum().backward()
    torch.testing.assert_close(v.grad, torch.tensor(-1.0, dtype=torch.float64))


def test_reset_uses_hard_indicator_without_surrogate_gradient():
    x = torch.tensor([[1.2]], dtype=torch.float64, requires_grad=True)
    _, u_after = diet_lif_step(x, None, 1.0, 1.0)
    u_after.sum().backward()
    assert x.grad.item() == 1.0  # no surrogate term flows through the reset


@pytest.mark.parametrize("surrogate", [Triangle(0.3), Triangle(1.0), Box(1.0, 1.0), Box(0.5, 2.0)])
def test_gradcheck_surrogate_function(surrogate):
    """gradcheck the custom autograd Function: its backward must be the derivative of ``primitive``.

    f(z) = spike(z) + (primitive(z) - H(z)).detach() has the value of primitive(z), so finite
    differences give primitive'(z), while autograd only sees the Function's backward.
    """
    torch.manual_seed(0)
    z = torch.empty(64, dtype=torch.float64).uniform_(-2.5, 2.5)
    if isinstance(surrogate, Box):  # keep finite differences away from the box edges
        z = z[(z.abs() - surrogate.width).abs() > 1e-3]
    z.requires_grad_(True)

    def f(z):
        return surrogate(z) + (surrogate.primitive(z) - heaviside(z)).detach()

    assert torch.autograd.gradcheck(f, (z,), eps=1e-6, atol=1e-6)


def test_surrogate_values():
    z = torch.tensor([-1.5, -0.5, 0.0, 0.25, 1.0, 2.0], requires_grad=True)
    spikes = Triangle(0.3)(z)
    assert spikes.tolist() == [0, 0, 0, 1, 1, 1]  # fires strictly above threshold (z > 0)
    spikes.sum().backward()
    torch.testing.assert_close(z.grad, torch.tensor([0.0, 0.15, 0.3, 0.225, 0.0, 0.0]))
    z.grad = None
    Box(width=1.0, height=1.0)(z).sum().backward()
    torch.testing.assert_close(z.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0, 0.0]))


@pytest.mark.parametrize(("cls", "kwargs", "arg"), [(Triangle, {"gamma": 0.0}, "gamma"), (Box, {"width": -1}, "width")])
def test_surrogate_rejects_bad_parameters(cls, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        cls(**kwargs)


def test_gradients_reach_leak_threshold_and_weights_in_conv_net():
    torch.manual_seed(0)
    conv1, conv2 = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
    leak1, thr1 = nn.Parameter(torch.full((4,), 0.9)), nn.Parameter(torch.full((4,), 0.5))
    leak2, thr2 = nn.Parameter(torch.tensor(0.9)), nn.Parameter(torch.tensor(0.5))
    x = torch.rand(3, 2, 8, 8)
    x_seq = x.expand(5, *x.shape)
    s1, _, _ = diet_lif_multistep(conv1(x).expand(5, 3, 4, 8, 8), None, leak1, thr1)
    s2, _, _ = diet_lif_multistep(conv2(s1.flatten(0, 1)).unflatten(0, (5, 3)), None, leak2, thr2)
    assert x_seq.shape[0] == 5
    assert s1.sum() > 0
    assert s2.sum() > 0
    s2.sum().backward()
    for p in (leak1, thr1, leak2, thr2, conv1.weight, conv2.weight):
        assert p.grad is not None
        assert p.grad.abs().sum() > 0


def test_clamp_leak_and_threshold_keep_both_in_range_and_count():
    leak = nn.Parameter(torch.tensor([1.3, 0.7, -0.2]))
    assert clamp_leak_(leak) == 2
    assert leak.tolist() == pytest.approx([1.0, 0.7, 0.0])
    threshold = nn.Parameter(torch.tensor([0.5, -4.9, 0.0]))
    assert clamp_threshold_(threshold, 1e-3) == 2
    assert threshold.tolist() == pytest.approx([0.5, 1e-3, 1e-3])
    with pytest.raises(ValueError, match="min_threshold must be > 0"):
        clamp_threshold_(threshold, 0.0)


def test_clamp_leak_rejects_other_types():
    with pytest.raises(TypeError, match="target"):
        clamp_leak_([1.0])
