"""DIET-SNN's threshold initialisation against a transcription of the official calibration loop.

The official ``find_threshold`` (``nitin-rathi/DIET-SNN``, ``snn.py``, with ``VGG_SNN_STDB.forward(find_max_mem=True)``)
calibrates layer by layer: the earlier layers spike (unit spikes, unscaled weights) at their *unscaled* thresholds,
layer ``l``'s threshold is the maximum over steps of the 99.7th percentile (rank ``1 + round(q/100 (n-1))``) of its
input current, and only at the end every threshold is multiplied by ``scaling_factor``. ``official_thresholds``
below is our own code written from that description.
"""

import pytest
import torch
from torch import nn

import snn_ext
from snn_ext.core.calibration import percentile

T = 5


def official_percentile(x: torch.Tensor, q: float) -> float:
    k = 1 + round(0.01 * float(q) * (x.numel() - 1))
    return x.reshape(-1).kthvalue(k).values.item()


def official_thresholds(layers: list[nn.Module], images: torch.Tensor, scaling_factor: float) -> list[float]:
    """``layers``: conv layers each followed by a spiking neuron; ``nn.AvgPool2d`` layers act on the spikes."""
    convs = [i for i, layer in enumerate(layers) if isinstance(layer, nn.Conv2d)]
    thresholds: list[float] = []
    for target in convs:
        memory = dict.fromkeys(convs, 0.0)
        peak = 0.0
        for _ in range(T):
            out = images  # direct encoding: the analog image at every step
            for i, layer in enumerate(layers):
                if i == target:
                    peak = max(peak, official_percentile(layer(out), 99.7))
                    break
                if isinstance(layer, nn.Conv2d):
                    memory[i] = memory[i] + layer(out)  # leak 1 (find_threshold sets leak=1.0)
                    threshold = thresholds[convs.index(i)]
                    spikes = (memory[i] / threshold - 1 > 0).to(out.dtype)
                    memory[i] = memory[i] - threshold * spikes
                    out = spikes
                else:
                    out = layer(out)
        thresholds.append(peak)
    return [scaling_factor * value for value in thresholds]


def three_conv_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(6, 8, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10, bias=False),
    ).double()


def test_percentile_uses_the_official_rank_rule():
    torch.manual_seed(0)
    for n in (1, 2, 7, 333, 1000, 4097):
        x = torch.randn(n, dtype=torch.float64)
        for q in (0.1, 50, 99.7, 100):
            assert percentile(x, q) == official_percentile(x, q)


@pytest.mark.parametrize("target", ["snntorch", "spikingjelly"])
@pytest.mark.parametrize("scaling_factor", [1.0, 0.5, 0.2])
def test_percentile_conversion_equals_the_official_calibration(target, scaling_factor):
    ann = three_conv_net().eval()
    images = torch.rand(32, 1, 8, 8, dtype=torch.float64)
    expected = official_thresholds([ann[i] for i in range(7)], images, scaling_factor)

    snn = snn_ext.convert(ann, images, "percentile", T, target, scaling_factor=scaling_factor)
    thresholds = [(n.threshold if target == "snntorch" else n.v_threshold).item() for n in snn.neurons()]
    # A spike of ours stands for its layer's raw threshold (folded into the next weights); DIET-SNN's spikes are 1,
    # so its thresholds are ours divided by the amplitude folded into the layer's input weights.
    converted = dict(snn.graph.named_modules())
    amplitudes = [1.0] + [(converted[name].weight / ann[int(name)].weight).mean().item() for name in ("3", "5")]
    official_units = [value / amplitude for value, amplitude in zip(thresholds, amplitudes, strict=True)]
    assert official_units == pytest.approx(expected, rel=1e-6)
    assert all(value > 0 for value in expected)
    # the amplitude is the unscaled threshold of the layer before
    assert amplitudes[1] == pytest.approx(expected[0] / scaling_factor, rel=1e-9)


def test_a_layer_that_no_spike_reaches_takes_its_ann_peak_with_a_warning():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    with torch.no_grad():  # layer 1: threshold = its largest current (percentile 100), reached but not exceeded
        ann[0].weight.fill_(1.0)  # in one step, so it never fires and layer 2 gets no current at all
        ann[0].bias.zero_()
        ann[2].weight.fill_(1.0)
        ann[2].bias.zero_()
    x = torch.rand(16, 4)
    with pytest.warns(UserWarning, match="activation '3' got no positive"):
        snn = snn_ext.convert(ann, x, "percentile", 1, percentile=100.0)
    assert snn.neurons()[1].threshold.item() == pytest.approx(ann[:4](x).max().item())
