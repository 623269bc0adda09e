"""Calibration statistics: spike-count model, percentile, distribution-aware threshold fit."""

import pytest
import torch

from snn_ext.core.calibration import LayerScale, ThresholdFit, if_spike_count, percentile
from snn_ext.core.neuron import diet_lif_multistep


@pytest.mark.parametrize("shift", [0.0, 0.5])
@pytest.mark.parametrize("timesteps", [1, 2, 5, 16])
def test_spike_count_model_matches_the_neuron(shift, timesteps):
    # [B=1, 301] constant inputs, offset so that none sits exactly on a spike-count boundary k * threshold / T
    x = torch.linspace(-0.5, 2.5, 301, dtype=torch.float64).unsqueeze(0) + 0.0031
    threshold = 0.8
    spikes = diet_lif_multistep(x.expand(timesteps, -1, -1), torch.full_like(x, shift * threshold), 1.0, threshold)
    torch.testing.assert_close(spikes.spikes.sum(0), if_spike_count(x, threshold, timesteps, shift))


def test_percentile_matches_quantile():
    x = torch.randn(10_000)
    assert percentile(x, 99.7) == pytest.approx(torch.quantile(x, 0.997).item(), abs=0.02)
    assert percentile(x, 100) == x.max().item()
    with pytest.raises(ValueError, match=r"percentile q must lie in \(0, 100\]"):
        percentile(x, 0)


def test_threshold_fit_at_large_t_keeps_the_clip():
    torch.manual_seed(0)
    x = torch.rand(20_000) * 5  # uniform on [0, 5], clip mu = 4
    fit = ThresholdFit(clip=4.0, timesteps=256)
    fit.update(x, x)
    scale, error = fit.solve()
    assert scale.threshold == pytest.approx(4.0, rel=0.02)
    assert scale.amplitude == pytest.approx(4.0, rel=0.02)
    assert error < 1e-4


def test_threshold_fit_at_one_step_puts_the_threshold_at_half_the_amplitude():
    # T=1: output beta where x > alpha. For x uniform on [0, 1]: beta*(alpha) = (1 + alpha) / 2 and the error
    # 1/3 - beta*^2 (1 - alpha) is smallest at alpha = 1/3, beta = 2/3: the threshold is half the amplitude.
    x = torch.linspace(0, 1, 100_001, dtype=torch.float64)
    fit = ThresholdFit(clip=1.0, timesteps=1, shifts=(0.0,))
    fit.update(x, x)
    scale, _ = fit.solve()
    assert scale.threshold == pytest.approx(1 / 3, abs=0.01)
    assert scale.amplitude == pytest.approx(2 / 3, abs=0.01)
    assert scale.initial_fraction == 0.0


def test_threshold_fit_streams_batches():
    torch.manual_seed(1)
    x = torch.rand(4, 5000) * 3
    whole, parts = ThresholdFit(2.0, 3), ThresholdFit(2.0, 3)
    whole.update(x, x)
    for row in x:
        parts.update(row, row)
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
    fit = ThresholdFit(1.0, 2)
    with pytest.raises(ValueError, match="shapes differ"):
        fit.update(torch.zeros(3), torch.zeros(4))
    fit.update(-torch.ones(10), -torch.ones(10))
    with pytest.raises(ValueError, match="no threshold makes the layer spike"):
        fit.solve()
    assert LayerScale(1.0, 2.0).initial_fraction == 0.0
