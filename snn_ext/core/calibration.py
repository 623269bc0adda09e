"""Threshold and output-scale statistics for ANN-to-SNN conversion (pure torch).

* ``max``: the largest pre-activation a layer sees (data-based normalisation).
* ``percentile`` (DIET-SNN): the ``q``-th percentile of a layer's input current per time step, maximum
  over steps, averaged over calibration batches, with the earlier layers spiking at their unscaled
  thresholds; every threshold is multiplied by the scaling factor at the end (as the official
  ``find_threshold``).
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

from dataclasses import dataclass

import torch

__all__ = ["LayerScale", "ThresholdFit", "if_spike_count", "percentile"]


@dataclass(frozen=True)
class LayerScale:
    """Conversion result for one activation layer.

    A spike of the converted neuron stands for ``amplitude`` units of the ANN activation; the converter
    folds the amplitude into the next synaptic layer's weights, so spikes stay binary. The neuron starts
    each sequence at ``initial_fraction * threshold``. Each field is a float (per layer) or a 1-d tensor
    ``[C]`` (per channel, dimension 1 of the layer's activations).
    """

    threshold: float | torch.Tensor
    amplitude: float | torch.Tensor
    initial_fraction: float | torch.Tensor = 0.0


def percentile(x: torch.Tensor, q: float) -> float:
    """The ``q``-th percentile (``0 < q <= 100``) of all elements of ``x``, without quantile's size limit.

    DIET-SNN's rank rule (the official ``percentile`` of ``self_models/vgg_spiking.py``): the ``k``-th smallest
    element with ``k = 1 + round(q / 100 * (n - 1))`` (Python's ``round``), so both pick the same element.
    """
    if not 0 < q <= 100:
        raise ValueError(f"percentile q must lie in (0, 100], got {q!r}")
    flat = x.detach().reshape(-1)
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()  # kthvalue's CPU kernels take neither float16 nor bfloat16
    k = 1 + round(0.01 * float(q) * (flat.numel() - 1))
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

    Per layer (``clip`` a float: one fit over all elements) or per channel (``clip`` a 1-d tensor ``[C]``:
    an independent fit for each channel of dimension 1, with its own ``mu``).

    Args:
        clip: the layer's ``mu`` (> 0), or one per channel ``[C]``.
        timesteps: the SNN's ``T``.
        alphas: candidate ``threshold / mu`` values (default 400 in ``(0, 2]``).
        shifts: candidate initial potentials as fractions of the threshold.
    """

    def __init__(
        self,
        clip: float | torch.Tensor,
        timesteps: int,
        alphas: torch.Tensor | None = None,
        shifts: tuple[float, ...] = (0.0, 0.5),
    ) -> None:
        clips = torch.as_tensor(clip, dtype=torch.float64).detach().cpu()
        if clips.dim() > 1 or not clips.numel() or not bool((clips > 0).all()):
            raise ValueError(f"clip must be > 0 (a float, or a 1-d tensor per channel), got {clip!r}")
        self.per_channel = clips.dim() == 1
        self.clip, self.timesteps, self.shifts = clips.reshape(-1), timesteps, tuple(shifts)
        self.alphas = torch.linspace(0.005, 2.0, 400, dtype=torch.float64) if alphas is None else alphas.double()
        # [channel, shift, alpha]: sum(c * q), sum(q * q); plus sum(c * c) and the element count per channel
        self._cross = torch.zeros(len(self.clip), len(self.shifts), len(self.alphas), dtype=torch.float64)
        self._power = torch.zeros_like(self._cross)
        self._target_power = torch.zeros(len(self.clip), dtype=torch.float64)
        self._count = 0

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """``[channels, elements]`` in float64 on the CPU: dimension 1 first per channel, else one row."""
        if not self.per_channel:
            return x.reshape(1, -1).double().cpu()
        if x.dim() < 2 or x.shape[1] != len(self.clip):
            raise ValueError(f"per-channel fit of {len(self.clip)} channels got a batch of shape {tuple(x.shape)}")
        return x.transpose(0, 1).reshape(len(self.clip), -1).double().cpu()

    def update(self, dnn_input: torch.Tensor, snn_current: torch.Tensor) -> None:
        """Add a batch: DNN pre-activations and the SNN's time-averaged input currents, same shape ``[B, ...]``.

        Uses ``n_T(x) = sum_{k=1..T} 1[x > (k - shift) * threshold / T]``: after sorting the batch once, every
        candidate costs ``T`` binary searches instead of a pass over the batch.
        """
        if dnn_input.shape != snn_current.shape:
            raise ValueError(f"shapes differ: {tuple(dnn_input.shape)} vs {tuple(snn_current.shape)}")
        clip = self.clip.view(-1, 1)
        target = torch.minimum(self._rows(dnn_input).clamp(min=0), clip) / clip
        current, order = torch.sort(self._rows(snn_current), dim=1)
        zeros = torch.zeros(len(clip), 1, dtype=torch.float64)
        prefix = torch.cat([zeros, torch.cumsum(target.gather(1, order), 1)], 1)
        steps = torch.arange(1, self.timesteps + 1, dtype=torch.float64)
        shifts = torch.tensor(self.shifts, dtype=torch.float64).view(1, -1, 1, 1)
        # [channel, shift, alpha, k]: the k-th spike needs x > (k - shift) * alpha * mu / T
        bounds = (steps - shifts) * self.alphas.view(1, 1, -1, 1) * clip.view(-1, 1, 1, 1) / self.timesteps
        below = torch.searchsorted(current, bounds.reshape(len(clip), -1), right=True)
        above = (current.shape[1] - below).view(bounds.shape)
        self._cross += (prefix[:, -1:] - prefix.gather(1, below)).view(bounds.shape).sum(-1) / self.timesteps
        self._power += ((2 * steps - 1) * above).sum(-1) / self.timesteps**2
        self._target_power += (target * target).sum(1)
        self._count += target.shape[1]

    def solve(self) -> tuple[LayerScale, float]:
        """The best ``LayerScale`` and its mean squared error (in units of ``clip ** 2``, mean over channels).

        Per channel, a channel whose inputs never exceed a candidate threshold (or whose DNN activation is
        always 0) gets amplitude 0 (its spikes carry nothing, as its activation) and threshold ``mu``.

        Raises:
            ValueError: no data yet; per layer: no candidate threshold makes the layer spike.
        """
        if self._count == 0:
            raise ValueError("no data: call update() with at least one batch first")
        betas = torch.where(self._power > 0, self._cross / self._power.clamp(min=1e-300), 0.0)
        errors = (self._target_power.view(-1, 1, 1) - 2 * betas * self._cross + betas**2 * self._power) / self._count
        best = errors.flatten(1).argmin(1)
        shift_index, alpha_index = best // len(self.alphas), best % len(self.alphas)
        channels = torch.arange(len(self.clip))
        beta = betas[channels, shift_index, alpha_index]
        if not self.per_channel and beta.item() <= 0:
            raise ValueError("no threshold makes the layer spike: its inputs never exceed the candidate thresholds")
        live = beta > 0
        threshold = torch.where(live, self.alphas[alpha_index], 1.0) * self.clip
        amplitude = beta.clamp(min=0) * self.clip
        fraction = torch.where(live, torch.tensor(self.shifts, dtype=torch.float64)[shift_index], 0.0)
        error = errors.flatten(1)[channels, best].mean().item()
        if self.per_channel:
            dtype = torch.get_default_dtype()
            return LayerScale(threshold.to(dtype), amplitude.to(dtype), fraction.to(dtype)), error
        return LayerScale(threshold.item(), amplitude.item(), fraction.item()), error
