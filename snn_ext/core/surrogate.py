"""Surrogate spike functions on the normalized potential ``z = u / v_th - 1``.

Every surrogate is a small :class:`torch.nn.Module` (so it pickles and shows in ``repr``) whose
forward pass is the Heaviside step ``1[z > 0]`` and whose backward pass is a documented
pseudo-derivative. ``primitive(z)`` is a smooth function whose true derivative equals that
pseudo-derivative; the tests use it to check each backward pass with ``torch.autograd.gradcheck``.

DIET-SNN (Rathi & Roy, 2020) uses :class:`Triangle` with ``gamma = 0.3`` on the normalized
potential; the ultra-low-latency SNN of Datta & Beerel (2022) uses :class:`Box`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Box", "Surrogate", "Triangle", "heaviside"]


def heaviside(z: torch.Tensor) -> torch.Tensor:
    """Spike indicator ``1[z > 0]`` in ``z``'s dtype (no gradient)."""
    return (z > 0).to(z.dtype)


class _SurrogateSpike(torch.autograd.Function):
    """Heaviside forward, ``surrogate.derivative(z)`` backward."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
        ctx.save_for_backward(z)
        ctx.surrogate = surrogate
        return heaviside(z)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        (z,) = ctx.saved_tensors
        return grad_output * ctx.surrogate.derivative(z), None


class Surrogate(nn.Module):
    """Base class: ``forward(z)`` spikes where ``z > 0`` and back-propagates ``derivative(z)``.

    Subclasses implement :meth:`derivative` and :meth:`primitive`.
    """

    def derivative(self, z: torch.Tensor) -> torch.Tensor:
        """Pseudo-derivative ``d spike / d z`` used in the backward pass, same shape as ``z``."""
        raise NotImplementedError

    def primitive(self, z: torch.Tensor) -> torch.Tensor:
        """A smooth function whose derivative is :meth:`derivative` (its antiderivative)."""
        raise NotImplementedError

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Spikes ``1[z > 0]``, shape and dtype of ``z``."""
        return _SurrogateSpike.apply(z, self)


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


class Triangle(Surrogate):
    """DIET-SNN's piecewise-linear surrogate: ``d spike / d z = gamma * max(0, 1 - |z|)``.

    Args:
        gamma: peak height of the triangle (DIET-SNN: 0.3). Must be > 0.
    """

    def __init__(self, gamma: float = 0.3) -> None:
        super().__init__()
        self.gamma = _positive(gamma, "gamma")

    def derivative(self, z: torch.Tensor) -> torch.Tensor:
        return self.gamma * torch.clamp(1.0 - z.abs(), min=0.0)

    def primitive(self, z: torch.Tensor) -> torch.Tensor:
        zc = torch.clamp(z, -1.0, 1.0)
        return self.gamma * (zc - zc * zc.abs() / 2)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"


class Box(Surrogate):
    """Rectangular surrogate: ``d spike / d z = height`` for ``|z| < width``, else 0.

    Args:
        width: half-width of the box on ``z`` (Datta & Beerel 2022: 1.0). Must be > 0.
        height: value of the pseudo-derivative inside the box (1.0). Must be > 0.
    """

    def __init__(self, width: float = 1.0, height: float = 1.0) -> None:
        super().__init__()
        self.width = _positive(width, "width")
        self.height = _positive(height, "height")

    def derivative(self, z: torch.Tensor) -> torch.Tensor:
        return self.height * (z.abs() < self.width).to(z.dtype)

    def primitive(self, z: torch.Tensor) -> torch.Tensor:
        return self.height * torch.clamp(z, -self.width, self.width)

    def extra_repr(self) -> str:
        return f"width={self.width}, height={self.height}"
