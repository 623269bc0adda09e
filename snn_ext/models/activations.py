"""Activations for ANNs that will be converted to SNNs."""

from __future__ import annotations

import torch
from torch import nn

from snn_ext.core.checks import check_threshold

__all__ = ["QCFS", "ClippedReLU"]


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


class _FloorSTE(torch.autograd.Function):
    """``floor`` forward, identity backward (straight-through estimator)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return torch.floor(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output


class QCFS(nn.Module):
    """Quantization-clip-floor-shift activation of Bu et al. (ICLR 2022), the ANN side of ``qcfs`` conversion.

    ``y = clip / L * clamp(floor(L * x / clip + shift), 0, L)`` with ``shift`` 0.5: ``L + 1`` levels from 0 to
    ``clip``, the value an integrate-and-fire neuron with threshold ``clip`` started at half its threshold gives
    after ``L`` steps of constant input. ``clip`` is trainable (one per layer), the floor passes gradients
    straight through (as the official code, ``putshua/SNN_conversion_QCFS``).

    Args:
        levels: ``L`` (> 0): the paper uses 4 (CIFAR) and 8 (ImageNet).
        init: initial clip ``lambda``, > 0.
        shift: ``phi`` in ``[0, 1)`` (0.5 in the paper).

    Shapes: any; the output has the input's shape.
    """

    def __init__(self, levels: int = 4, init: float = 4.0, shift: float = 0.5) -> None:
        super().__init__()
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be an integer >= 1, got {levels!r}")
        if not 0 <= shift < 1:
            raise ValueError(f"shift must lie in [0, 1), got {shift!r}")
        self.levels, self.shift = levels, float(shift)
        self.clip = nn.Parameter(check_threshold(init, "init"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        clip = self.clip.to(x.dtype)
        fraction = torch.clamp(x / clip, 0, 1)
        return _FloorSTE.apply(fraction * self.levels + self.shift) / self.levels * clip

    def extra_repr(self) -> str:
        return f"levels={self.levels}, clip={self.clip.item():.4g}, shift={self.shift}"
