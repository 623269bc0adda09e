"""Direct and single-spike hybrid encoders: core functions and both framework faces."""

import pytest
import torch
from spikingjelly.activation_based import functional

from snn_ext.core.encoding import direct, hybrid, linear_spike_step
from snn_ext.snntorch import spikegen
from snn_ext.spikingjelly import DirectEncoder, HybridEncoder


@pytest.mark.parametrize("shape", [(4, 10), (2, 3, 5, 5)])
@pytest.mark.parametrize("num_steps", [2, 5, 8])
def test_hybrid_properties(shape, num_steps):
    torch.manual_seed(0)
    x = torch.rand(shape)
    x.view(-1)[:3] = torch.tensor([0.0, 1.0, 0.5])
    out = hybrid(x, num_steps)
    assert out.shape == (num_steps, *shape)
    assert torch.equal(out[0], x)  # analog first step
    temporal = out[1:]
    assert torch.all((temporal == 0) | (temporal == 1))  # binary afterwards
    assert temporal.sum(0).max() <= 1  # each pixel spikes at most once
    assert temporal.sum(0).view(-1)[0] == 0  # intensity 0 never spikes
    assert temporal[0].view(-1)[1] == 1  # intensity 1 spikes right after the analog step


def test_hybrid_spike_time_is_monotone_in_intensity():
    x = torch.linspace(0, 1, 101).unsqueeze(0)
    out = hybrid(x, 6)[1:]
    fired = out.sum(0) > 0
    step = torch.where(fired, out.argmax(0).float(), torch.tensor(float("inf")))
    order = torch.argsort(x.squeeze(0))
    steps_by_intensity = step.squeeze(0)[order]
    assert torch.all(steps_by_intensity[1:] <= steps_by_intensity[:-1])  # brighter -> not later
    assert fired.squeeze(0)[1:].all()  # everything above 0 spikes within the window


def test_linear_spike_step_values():
    x = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.01, 0.0])
    assert linear_spike_step(x, 5).tolist() == [1, 2, 3, 4, 4, 5]


def test_custom_spike_step_map():
    def log_map(x, num_steps):
        return (1 + torch.floor(torch.log1p(9 * (1 - x)) / torch.log(torch.tensor(10.0)) * (num_steps - 1))).long()

    out = hybrid(torch.tensor([[1.0, 0.5, 0.0]]), 5, spike_step=log_map)
    assert out[1:].sum(0).tolist() == [[1.0, 1.0, 0.0]]


def test_direct_is_a_view_repeated_over_time():
    x = torch.rand(3, 2, 4, 4)
    out = direct(x, 4)
    assert out.shape == (4, 3, 2, 4, 4)
    assert all(torch.equal(out[t], x) for t in range(4))
    assert out.data_ptr() == x.data_ptr()  # no copy: compute the first layer once and reuse it


def test_snntorch_spikegen_is_the_core():
    x = torch.rand(2, 8)
    assert torch.equal(spikegen.hybrid(x, num_steps=4), hybrid(x, 4))
    assert torch.equal(spikegen.direct(x, num_steps=3), direct(x, 3))


@pytest.mark.parametrize("cls", [HybridEncoder, DirectEncoder])
def test_spikingjelly_encoders_match_core_in_both_step_modes(cls):
    x = torch.rand(2, 1, 4, 4)
    ref = hybrid(x, 5) if cls is HybridEncoder else direct(x, 5)
    enc_m = cls(T=5, step_mode="m")
    assert torch.equal(enc_m(x), ref)
    enc_s = cls(T=5)
    steps = [enc_s(x) for _ in range(5)]
    assert torch.equal(torch.stack(steps), ref)
    functional.reset_net(enc_s)
    assert torch.equal(enc_s(x), ref[0])


def test_bad_input():
    with pytest.raises(ValueError, match="num_steps must be an integer >= 2"):
        hybrid(torch.rand(2, 3), 1)
    with pytest.raises(ValueError, match="num_steps must be an integer >= 1"):
        direct(torch.rand(2, 3), 0)
    with pytest.raises(ValueError, match="num_steps"):
        hybrid(torch.rand(2, 3), 2.5)
    with pytest.raises(ValueError, match=r"scaled to \[0, 1\]"):
        hybrid(torch.rand(2, 3) * 16, 5)
    with pytest.raises(ValueError, match=r"scaled to \[0, 1\]"):
        hybrid(torch.rand(2, 3) - 0.5, 5)
    with pytest.raises(ValueError, match=r"x must be a batch \[B, F\]"):
        hybrid(torch.rand(7), 5)
    with pytest.raises(ValueError, match="NaN or inf"):
        hybrid(torch.tensor([[float("nan")]]), 5)
    with pytest.raises(TypeError, match="floating-point"):
        direct(torch.ones(2, 3, dtype=torch.int64), 3)
    with pytest.raises(ValueError, match="spike_step must return"):
        hybrid(torch.rand(2, 3), 5, spike_step=lambda x, n: torch.zeros_like(x, dtype=torch.int64))
    with pytest.raises(ValueError, match="T must be an integer >= 2"):
        HybridEncoder(T=1)
    with pytest.raises(ValueError, match="T must be an integer >= 1"):
        DirectEncoder(T=0)
