"""Threshold and output-scale statistics for ANN-to-SNN conversion (pure torch).

* ``max``: the largest pre-activation a layer sees (data-based normalisation).
* ``percentile`` (DIET-SNN): the ``q``-th percentile of a layer's input current per time step, maximum
  over steps, averaged over calibration batches, with the earlier layers spiking at their unscaled
  thresholds; every threshold is multiplied by the scaling factor at the end (as the official
  ``find_threshold``).
* ``distribution_aware`` (Datta & Beerel 2022): for each layer (or each channel), pick the threshold
  ``alpha * mu`` and the spike amplitude ``beta * mu`` that minimise the error between the DNN activation and
  the SNN's average output after ``T`` steps, over the empirical distribution of the layer's inputs::

      E[(a_dnn - beta * mu * n_T(c_snn, alpha * mu, shift) / T) ** 2]

  ``mu`` is the layer's largest activation (at most a ``ClippedReLU``'s clip); ``a_dnn`` the DNN activation
  (``relu``, ``clip(x, 0, mu)`` or the ``QCFS`` staircase of the pre-activation) and ``c_snn[1..T]`` the
  input currents of the same neuron in the partly converted SNN (earlier layers already spiking), so errors
  of earlier layers are compensated; ``n_T`` is the spike count of the integrate-and-fire neuron, started
  at ``shift * threshold`` and *simulated* on those currents, so the fit sees what the neuron really does
  when its input varies from step to step (spikes that arrive late in a deep layer, a shortcut that fires
  before the residual branch: on a 3-block ResNet at T=2 a constant-input model of the time-averaged
  current gave 0.709 accuracy, the simulated count 0.962). :class:`ThresholdFit` accumulates the
  sufficient statistics batch by batch on a fixed-size random sample of each batch (memory bounded) for a
  grid of ``alpha`` and each ``shift``, with the least-squares ``beta`` in closed form. The paper's own
  fitting script is not public; this objective is ours, documented here. ``shift = 0.5`` (start at half
  the threshold, as in QCFS, Bu et al. 2022) turns the floor of the spike count into rounding; it is one of
  the candidates unless ``shifts=(0.0,)``.

  *Weight calibration* (our addition, on by default; in the spirit of Li et al., ICML 2021, "A free lunch from
  ANN"): before a layer's threshold is fitted, the synaptic layer that feeds it (a conv or linear layer, also
  through a residual addition) is corrected so that its time-averaged current in the partly converted SNN best
  matches the DNN's pre-activation. :class:`LinearCorrection` solves that least-squares problem in closed form
  (ridge regression of the residual ``z_dnn - mean_t(c_snn)`` on the layer's time-averaged SNN input, its
  strength chosen on held-out calibration rows so that few images do not overfit a classifier), so the
  quantization error of the earlier layers is absorbed into the weights instead of compounding with depth;
  the output layer gets the same correction against the DNN's logits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["LayerScale", "LinearCorrection", "ThresholdFit", "percentile"]

_SIMULATION_ELEMENTS = 2**22
"""Neurons simulated at once by :class:`ThresholdFit` (channels x candidates x samples): bounds its memory."""


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


class ThresholdFit:
    """Streaming fit of one layer's threshold, amplitude and initial potential (see the module docstring).

    Per layer (``clip`` a float: one fit over all elements) or per channel (``clip`` a 1-d tensor ``[C]``:
    an independent fit for each channel of dimension 1, with its own ``mu``).

    Args:
        clip: the layer's ``mu`` (> 0), or one per channel ``[C]``.
        timesteps: the SNN's ``T``.
        alphas: candidate ``threshold / mu`` values (default 200 log-spaced in ``[0.005, 2]``: 3% apart).
        shifts: candidate initial potentials as fractions of the threshold.
        samples: elements per channel (per layer: of the layer) drawn from each batch, without replacement,
            by a generator seeded with ``seed`` (the fit is deterministic); all when the batch has fewer.
        seed: seed of that generator.
    """

    def __init__(
        self,
        clip: float | torch.Tensor,
        timesteps: int,
        alphas: torch.Tensor | None = None,
        shifts: tuple[float, ...] = (0.0, 0.5),
        samples: int = 4096,
        seed: int = 0,
    ) -> None:
        clips = torch.as_tensor(clip, dtype=torch.float64).detach().cpu()
        if clips.dim() > 1 or not clips.numel() or not bool((clips > 0).all()):
            raise ValueError(f"clip must be > 0 (a float, or a 1-d tensor per channel), got {clip!r}")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
        self.per_channel = clips.dim() == 1
        self.clip, self.timesteps, self.shifts, self.samples = clips.reshape(-1), timesteps, tuple(shifts), samples
        self.alphas = (
            torch.logspace(math.log10(0.005), math.log10(2.0), 200, dtype=torch.float64)
            if alphas is None
            else alphas.double()
        )
        self._generator = torch.Generator().manual_seed(seed)
        # [channel, shift, alpha]: sum(c * q), sum(q * q); plus sum(c * c) and the element count per channel
        self._cross = torch.zeros(len(self.clip), len(self.shifts), len(self.alphas), dtype=torch.float64)
        self._power = torch.zeros_like(self._cross)
        self._target_power = torch.zeros(len(self.clip), dtype=torch.float64)
        self._count = 0

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """``[channels, elements]`` on the CPU, detached: dimension 1 first per channel, else one row."""
        x = x.detach()
        if not self.per_channel:
            return x.reshape(1, -1).cpu()
        if x.dim() < 2 or x.shape[1] != len(self.clip):
            raise ValueError(f"per-channel fit of {len(self.clip)} channels got a batch of shape {tuple(x.shape)}")
        return x.transpose(0, 1).reshape(len(self.clip), -1).cpu()

    def update(self, dnn_output: torch.Tensor, snn_currents: torch.Tensor) -> None:
        """Add a batch: DNN activations ``[B, ...]`` (outputs, clamped to ``[0, mu]``) and the SNN's input
        currents of the same neurons ``[T, B, ...]``.

        Simulates the integrate-and-fire neuron (leak 1, soft reset, spike where ``u > threshold``) for every
        candidate threshold and initial potential on a sample of :attr:`samples` elements per channel.
        """
        if snn_currents.shape != (self.timesteps, *dnn_output.shape):
            raise ValueError(
                f"snn_currents must be [T={self.timesteps}, *dnn_output.shape] = "
                f"{[self.timesteps, *dnn_output.shape]}, got {list(snn_currents.shape)}"
            )
        targets = self._rows(dnn_output)
        chosen = slice(None)
        if targets.shape[1] > self.samples:  # sample before gathering the T steps: only the sample is copied
            chosen = torch.randperm(targets.shape[1], generator=self._generator)[: self.samples]
            targets = targets[:, chosen]
        currents = torch.stack([self._rows(step)[:, chosen] for step in snn_currents], 1)  # [channel, T, elements]
        clip = self.clip.view(-1, 1).to(targets.dtype)
        target = (torch.minimum(targets.clamp(min=0), clip) / clip).double()
        thresholds = self.alphas.to(currents.dtype).view(1, -1, 1) * clip.view(-1, 1, 1)  # [channel, alpha, 1]
        chunk = max(1, _SIMULATION_ELEMENTS // (len(self.alphas) * target.shape[1]))  # channels per pass
        for first in range(0, len(self.clip), chunk):
            part = slice(first, first + chunk)
            for i, shift in enumerate(self.shifts):
                rates = _if_rates(currents[part], thresholds[part], shift).double()  # [channel, alpha, elements]
                self._cross[part, i] += (rates * target[part].unsqueeze(1)).sum(-1)
                self._power[part, i] += (rates * rates).sum(-1)
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


def _if_rates(currents: torch.Tensor, thresholds: torch.Tensor, shift: float) -> torch.Tensor:
    """Spike counts / T of IF neurons: currents ``[C, T, N]``, thresholds ``[C, A, 1]`` -> ``[C, A, N]``."""
    timesteps = currents.shape[1]
    potential = (shift * thresholds).expand(-1, -1, currents.shape[2]).clone()
    count = torch.zeros_like(potential)
    for t in range(timesteps):
        potential += currents[:, t].unsqueeze(1)
        spikes = (potential > thresholds).to(potential.dtype)
        potential -= thresholds * spikes
        count += spikes
    return count / timesteps


class LinearCorrection:
    """Streaming ridge regression, its strength chosen on held-out rows: the change of a synaptic layer that best
    maps its inputs onto residuals.

    For rows of features ``x`` ``[N, F]`` (a linear layer's inputs, or a convolution's unfolded input patches)
    and residuals ``r`` ``[N, C]`` (what the layer's output lacks), accumulates ``x^T x`` and ``x^T r`` and
    solves for ``dW`` ``[C, F]`` (and ``db`` ``[C]`` with ``bias=True``) minimising::

        sum ||r - x dW^T - db||^2 + ridge * mean(diag(x^T x)) * ||dW||^2

    A fraction ``holdout`` of the rows (drawn at random) is kept aside: each candidate ``ridge`` is fitted on the
    other rows and scored on those, together with no change at all, and the best is refitted on every row. So a
    layer with few rows per feature (a classifier calibrated on a few hundred images) is not overfitted: its
    correction shrinks, or stays 0 when no candidate predicts held-out residuals better than none.

    Args:
        features: ``F``.
        outputs: ``C``.
        bias: also fit a constant per output (not penalised).
        ridges: candidate strengths (> 0), relative to the mean diagonal of ``x^T x``.
        holdout: fraction of rows held out to choose among them, in ``(0, 1)``.
        samples: rows kept per :meth:`update`, drawn without replacement by a generator seeded with ``seed``.
        seed: seed of that generator.
    """

    def __init__(
        self,
        features: int,
        outputs: int,
        bias: bool,
        ridges: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0),
        holdout: float = 0.25,
        samples: int = 2**16,
        seed: int = 0,
    ) -> None:
        if not ridges or any(not ridge > 0 for ridge in ridges):
            raise ValueError(f"ridges must be a non-empty tuple of values > 0, got {ridges!r}")
        if not 0 < holdout < 1:
            raise ValueError(f"holdout must lie in (0, 1), got {holdout!r}")
        self.features, self.outputs, self.bias, self.samples = features, outputs, bias, samples
        self.ridges, self.holdout = tuple(ridges), holdout
        self.ridge: float | None = None
        """The strength :meth:`solve` chose (``None``: no change)."""
        self._generator = torch.Generator().manual_seed(seed)
        size = features + int(bias)
        # [fit rows, held-out rows]
        self._gram = torch.zeros(2, size, size, dtype=torch.float64)
        self._cross = torch.zeros(2, size, outputs, dtype=torch.float64)
        self._count = torch.zeros(2, dtype=torch.int64)

    def update(self, x: torch.Tensor, r: torch.Tensor) -> None:
        """Add rows: features ``[N, F]`` and residuals ``[N, C]`` (same ``N``)."""
        if x.dim() != 2 or r.dim() != 2 or x.shape != (r.shape[0], self.features) or r.shape[1] != self.outputs:
            raise ValueError(
                f"expected features [N, {self.features}] and residuals [N, {self.outputs}], got {list(x.shape)} and "
                f"{list(r.shape)}"
            )
        if len(x) > self.samples:
            chosen = torch.randperm(len(x), generator=self._generator)[: self.samples].to(x.device)
            x, r = x[chosen], r[chosen]
        if self.bias:
            x = torch.cat([x, torch.ones_like(x[:, :1])], 1)
        held = (torch.rand(len(x), generator=self._generator) < self.holdout).to(x.device)
        for part, rows in enumerate((~held, held)):
            xs, rs = x[rows], r[rows].to(x.dtype)
            self._gram[part] += (xs.T @ xs).double().cpu()
            self._cross[part] += (xs.T @ rs).double().cpu()
            self._count[part] += len(xs)

    def _fit(self, gram: torch.Tensor, cross: torch.Tensor, ridge: float) -> torch.Tensor:
        penalty = torch.ones(len(gram), dtype=torch.float64)
        if self.bias:
            penalty[-1] = 0.0
        scale = gram.diagonal()[: self.features].mean().clamp(min=1e-12)
        return torch.linalg.solve(gram + torch.diag(ridge * scale * penalty), cross)  # positive definite

    def solve(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(dW [C, F], db [C] or None)`` in float64, on the CPU (zeros when no change predicts the held-out
        residuals better); sets :attr:`ridge`.

        Raises:
            ValueError: no rows yet, or none held out / none left to fit.
        """
        if not bool((self._count > 0).all()):
            raise ValueError(
                f"need rows to fit and rows held out, got {self._count.tolist()}: call update() with more rows"
            )
        (fit_gram, held_gram), (fit_cross, held_cross) = self._gram, self._cross
        self.ridge, best = None, 0.0  # the held-out error of no change, less sum(r^2) (common to every candidate)
        for ridge in self.ridges:
            solution = self._fit(fit_gram, fit_cross, ridge)
            error = (-2 * (solution * held_cross).sum() + (solution * (held_gram @ solution)).sum()).item()
            if error < best:
                self.ridge, best = ridge, error
        solution = torch.zeros_like(fit_cross)
        if self.ridge is not None:
            solution = self._fit(fit_gram + held_gram, fit_cross + held_cross, self.ridge)
        delta_w = solution[: self.features].T.contiguous()
        return delta_w, solution[-1].clone() if self.bias else None
