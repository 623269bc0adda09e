"""Short ``repr`` text for per-layer, per-channel or per-neuron neuron parameters."""

from __future__ import annotations

import torch

__all__ = ["format_param"]


def format_param(t: torch.Tensor) -> str:
    """``'0.5'`` for a per-layer scalar, ``'[C] tensor'`` for a per-channel one, ``'[C, H, W] tensor'`` etc."""
    return f"{t.item():.4g}" if t.dim() == 0 else f"[{', '.join(map(str, t.shape))}] tensor"
