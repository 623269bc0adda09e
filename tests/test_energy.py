"""Spike and synaptic-operation counting checked against hand-computed numbers."""

import pytest
import torch
from spikingjelly.activation_based import functional, layer
from torch import nn

from snn_ext.core.encoding import hybrid
from snn_ext.core.energy import EnergyTable, OpCounter


def test_two_layer_conv_net_by_hand():
    conv1 = nn.Conv2d(1, 2, 3, padding=1, bias=False)  # fan-in 9, fan-out 18
    conv2 = nn.Conv2d(2, 4, 3, padding=1, bias=False)  # fan-in 18, fan-out 36
    net = nn.Sequential(conv1, nn.Identity(), conv2)
    analog = torch.full((1, 1, 4, 4), 0.5)
    spikes = torch.zeros(1, 2, 4, 4)
    spikes[0, 0, 1, 1] = spikes[0, 1, 2, 3] = spikes[0, 1, 0, 0] = 1.0
    with OpCounter(net) as ops:
        net(analog)  # analog into conv1 -> MACs; conv1's output is analog too -> MACs in conv2
        conv2(spikes)  # 3 spikes into conv2 -> 3 * 36 ACs
    assert ops.layers["0"].macs == 2 * 16 * 9
    assert ops.layers["0"].acs == 0
    assert ops.layers["2"].macs == 4 * 16 * 18
    assert ops.layers["2"].acs == 3 * 36
    assert ops.layers["2"].input_spikes == 3
    assert ops.layers["2"].spike_rate == pytest.approx(3 / 32)
    expected = (2 * 16 * 9 + 4 * 16 * 18) * 4.6 + 3 * 36 * 0.9
    assert ops.energy_pj() == pytest.approx(expected)
    assert not conv1._forward_hooks  # hooks removed on exit


def test_hybrid_input_counts_macs_for_the_analog_step_and_acs_for_input_spikes():
    torch.manual_seed(0)
    fc = nn.Linear(6, 3)
    x = torch.rand(2, 6)
    x_seq = hybrid(x, 4)
    n_input_spikes = int(x_seq[1:].sum())
    with OpCounter(fc, EnergyTable(mac_pj=3.2, ac_pj=0.1)) as ops:
        fc(x_seq.flatten(0, 1))  # [T*B, F]: one analog slice per sample at step 0, binary afterwards
    assert ops.layers[""].macs == 2 * 3 * 6
    assert ops.layers[""].acs == n_input_spikes * 3
    assert ops.energy_pj() == pytest.approx(2 * 3 * 6 * 3.2 + n_input_spikes * 3 * 0.1)


def test_spikingjelly_multi_step_layers_are_counted_per_time_step():
    conv = layer.Conv2d(1, 2, 3, padding=1, bias=False, step_mode="m")
    x_seq = hybrid(torch.rand(3, 1, 4, 4), 5)  # [T=5, B=3, 1, 4, 4]
    with OpCounter(conv) as ops:
        conv(x_seq)
    functional.reset_net(conv)
    assert ops.layers[""].macs == 3 * 2 * 16 * 9  # the analog step only
    assert ops.layers[""].acs == int(x_seq[1:].sum()) * 18


def test_average_pooled_spikes_count_as_spikes():
    pool, fc = nn.AvgPool2d(2), nn.Linear(8, 5)
    net = nn.Sequential(pool, nn.Flatten(), fc)
    spikes = torch.zeros(3, 2, 4, 4)
    spikes[0, 0, 0, 0] = spikes[0, 0, 0, 1] = spikes[1, 1, 3, 3] = 1.0  # two spikes share one pooling window
    with OpCounter(net) as ops:
        net(spikes)
    assert ops.layers["2"].macs == 0
    assert ops.layers["2"].input_spikes == 3
    assert ops.layers["2"].acs == 3 * 5
    assert ops.layers["2"].spike_rate == pytest.approx(3 / (3 * 32))
    with OpCounter(net) as ops:
        net(torch.rand(3, 2, 4, 4) * 0.5 + 0.25)  # analog input stays MACs
    assert ops.layers["2"].macs == 3 * 5 * 8
