"""Calibration statistics: spike-count model, percentile, distribution-aware threshold fit."""

import pytest
import torch

from snn_ext.core.calibration import LayerScale, ThresholdFit, percentile
from snn_ext.core.neuron import diet_lif_multistep


def constant(x: torch.Tensor, timesteps: int) -> torch.Tensor:
    """The same current at every step: ``[T, *x.shape]``."""
    return x.expand(timesteps, *x.shape)


@pytest.mark.parametrize("shift", [0.0, 0.5])
@pytest.mark.parametrize("timesteps", [1, 2, 5])
def test_threshold_fit_simulates_the_neuron(shift, timesteps):
    """The fit's statistics are those of the real neuron (diet_lif_multistep) on varying currents."""
    torch.manual_seed(0)
    currents = torch.randn(timesteps, 1, 300, dtype=torch.float64) + 0.5
    target = torch.rand(1, 300, dtype=torch.float64) * 2
    alphas = torch.tensor([0.3, 0.7, 1.1], dtype=torch.float64)
    fit = ThresholdFit(2.0, timesteps, alphas=alphas, shifts=(shift,))
    fit.update(target, currents)
    for j, alpha in enumerate(alphas):
        threshold = alpha.item() * 2.0
        start = torch.full_like(target, shift * threshold)
        rates = diet_lif_multistep(currents, start, 1.0, threshold).spikes.mean(0)
        torch.testing.assert_close(fit._power[0, 0, j], (rates * rates).sum())
        torch.testing.assert_close(fit._cross[0, 0, j], (rates * target.clamp(0, 2.0) / 2.0).sum())


def test_percentile_matches_quantile():
    x = torch.randn(10_000)
    assert percentile(x, 99.7) == pytest.approx(torch.quantile(x, 0.997).item(), abs=0.02)
    assert percentile(x, 100) == x.max().item()
    with pytest.raises(ValueError, match=r"percentile q must lie in \(0, 100\]"):
        percentile(x, 0)


def test_threshold_fit_at_large_t_keeps_the_clip():
    torch.manual_seed(0)
    x = torch.rand(20_000) * 5  # uniform on [0, 5], clip mu = 4
    fit = ThresholdFit(clip=4.0, timesteps=64)
    fit.update(x, constant(x, 64))
    scale, error = fit.solve()
    assert scale.threshold == pytest.approx(4.0, rel=0.02)
    assert scale.amplitude == pytest.approx(4.0, rel=0.02)
    assert error < 1e-4


def test_threshold_fit_at_one_step_puts_the_threshold_at_half_the_amplitude():
    # T=1: output beta where x > alpha. For x uniform on [0, 1]: beta*(alpha) = (1 + alpha) / 2 and the error
    # 1/3 - beta*^2 (1 - alpha) is smallest at alpha = 1/3, beta = 2/3: the threshold is half the amplitude.
    x = torch.linspace(0, 1, 100_001, dtype=torch.float64)
    fit = ThresholdFit(clip=1.0, timesteps=1, shifts=(0.0,), samples=len(x))
    fit.update(x, constant(x, 1))
    scale, _ = fit.solve()
    assert scale.threshold == pytest.approx(1 / 3, abs=0.01)
    assert scale.amplitude == pytest.approx(2 / 3, abs=0.01)
    assert scale.initial_fraction == 0.0


def test_threshold_fit_streams_batches():
    torch.manual_seed(1)
    x = torch.rand(4, 5000) * 3
    whole, parts = ThresholdFit(2.0, 3, samples=x.numel()), ThresholdFit(2.0, 3, samples=x.numel())
    whole.update(x, constant(x, 3))
    for row in x:
        parts.update(row, constant(row, 3))
    (scale_whole, error_whole), (scale_parts, error_parts) = whole.solve(), parts.solve()
    assert scale_whole.threshold == scale_parts.threshold
    assert scale_whole.initial_fraction == scale_parts.initial_fraction
    assert scale_whole.amplitude == pytest.approx(scale_parts.amplitude, rel=1e-12)  # only summation order differs
    assert error_whole == pytest.approx(error_parts, rel=1e-9)


def test_threshold_fit_errors():
    with pytest.raises(ValueError, match="clip must be > 0"):
        ThresholdFit(0.0, 2)
    with pytest.raises(ValueError, match="no data"):
        ThresholdFit(1.0, 2).solve()
    with pytest.raises(ValueError, match="samples must be an integer >= 1"):
        ThresholdFit(1.0, 2, samples=0)
    fit = ThresholdFit(1.0, 2)
    with pytest.raises(ValueError, match=r"snn_currents must be \[T=2, \*dnn_output.shape\]"):
        fit.update(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="per-channel fit of 2 channels"):
        ThresholdFit(torch.ones(2), 2).update(torch.zeros(4, 3), torch.zeros(2, 4, 3))
    fit.update(-torch.ones(10), constant(-torch.ones(10), 2))
    with pytest.raises(ValueError, match="no threshold makes the layer spike"):
        fit.solve()
    assert LayerScale(1.0, 2.0).initial_fraction == 0.0


def test_per_channel_fit_equals_one_fit_per_channel():
    """Channels (dimension 1) are fitted independently, each with its own mu; a dead channel gets amplitude 0."""
    torch.manual_seed(2)
    x = torch.rand(64, 3, 5) * torch.tensor([1.0, 4.0, 0.0]).view(1, 3, 1)  # channel 2: always 0 (dead)
    clips = torch.tensor([1.0, 4.0, 1.0])
    fit = ThresholdFit(clips, 2)
    fit.update(x, constant(x, 2))
    scale, _ = fit.solve()
    for c in range(2):
        alone = ThresholdFit(clips[c].item(), 2)
        alone.update(x[:, c], constant(x[:, c], 2))
        single, _ = alone.solve()
        assert scale.threshold[c].item() == pytest.approx(single.threshold)
        assert scale.amplitude[c].item() == pytest.approx(single.amplitude)
        assert scale.initial_fraction[c].item() == single.initial_fraction
    assert scale.amplitude[2] == 0
    assert scale.threshold[2] == clips[2]


def test_threshold_fit_samples_are_seeded():
    torch.manual_seed(3)
    x = torch.rand(50, 200)
    fits = [ThresholdFit(1.0, 2, samples=500, seed=seed) for seed in (0, 0, 1)]
    for fit in fits:
        fit.update(x, constant(x, 2))
    solved = [fit.solve()[1] for fit in fits]
    assert solved[0] == solved[1]
    assert solved[0] != solved[2]


def test_threshold_fit_keeps_no_autograd_graph():
    """Activations of a trainable clip carry a graph; the fit's statistics (and so the scales) must not."""
    clip = torch.tensor(2.0, requires_grad=True)
    x = torch.minimum(torch.rand(8, 3, 4) * 3, clip)
    fit = ThresholdFit(torch.ones(3) * 2, 2)
    fit.update(x, constant(x, 2))
    scale, _ = fit.solve()
    assert not fit._cross.requires_grad
    assert not scale.threshold.requires_grad
    assert not scale.amplitude.requires_grad
