"""Dropout in converted SNNs: one mask per sample, the same at every time step (DIET-SNN)."""

import pytest
import torch
from torch import nn

import snn_ext
from snn_ext.conversion import SequenceDropout


def test_mask_is_drawn_per_sample_and_reused_at_every_step():
    torch.manual_seed(0)
    dropout = SequenceDropout(0.5, timesteps=4)
    x = torch.ones(4 * 3, 10)  # [T * B, N], step-major
    out = dropout(x).unflatten(0, (4, 3))
    assert torch.equal(out, out[:1].expand_as(out))  # identical across T
    assert not torch.equal(out[0, 0], out[0, 1])  # different samples, different masks
    assert set(out.unique().tolist()) == {0.0, 2.0}  # kept elements scaled by 1 / (1 - p)


def test_channelwise_mask_and_eval_identity():
    torch.manual_seed(0)
    dropout = SequenceDropout(0.5, timesteps=2, channelwise=True)
    out = dropout(torch.ones(2 * 3, 8, 4, 4)).unflatten(0, (2, 3))
    assert torch.equal(out, out.amax((-2, -1), keepdim=True).expand_as(out))  # whole channels kept or dropped
    dropout.eval()
    x = torch.randn(6, 8, 4, 4)
    assert dropout(x) is x


def test_bad_probability():
    with pytest.raises(ValueError, match="p must be in"):
        SequenceDropout(1.0)


def test_converter_keeps_dropout_with_the_anns_probability():
    ann = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 4)).eval()
    snn = snn_ext.convert(ann, torch.rand(8, 1, 4, 4), "max", timesteps=3)
    dropouts = [m for m in snn.modules() if isinstance(m, SequenceDropout)]
    assert [(d.p, d.timesteps, d.training) for d in dropouts] == [(0.3, 3, False)]
    snn.timesteps = 5
    assert dropouts[0].timesteps == 5
    x = torch.rand(8, 1, 4, 4)
    assert torch.equal(snn(x), snn(x))  # eval: deterministic
    snn.train()
    torch.manual_seed(1)
    assert not torch.equal(snn(x), snn.eval()(x))
