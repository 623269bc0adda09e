"""Input encoders: static images ``[B, ...]`` to time-first sequences ``[T, B, ...]``.

* :func:`direct` (DIET-SNN): the analog image drives the first layer at every step. Because the input
  is constant, the first layer's output is constant too: compute it once and expand it over time
  (``direct(conv1(x), T)``) instead of running the layer ``T`` times.
* :func:`hybrid` (single-spike hybrid input encoding, Datta, Kundu & Beerel 2021): the analog image at
  step 0, then a temporal code in which each pixel sends at most one spike and brighter pixels spike
  earlier. The intensity-to-time map is configurable; the default is :func:`linear_spike_step`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from snn_ext.core.checks import check_current, check_num_steps

__all__ = ["SpikeStepMap", "direct", "hybrid", "linear_spike_step"]

SpikeStepMap = Callable[[torch.Tensor, int], torch.Tensor]
"""``(x in [0, 1] [B, ...], num_steps) -> int64 step index in [1, num_steps]`` per pixel; ``num_steps``
means "no spike"."""


def _check_image(x: torch.Tensor) -> None:
    check_current(x, "x")
    if x.dim() < 2:
        raise ValueError(f"x must be a batch [B, F] or [B, C, H, W], got shape {tuple(x.shape)}")


def direct(x: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Direct (analog) encoding: the same input at every step.

    Args:
        x: analog input ``[B, ...]`` (any range; typically the normalized image or the first layer's
            output).
        num_steps: ``T >= 1``.

    Returns:
        ``[T, B, ...]``, a broadcast view of ``x`` (no copy).
    """
    _check_image(x)
    check_num_steps(num_steps, 1)
    return x.expand(num_steps, *x.shape)


def linear_spike_step(x: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Default intensity-to-time map: ``step = 1 + floor((1 - x) * (T - 1))``.

    A pixel of intensity 1 spikes at step 1 (right after the analog step); intensities in ``(0, 1)``
    spread linearly over steps ``1 .. T-1``; intensity 0 maps to ``T``, i.e. never spikes. Brighter
    pixels never spike later than darker ones.
    """
    return (1 + torch.floor((1.0 - x) * (num_steps - 1))).to(torch.int64)


def hybrid(x: torch.Tensor, num_steps: int, spike_step: SpikeStepMap = linear_spike_step) -> torch.Tensor:
    """Single-spike hybrid encoding: analog at step 0, at most one spike per pixel afterwards.

    Args:
        x: input scaled to ``[0, 1]``, ``[B, F]`` or ``[B, C, H, W]``.
        num_steps: ``T >= 2`` (one analog step plus at least one temporal step).
        spike_step: maps intensities to the step at which each pixel spikes (``1 .. T-1``; ``T`` means
            none); default :func:`linear_spike_step`.

    Returns:
        ``[T, B, ...]`` in ``x``'s dtype: ``out[0] == x``; ``out[1:]`` is binary with at most one 1 per
        pixel.

    Raises:
        ValueError: ``num_steps < 2``, ``x`` outside ``[0, 1]``, rank < 2, or a ``spike_step`` result
            outside ``[1, T]``.
    """
    _check_image(x)
    check_num_steps(num_steps, 2)
    if not bool(((x >= 0) & (x <= 1)).all()):  # one read on the host per batch, which NaN fails too
        check_current(x, "x", finite=True)
        raise ValueError(
            f"hybrid encoding needs x scaled to [0, 1], got values in [{x.min().item():.4g}, {x.max().item():.4g}]"
        )
    steps = spike_step(x, num_steps)
    if steps.shape != x.shape or bool((steps < 1).any() or (steps > num_steps).any()):
        raise ValueError(f"spike_step must return one step index in [1, {num_steps}] per pixel")
    t = torch.arange(1, num_steps, device=x.device).view(-1, *([1] * x.dim()))
    spikes = (steps.unsqueeze(0) == t).to(x.dtype)
    return torch.cat([x.unsqueeze(0), spikes])
