"""Spike-time + membrane cross-entropy."""

import pytest
import torch
from torch.nn import functional as F

from snn_ext.core.loss import first_spike_time, spike_time_membrane_logits, spike_time_membrane_loss
from snn_ext.core.surrogate import Triangle


def test_first_spike_time_by_hand():
    spikes = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).unsqueeze(1)  # [T=3, B=1, C=3]
    assert first_spike_time(spikes).tolist() == [[1.0, 0.0, 3.0]]  # never firing -> T


def test_logits_and_loss_by_hand():
    spikes = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).unsqueeze(1)  # class 1 fires first
    membrane = torch.tensor([[0.5, 0.2]])
    logits = spike_time_membrane_logits(spikes, membrane, kappa=2.0)
    torch.testing.assert_close(logits, torch.tensor([[0.5 - 2.0, 0.2]]))
    loss = spike_time_membrane_loss(spikes, membrane, torch.tensor([1]), kappa=2.0)
    torch.testing.assert_close(loss, F.cross_entropy(logits, torch.tensor([1])))


def test_loss_is_differentiable_through_spike_times():
    z = torch.tensor([[[-0.5, 0.3]], [[0.2, -0.1]]], requires_grad=True)  # [T=2, B=1, C=2]
    spikes = Triangle(0.3)(z)
    loss = spike_time_membrane_loss(spikes, torch.zeros(1, 2), torch.tensor([0]))
    loss.backward()
    assert z.grad.abs().sum() > 0
    # the target class (0) fired late: pushing its potential up at step 0 makes it fire earlier
    assert z.grad[0, 0, 0] < 0


def test_bad_arguments():
    spikes = torch.zeros(3, 2, 4)
    with pytest.raises(ValueError, match="kappa must be >= 0"):
        spike_time_membrane_logits(spikes, torch.zeros(2, 4), kappa=-1.0)
    with pytest.raises(ValueError, match=r"membrane must have shape \(2, 4\)"):
        spike_time_membrane_logits(spikes, torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"spikes must be \[T, B, ...\]"):
        first_spike_time(torch.zeros(0, 2, 4))
