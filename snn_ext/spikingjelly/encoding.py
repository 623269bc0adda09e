"""SpikingJelly encoders for direct and single-spike hybrid input, computed by :mod:`snn_ext.core.encoding`."""

from __future__ import annotations

import torch
from spikingjelly.activation_based.encoding import StatefulEncoder

from snn_ext.core.checks import check_num_steps
from snn_ext.core.encoding import SpikeStepMap, direct, hybrid, linear_spike_step

__all__ = ["DirectEncoder", "HybridEncoder"]


class _SequenceEncoder(StatefulEncoder):
    """``'s'``: each call returns the next step (cycling every ``T`` calls, like ``LatencyEncoder``);
    ``'m'``: one call turns ``[N, ...]`` into the whole ``[T, N, ...]`` sequence."""

    def multi_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.single_step_encode(x)


class DirectEncoder(_SequenceEncoder):
    """Direct (analog) encoding: the input itself at each of ``T`` steps (DIET-SNN).

    Args:
        T: number of steps, >= 1.
        step_mode: ``'s'`` or ``'m'``.
    """

    def __init__(self, T: int, step_mode: str = "s") -> None:
        check_num_steps(T, 1, "T")
        super().__init__(T, step_mode)

    def single_step_encode(self, x: torch.Tensor) -> torch.Tensor:
        return direct(x, self.T)


class HybridEncoder(_SequenceEncoder):
    """Single-spike hybrid encoding: analog input at step 0, then one spike per pixel, brighter earlier.

    Args:
        T: number of steps, >= 2.
        spike_step: intensity-to-step map (default :func:`~snn_ext.core.encoding.linear_spike_step`).
        step_mode: ``'s'`` or ``'m'``.

    Input ``[N, F]`` or ``[N, C, H, W]`` scaled to ``[0, 1]``.
    """

    def __init__(self, T: int, spike_step: SpikeStepMap = linear_spike_step, step_mode: str = "s") -> None:
        check_num_steps(T, 2, "T")
        super().__init__(T, step_mode)
        self.spike_step = spike_step

    def single_step_encode(self, x: torch.Tensor) -> torch.Tensor:
        return hybrid(x, self.T, self.spike_step)
