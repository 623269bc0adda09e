"""Activations for ANNs that will be converted to SNNs."""

from __future__ import annotations

import torch
from torch import nn

from snn_ext.core.checks import check_threshold

__all__ = ["ClippedReLU"]


class ClippedReLU(nn.Module):
    """``y = min(max(x, 0), clip)`` with one trainable ``clip`` per layer (PACT-style gradient).

    The distribution-aware DNN of Datta & Beerel (2022) uses it in place of ReLU so that each layer's
    activation range is learned; the converter reads ``clip`` as that layer's ``mu``. The gradient
    with respect to ``clip`` is the sum of the upstream gradients over the clipped elements
    (``x > clip``), as in PACT; below it the gradient passes to ``x`` as for ReLU.

    Args:
        init: initial clip value, > 0 (Datta & Beerel: 4.0).

    Shapes: any; the output has the input's shape.
    """

    def __init__(self, init: float = 4.0) -> None:
        super().__init__()
        self.clip = nn.Parameter(check_threshold(init, "init"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x > self.clip, self.clip.to(x.dtype), torch.relu(x))

    def extra_repr(self) -> str:
        return f"clip={self.clip.item():.4g}"
