"""Threshold and output-scale statistics for ANN-to-SNN conversion (pure torch).

* ``max``: the largest pre-activation a layer sees (data-based normalisation).
* ``percentile`` (DIET-SNN): the ``q``-th percentile of a layer's input current per time step, maximum
  over steps, averaged over calibration batches; times a scaling factor.
* ``distribution_aware`` (Datta & Beerel 2022): for each layer, pick the threshold ``alpha * mu`` and the
  spike amplitude ``beta * mu`` that minimise the error between the DNN activation and the SNN's average
  output after ``T`` steps, over the empirical distribution of the layer's inputs::

      E[(clip(x_dnn, 0, mu) - beta * mu * n_T(x_snn, alpha * mu, shift) / T) ** 2]

  ``mu`` is the layer's clip (``ClippedReLU``); ``x_dnn`` the DNN pre-activation and ``x_snn`` the
  input current of the same neuron in the partly converted SNN (earlier layers already spiking, averaged
  over the ``T`` steps), so errors of earlier layers are compensated; ``n_T`` is the spike count of an
  integrate-and-fire neuron under constant input (:func:`if_spike_count`) that starts at
  ``shift * threshold``. :class:`ThresholdFit` accumulates the sufficient statistics batch by batch
  (memory bounded) for a grid of ``alpha`` and each ``shift``, with the least-squares ``beta`` in closed
  form. The paper's own fitting script is not public; this objective is ours, documented here.
  ``shift = 0.5`` (start at half the threshold, as in QCFS, Bu et al. 2022) turns the floor of the spike
  count into rounding; it is one of the candidates unless ``shifts=(0.0,)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["LayerScale", "ThresholdFit", "if_spike_count", "percentile"]


@dataclass(frozen=True)
class LayerScale:
    """Conversion result for one activation layer.

    A spike of the converted neuron stands for ``amplitude`` units of the ANN activation; the converter
    folds the amplitude into the next synaptic layer's weights, so spikes stay binary. The neuron starts
    each sequence at ``initial_fraction * threshold``.
    """

    threshold: float
    amplitude: float
    initial_fraction: float = 0.0


def percentile(x: torch.Tensor, q: float) -> float:
    """The ``q``-th percentile (``0 < q <= 100``) of all elements of ``x``, without quantile's size limit."""
    if not 0 < q <= 100:
        raise ValueError(f"percentile q must lie in (0, 100], got {q!r}")
    flat = x.detach().reshape(-1).float()
    k = max(1, math.ceil(q / 100 * flat.numel()))
    return flat.kthvalue(k).values.item()


def if_spike_count(
    x: torch.Tensor, threshold: float | torch.Tensor, timesteps: int, shift: float = 0.0
) -> torch.Tensor:
    """Spikes of an IF neuron under constant input ``x`` for ``timesteps`` steps, starting at ``shift * threshold``.

    With soft reset and firing when ``u > threshold``: ``ceil(T x / threshold + shift) - 1``, clamped to
    ``[0, T]`` (at most one spike per step). Broadcasts ``x`` against ``threshold``.
    """
    return torch.clamp(torch.ceil(timesteps * x / threshold + shift) - 1, 0, timesteps)


class ThresholdFit:
    """Streaming fit of one layer's threshold, amplitude and initial potential (see the module docstring).

    Args:
        clip: the layer's ``mu`` (> 0).
        timesteps: the SNN's ``T``.
        alphas: candidate ``threshold / mu`` values (default 400 in ``(0, 2]``).
        shifts: candidate initial potentials as fractions of the threshold.
    """

    def __init__(
        self,
        clip: float,
        timesteps: int,
        alphas: torch.Tensor | None = None,
        shifts: tuple[float, ...] = (0.0, 0.5),
    ) -> None:
        if not clip > 0:
            raise ValueError(f"clip must be > 0, got {clip!r}")
        self.clip, self.timesteps, self.shifts = float(clip), timesteps, tuple(shifts)
        self.alphas = torch.linspace(0.005, 2.0, 400, dtype=torch.float64) if alphas is None else alphas.double()
        # [shift, alpha]: sum(c * q), sum(q * q); plus sum(c * c) and the element count
        self._cross = torch.zeros(len(self.shifts), len(self.alphas), dtype=torch.float64)
        self._power = torch.zeros_like(self._cross)
        self._target_power = 0.0
        self._count = 0

    def update(self, dnn_input: torch.Tensor, snn_current: torch.Tensor) -> None:
        """Add a batch: DNN pre-activations and the SNN's time-averaged input currents, same shape ``[B, ...]``.

        Uses ``n_T(x) = sum_{k=1..T} 1[x > (k - shift) * threshold / T]``: after sorting the batch once, every
        candidate costs ``T`` binary searches instead of a pass over the batch.
        """
        if dnn_input.shape != snn_current.shape:
            raise ValueError(f"shapes differ: {tuple(dnn_input.shape)} vs {tuple(snn_current.shape)}")
        target = (torch.clamp(dnn_input, 0, self.clip) / self.clip).reshape(-1).double().cpu()
        current, order = torch.sort(snn_current.reshape(-1).double().cpu())
        prefix = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum(target[order], 0)])
        steps = torch.arange(1, self.timesteps + 1, dtype=torch.float64)
        shifts = torch.tensor(self.shifts, dtype=torch.float64).view(-1, 1, 1)
        # [shift, alpha, k]: the k-th spike needs x > (k - shift) * alpha * mu / T
        bounds = (steps - shifts) * self.alphas.view(1, -1, 1) * self.clip / self.timesteps
        below = torch.searchsorted(current, bounds.contiguous(), right=True)
        above = current.numel() - below
        self._cross += (prefix[-1] - prefix[below]).sum(-1) / self.timesteps
        self._power += ((2 * steps - 1) * above).sum(-1) / self.timesteps**2
        self._target_power += float((target * target).sum())
        self._count += target.numel()

    def solve(self) -> tuple[LayerScale, float]:
        """The best ``LayerScale`` and its mean squared error (in units of ``clip ** 2``)."""
        if self._count == 0:
            raise ValueError("no data: call update() with at least one batch first")
        betas = torch.where(self._power > 0, self._cross / self._power.clamp(min=1e-300), 0.0)
        errors = (self._target_power - 2 * betas * self._cross + betas**2 * self._power) / self._count
        best = int(torch.argmin(errors))
        i, j = divmod(best, len(self.alphas))
        if betas[i, j] <= 0:
            raise ValueError("no threshold makes the layer spike: its inputs never exceed the candidate thresholds")
        scale = LayerScale(self.alphas[j].item() * self.clip, betas[i, j].item() * self.clip, self.shifts[i])
        return scale, errors[i, j].item()
