"""Loss on output spike times and membrane potentials (single-spike hybrid encoding).

Datta, Kundu & Beerel (2021) train with a cross-entropy built from both the output neurons' spike
times and their membrane potentials; the paper's exact formula is not public. This module implements
the formulation in our METHODS notes, ``CE(softmax(membrane - kappa * t_first))``, with ``kappa``
configurable: the correct class should spike early and end with a high potential. It is our
formulation, not a verified reproduction.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["first_spike_time", "spike_time_membrane_logits", "spike_time_membrane_loss"]


def first_spike_time(spikes: torch.Tensor) -> torch.Tensor:
    """Differentiable step index of each neuron's first spike.

    ``t_first = sum_t prod_{tau <= t} (1 - s[tau])``: the number of steps before the first spike, ``T``
    for a neuron that never fires. Gradients flow through the spikes' surrogate.

    Args:
        spikes: ``[T, B, ...]`` in ``{0, 1}``.

    Returns:
        ``[B, ...]`` float step indices in ``[0, T]``.
    """
    if spikes.dim() < 2 or spikes.shape[0] == 0:
        raise ValueError(f"spikes must be [T, B, ...] with T >= 1, got shape {tuple(spikes.shape)}")
    return torch.cumprod(1.0 - spikes, dim=0).sum(0)


def spike_time_membrane_logits(spikes: torch.Tensor, membrane: torch.Tensor, kappa: float = 1.0) -> torch.Tensor:
    """Class scores ``membrane - kappa * t_first`` ``[B, C]``; ``argmax`` is the prediction.

    Args:
        spikes: output spikes ``[T, B, C]``.
        membrane: output membrane readout ``[B, C]`` (e.g. the potential integrated over the sequence).
        kappa: weight of one step of spike time against one unit of potential, >= 0.
    """
    if kappa < 0:
        raise ValueError(f"kappa must be >= 0, got {kappa!r}")
    if membrane.shape != spikes.shape[1:]:
        raise ValueError(f"membrane must have shape {tuple(spikes.shape[1:])} (spikes[0]), got {tuple(membrane.shape)}")
    return membrane - kappa * first_spike_time(spikes)


def spike_time_membrane_loss(
    spikes: torch.Tensor,
    membrane: torch.Tensor,
    target: torch.Tensor,
    kappa: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy of :func:`spike_time_membrane_logits` against integer labels ``target`` ``[B]``."""
    return F.cross_entropy(spike_time_membrane_logits(spikes, membrane, kappa), target, reduction=reduction)
