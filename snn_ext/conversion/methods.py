"""Conversion methods (registered as ``converter`` plugins): ``max``, ``percentile``, ``distribution_aware``.

Each method computes one :class:`~snn_ext.core.calibration.LayerScale` (threshold, spike amplitude) per
activation layer from calibration batches; :meth:`ConversionMethod.convert` then swaps the activations
for integrate-and-fire neurons of the chosen framework (DIET, or fire-once with ``neuron="single_spike"``),
folds the amplitudes into the next layers' weights and wraps the result as a
:class:`~snn_ext.conversion.SpikingModel` (with a fire-once output neuron for ``readout="spike_time"``).

Single-spike hybrid conversion (Datta, Kundu & Beerel 2021): with ``neuron="single_spike"`` the partly
converted SNN that ``percentile`` runs for calibration uses fire-once neurons too (and the chosen encoder,
e.g. ``"hybrid"``), so each layer's threshold comes from the currents it will really see; the rule itself
(percentile of the per-step current, maximum over steps) is DIET-SNN's, as in the paper's pipeline. With
``readout="spike_time"`` the output neuron's threshold is calibrated by the same rule on the output layer's
current in the fully converted SNN (:meth:`ConversionMethod.output_threshold`).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import fx, nn
from tqdm.auto import tqdm

from snn_ext.conversion.graph import _ADD, PreparedANN, fold_amplitudes, prepare
from snn_ext.conversion.spiking_model import (
    SpikingModel,
    check_neuron_options,
    check_target,
    check_timesteps,
    make_neuron,
    resolve_encoder,
)
from snn_ext.core.calibration import LayerScale, LinearCorrection, ThresholdFit, percentile
from snn_ext.core.checks import channel_view, check_num_steps
from snn_ext.core.neuron import SingleSpikeState, diet_lif_multistep, single_spike_lif_multistep
from snn_ext.core.surrogate import SpikeTimeRecord
from snn_ext.models.activations import QCFS, ClippedReLU

__all__ = [
    "Batches",
    "ConversionMethod",
    "DistributionAwareConversion",
    "MaxConversion",
    "PercentileConversion",
    "QCFSConversion",
    "build_spiking_model",
    "skeleton",
]


class Batches:
    """Re-iterable view of calibration data yielding input tensors ``[B, ...]``.

    Accepts a DataLoader or any re-iterable of tensors or ``(x, y, ...)`` tuples/lists, or one tensor
    (a single batch). Stops after ``max_batches`` batches when given; shows a progress bar when asked.
    """

    def __init__(self, data: Iterable | torch.Tensor, max_batches: int | None = None, progress: bool = False) -> None:
        if isinstance(data, torch.Tensor):
            data = [data]
        elif iter(data) is data:
            raise TypeError(
                "calibration_data must be re-iterable (a DataLoader, a list of batches or a tensor), not a one-shot "
                "iterator or generator: some methods read it more than once"
            )
        if max_batches is not None:
            check_num_steps(max_batches, 1, "max_batches")
        self.data, self.max_batches, self.progress = data, max_batches, progress

    def __iter__(self) -> Iterator[torch.Tensor]:
        count, shape = 0, None
        for batch in tqdm(self.data, desc="calibration", disable=not self.progress, leave=False):
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"calibration batches must be tensors or (x, y) tuples, got {type(x).__name__}")
            shape = x.shape[1:] if shape is None else shape
            if x.dim() == 0 or x.shape[1:] != shape:
                raise ValueError(
                    f"calibration batch {count} has shape {tuple(x.shape)}, but the first batch holds images of shape "
                    f"{tuple(shape)}: every batch holds images of the same shape"
                )
            if x.is_floating_point() and not bool(torch.isfinite(x).all()):
                raise ValueError(f"calibration batch {count} holds NaN or inf; calibrate on finite images")
            yield x
            count += 1
            if count == self.max_batches:
                break
        if count == 0:
            raise ValueError("calibration_data is empty: pass at least one batch of training images")


class _StopForward(Exception):
    """Raised by a recording hook once the layer of interest has been seen."""


def _site_activations(prepared: PreparedANN, batches: Batches, record: Callable[[str, torch.Tensor], None]) -> None:
    """Run the ANN graph on every batch and hand each activation's output to ``record(site, y)``."""
    handles = [
        prepared.graph.get_submodule(site).register_forward_hook(lambda m, args, y, s=site: record(s, y))
        for site in prepared.sites
    ]
    try:
        with torch.no_grad():
            for x in batches:
                prepared.graph(x.to(_device(prepared.graph)))
    finally:
        for handle in handles:
            handle.remove()


def _device(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


class ConversionMethod:
    """Base class of the conversion methods; subclasses implement :meth:`scales`."""

    output_percentile: float = 99.7
    """Percentile of the output layer's per-step current that sets the threshold of the spike-time read-out."""
    output_scaling: float = 1.0
    """Factor on that threshold."""
    supports_single_spike: bool = True
    """Whether :meth:`scales` can calibrate fire-once neurons (``neuron="single_spike"``)."""

    def scales(
        self, prepared: PreparedANN, batches: Batches, timesteps: int, encoder: Callable, neuron: str = "diet"
    ) -> list[LayerScale]:
        """One ``LayerScale`` per entry of ``prepared.sites``; ``neuron`` is the kind the SNN will have."""
        raise NotImplementedError

    def check_options(self, neuron: str, readout: str, kappa: float | None, timesteps: int) -> float | None:
        """Check the neuron/read-out options for this method (see ``check_neuron_options``); return ``kappa``."""
        kappa = check_neuron_options(neuron, readout, kappa, timesteps)
        if neuron == "single_spike" and not self.supports_single_spike:
            raise ValueError(
                f"method {type(self).__name__} fits thresholds to a rate code and cannot calibrate fire-once "
                "neurons: use neuron='single_spike' with method 'percentile' (DIET-SNN's rule, the single-spike "
                "paper's initialisation) or 'max'"
            )
        return kappa

    def output_threshold(
        self,
        prepared: PreparedANN,
        scales: list[LayerScale],
        batches: Batches,
        timesteps: int,
        encoder: Callable,
        neuron: str = "diet",
    ) -> float:
        """Threshold of the fire-once output neuron of ``readout="spike_time"``.

        Runs the fully converted SNN (every activation spiking with ``scales``, neurons of kind ``neuron``)
        on the calibration data and applies DIET-SNN's rule to the output layer's input current: the
        :attr:`output_percentile`-th percentile at each step, the maximum over steps, the mean over
        batches, times :attr:`output_scaling` (``percentile`` uses its own percentile and scaling factor,
        ``max`` the peak, ``distribution_aware`` 99.7).
        """
        graph = copy.deepcopy(prepared.graph)
        for site, scale in zip(prepared.sites, scales, strict=True):
            _replace(graph, site, _SpikingSite(scale, timesteps, neuron))
        values = []
        with torch.no_grad():
            for x in batches:
                currents = graph(encoder(x.to(_device(graph)), timesteps).flatten(0, 1))
                steps = currents.unflatten(0, (timesteps, -1))
                values.append(max(percentile(c, self.output_percentile) for c in steps))
        value = sum(values) / len(values)
        if value <= 0:  # no spike reaches the output layer in T steps: take the ANN's output current instead
            with torch.no_grad():
                ann_values = [percentile(prepared.graph(x.to(_device(graph))), self.output_percentile) for x in batches]
            ann_value = sum(ann_values) / len(ann_values)
            if ann_value <= 0:
                raise ValueError(
                    f"the output layer's {self.output_percentile}th-percentile current is {value:.4g} <= 0 on the "
                    "calibration data, in the SNN and in the ANN; cannot set the threshold of readout='spike_time'"
                )
            warnings.warn(
                f"no spike reaches the output layer in {timesteps} steps on the calibration data; the spike-time "
                f"read-out's threshold comes from the ANN's output current ({ann_value:.4g}) instead",
                stacklevel=4,
            )
            value = ann_value
        return self.output_scaling * value

    def convert(
        self,
        ann: nn.Module,
        calibration_data: Iterable | torch.Tensor,
        timesteps: int = 5,
        target: str = "snntorch",
        encoder: str | Callable = "direct",
        max_batches: int | None = None,
        progress: bool = False,
        *,
        neuron: str = "diet",
        readout: str = "mean",
        kappa: float | None = None,
    ) -> SpikingModel:
        """Convert ``ann`` (never modified) into a :class:`SpikingModel` with neurons of ``target``.

        Args:
            ann: a traceable model of supported layers (see ``snn_ext.conversion.SUPPORTED``).
            calibration_data: training images: a DataLoader, a list of batches, or one tensor ``[B, ...]``.
            timesteps: ``T`` of the SNN (also used by the calibration of ``percentile`` and
                ``distribution_aware``).
            target: ``"snntorch"`` or ``"spikingjelly"``.
            encoder: ``"direct"`` (default), ``"hybrid"`` or a callable ``(x, T) -> [T, B, ...]``.
            max_batches: use at most this many calibration batches.
            progress: show a progress bar over the calibration batches.
            neuron: ``"diet"`` (integrate-and-fire DIET neurons) or ``"single_spike"`` (fire-once neurons with
                the STDB surrogate).
            readout: ``"mean"`` (logits = output current averaged over ``T``) or ``"spike_time"`` (fire-once
                output neurons, logits = integrated membrane - ``kappa`` * first spike time; ``T >= 2``).
            kappa: for ``readout="spike_time"`` only; default 1.0.
        """
        encode = _checked_encoder(target, encoder, timesteps)
        kappa = self.check_options(neuron, readout, kappa, timesteps)
        with _dtype_of(ann):
            prepared = prepare(ann)
            batches = Batches(calibration_data, max_batches, progress)
            _check_fits(prepared, batches)
            scales = self.scales(prepared, batches, timesteps, encode, neuron=neuron)
            output_threshold = None
            if readout == "spike_time":
                output_threshold = self.output_threshold(prepared, scales, batches, timesteps, encode, neuron)
            dims = _site_dims(prepared, batches) if any(_per_channel(scale) for scale in scales) else {}
            return build_spiking_model(
                prepared, scales, timesteps, target, encode, neuron, output_threshold, kappa, site_dims=dims
            )


def _check_fits(prepared: PreparedANN, batches: Batches) -> None:
    """Run the ANN on the first calibration batch: a batch it cannot take fails here, in the user's terms (later
    the SNN merges time into the batch, and torch's error would count T as images or channels)."""
    x = next(iter(Batches(batches.data, 1)))
    try:
        with torch.no_grad():
            out = prepared.graph(x.to(_device(prepared.graph)))
    except Exception as err:  # any error of the user's model on this input
        raise ValueError(
            f"the ANN cannot run on the calibration batches (shape {tuple(x.shape)}): {type(err).__name__}: {err}. "
            "Pass training images [B, ...] shaped as the ANN's input"
        ) from err
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"the ANN returns a {type(out).__name__}, not a tensor of logits [B, classes]; convert a model whose "
            "forward returns one tensor (wrap it to pick the output)"
        )


def _per_channel(scale: LayerScale) -> bool:
    return isinstance(scale.threshold, torch.Tensor) and scale.threshold.dim() > 0


def _site_dims(prepared: PreparedANN, batches: Batches) -> dict[str, int]:
    """The number of dimensions of each activation's output (4 for ``[B, C, H, W]``), on the first batch."""
    dims: dict[str, int] = {}
    _site_activations(prepared, Batches(batches.data, 1), lambda site, y: dims.__setitem__(site, y.dim()))
    return dims


@contextlib.contextmanager
def _dtype_of(ann: nn.Module) -> Iterator[None]:
    """Create new tensors (thresholds, leaks, scales, calibration states) in the dtype of ``ann``'s parameters,
    e.g. float64 for a float64 ANN, so that calibrated values are not rounded to float32."""
    parameter = next(ann.parameters(), None)
    previous = torch.get_default_dtype()
    if parameter is not None and parameter.is_floating_point():
        torch.set_default_dtype(parameter.dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _checked_encoder(target: str, encoder: str | Callable, timesteps: int) -> Callable:
    """Check ``target`` and ``timesteps`` (>= 2 with the hybrid encoder); return the encoder callable."""
    check_target(target)
    encode = resolve_encoder(encoder)
    check_timesteps(timesteps, encode)
    return encode


def skeleton(
    ann: nn.Module,
    timesteps: int = 5,
    target: str = "snntorch",
    encoder: str | Callable = "direct",
    *,
    neuron: str = "diet",
    readout: str = "mean",
    kappa: float | None = None,
) -> SpikingModel:
    """The :class:`SpikingModel` that :meth:`ConversionMethod.convert` makes of ``ann``, without calibration.

    Same modules, parameters and buffers as a conversion of ``ann`` with these arguments (by any method),
    but placeholder values: thresholds and spike amplitudes 1, initial potentials 0, the weights of ``ann``.
    Load a converted (and possibly trained) model's ``state_dict`` into it to restore that model without
    the calibration data or the ANN's weights::

        torch.save(snn.state_dict(), "snn.pt")  # snn = snn_ext.convert(ann, ...), fine-tuned
        restored = skeleton(ann, timesteps=5, target="snntorch")  # any ann of the same architecture
        restored.load_state_dict(torch.load("snn.pt"))

    Arguments as in :meth:`ConversionMethod.convert`; ``ann`` is never modified.
    """
    encode = _checked_encoder(target, encoder, timesteps)
    kappa = check_neuron_options(neuron, readout, kappa, timesteps)
    with _dtype_of(ann):
        prepared = prepare(ann)
        placeholders = [LayerScale(1.0, 1.0)] * len(prepared.sites)
        output_threshold = 1.0 if readout == "spike_time" else None
        return build_spiking_model(prepared, placeholders, timesteps, target, encode, neuron, output_threshold, kappa)


def build_spiking_model(
    prepared: PreparedANN,
    scales: list[LayerScale],
    timesteps: int,
    target: str,
    encoder: Callable,
    neuron: str = "diet",
    output_threshold: float | None = None,
    kappa: float | None = None,
    site_dims: dict[str, int] | None = None,
) -> SpikingModel:
    """Replace each activation with a neuron of kind ``neuron`` (threshold from ``scales``), fold
    amplitudes, wrap. ``output_threshold`` given: add a fire-once output neuron (``readout="spike_time"``).
    ``site_dims``: each activation's number of output dimensions, needed for per-channel thresholds."""
    graph = prepared.graph
    for site, scale in zip(prepared.sites, scales, strict=True):
        dims = (site_dims or {}).get(site)
        _replace(graph, site, make_neuron(target, scale.threshold, timesteps, scale.initial_fraction, neuron, dims))
    fold_amplitudes(graph, {site: scale.amplitude for site, scale in zip(prepared.sites, scales, strict=True)})
    output_neuron = None
    if output_threshold is not None:
        output_neuron = make_neuron(target, output_threshold, timesteps, neuron="single_spike")
    kappa = 1.0 if kappa is None else kappa
    return SpikingModel(graph, timesteps, encoder, target, neuron, output_neuron, kappa).to(_device(graph))


class MaxConversion(ConversionMethod):
    """Data-based normalisation: threshold = amplitude = the layer's largest DNN pre-activation.

    The same thresholds for both neuron kinds; the spike-time read-out's threshold is the peak of the
    output layer's per-step current in the converted SNN.
    """

    output_percentile = 100.0

    def scales(self, prepared, batches, timesteps, encoder, neuron="diet"):
        return [LayerScale(peak, peak) for peak in _peaks(prepared, batches).values()]


def _peaks(prepared: PreparedANN, batches: Batches) -> dict[str, float]:
    """The largest DNN activation (the activation's output) of every activation layer over the calibration
    data (> 0)."""
    peaks = dict.fromkeys(prepared.sites, 0.0)

    def record(site: str, y: torch.Tensor) -> None:
        peaks[site] = max(peaks[site], y.max().item())

    _site_activations(prepared, batches, record)
    return {site: _positive_peak(site, peak) for site, peak in peaks.items()}


def _activation(prepared: PreparedANN, site: str, x: torch.Tensor) -> torch.Tensor:
    """The DNN activation of ``site`` for its input ``x`` (no autograd graph: a trainable clip would keep one)."""
    with torch.no_grad():
        return prepared.graph.get_submodule(site)(x)


def _capped(prepared: PreparedANN, site: str, value: float) -> float:
    """A ClippedReLU or QCFS never outputs more than its clip, so no threshold needs to exceed it."""
    module = prepared.graph.get_submodule(site)
    return min(value, module.clip.item()) if isinstance(module, (ClippedReLU, QCFS)) else value


def _positive_peak(site: str, value: float) -> float:
    if value <= 0:
        raise ValueError(
            f"activation {site!r} never saw a positive input on the calibration data; cannot set a threshold"
        )
    return value


class _SpikingSite(nn.Module):
    """Calibration stand-in for an activation: an IF neuron on ``[T * B, ...]`` (DIET, or fire-once for
    ``neuron="single_spike"``), output scaled."""

    def __init__(self, scale: LayerScale, timesteps: int, neuron: str = "diet") -> None:
        super().__init__()
        self.scale, self.timesteps, self.neuron = scale, timesteps, neuron

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_seq = x.unflatten(0, (self.timesteps, -1))
        scale = self.scale
        threshold, fraction, amplitude = (
            channel_view(torch.as_tensor(value, dtype=x.dtype, device=x.device), x_seq[0], name)
            for value, name in (
                (scale.threshold, "threshold"),
                (scale.initial_fraction, "initial_fraction"),
                (scale.amplitude, "amplitude"),
            )
        )
        start = torch.zeros_like(x_seq[0]) + fraction * threshold
        if self.neuron == "single_spike":
            state = SingleSpikeState(start, SpikeTimeRecord(start), 0)
            spikes = single_spike_lif_multistep(x_seq, state, 1.0, self.scale.threshold).spikes
        else:
            spikes = diet_lif_multistep(x_seq, start, 1.0, self.scale.threshold).spikes
        return spikes.flatten(0, 1) * amplitude


class PercentileConversion(ConversionMethod):
    """DIET-SNN's threshold initialisation, layer by layer through the partly converted SNN.

    As the official ``find_threshold`` (``nitin-rathi/DIET-SNN``, ``snn.py``): for layer ``l`` in order, run the
    SNN in which the earlier layers already spike at their *unscaled* thresholds for ``T`` steps, take the
    ``percentile``-th percentile of layer ``l``'s input current at each step (DIET-SNN's rank rule, see
    :func:`~snn_ext.core.calibration.percentile`), the maximum over steps, the mean over calibration batches:
    that is the layer's raw threshold. Only when every layer has one is each threshold multiplied by
    ``scaling_factor``. A spike stands for the raw threshold (the amplitude folded into the next layers'
    weights); DIET-SNN keeps unit spikes and unscaled weights instead, which gives the same spikes in a
    network without biases (a neuron is invariant to a common scale of its input and threshold), so the
    thresholds here are DIET-SNN's times the amplitude of the layer's input. With ``neuron="single_spike"``
    the earlier layers of the calibration SNN fire at most once, as in the result; the spike-time read-out's
    threshold follows the same rule on the output layer's current in the converted SNN (scaled thresholds: the
    currents it will see; the official code has no such read-out).

    Deviations from the official code: calibration at the target ``T`` on every calibration batch (the mean
    over batches) instead of ``T = 100`` on one batch of 512 images.

    Args:
        percentile: in ``(0, 100]``; DIET-SNN uses 99.7.
        scaling_factor: > 0. 1.0 keeps the SNN closest to the ANN; DIET-SNN uses 0.2-0.3 before
            fine-tuning at T=5 (the recipes set it).
    """

    def __init__(self, percentile: float = 99.7, scaling_factor: float = 1.0) -> None:
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must lie in (0, 100], got {percentile!r}")
        if not scaling_factor > 0:
            raise ValueError(f"scaling_factor must be > 0, got {scaling_factor!r}")
        self.percentile, self.scaling_factor = percentile, scaling_factor
        self.output_percentile, self.output_scaling = percentile, scaling_factor

    def scales(self, prepared, batches, timesteps, encoder, neuron="diet"):
        graph = copy.deepcopy(prepared.graph)
        raw: list[float] = []
        peaks: dict[str, float] = {}
        for site in prepared.sites:
            values = []
            for x in batches:
                currents = _input_of(graph, site, encoder(x.to(_device(graph)), timesteps).flatten(0, 1))
                values.append(max(percentile(c, self.percentile) for c in currents.unflatten(0, (timesteps, -1))))
            value = sum(values) / len(values)
            if value <= 0:  # no spikes reach it in T steps at the unscaled thresholds (the official code runs T=100)
                peaks = peaks or _peaks(prepared, batches)
                warnings.warn(
                    f"activation {site!r} got no positive {self.percentile}th-percentile current through the partly "
                    f"converted SNN in {timesteps} steps (the earlier layers spike too rarely at their unscaled "
                    f"thresholds); its raw threshold is its largest ANN activation, {peaks[site]:.4g}, instead",
                    stacklevel=4,
                )
                value = peaks[site]
            raw.append(_capped(prepared, site, value))
            _replace(graph, site, _SpikingSite(LayerScale(raw[-1], raw[-1]), timesteps, neuron))
        return [LayerScale(self.scaling_factor * value, value) for value in raw]


def _replace(graph: fx.GraphModule, target: str, module: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(graph.get_submodule(parent) if parent else graph, name, module)


class DistributionAwareConversion(ConversionMethod):
    """Datta & Beerel (2022): fit each layer's threshold and spike amplitude to its input distribution.

    Train the DNN with :class:`~snn_ext.models.ClippedReLU`. The layer's ``mu`` is its clip, or the largest
    calibration pre-activation where that is smaller (always, for a plain ReLU). Layer by layer, the DNN's
    pre-activations and the partly converted SNN's input currents are streamed into a
    :class:`~snn_ext.core.calibration.ThresholdFit`, which picks threshold ``alpha * mu``, amplitude
    ``beta * mu`` and the initial potential for the target ``T`` (objective in :mod:`snn_ext.core.calibration`).

    By default the fit is per channel (``per_channel=True``: one ``mu``, threshold, amplitude and initial
    potential per output channel, the amplitudes folded into the next layers' input channels); the paper fits
    one ``alpha``/``beta`` per layer (``per_channel=False``). With BatchNorm folded, channels of one layer differ
    in range by an order of magnitude, and at ``T <= 2`` one threshold per layer quantizes most channels to 0.

    With ``calibrate_weights=True`` (default; our addition, not the paper's), before each layer's fit the conv or
    linear layer that feeds it (directly or through a residual addition) is corrected by ridge regression so
    that its time-averaged current in the partly converted SNN matches the DNN's pre-activation, and the output
    layer likewise against the DNN's logits (:class:`~snn_ext.core.calibration.LinearCorrection`, its strength
    chosen per layer on a quarter of the calibration rows held out, recorded in :attr:`ridges`): the
    quantization error of the earlier layers is absorbed instead of compounding with depth. A layer without a
    bias keeps none (the converted model has the same parameters as :func:`skeleton`'s). Layers it cannot
    correct (reached through pooling, grouped or 3-d convolutions, non-zero padding modes, linear layers of more
    than 8192 inputs, layers with several consumers) keep their weights, with one warning naming them. On 28x28
    digits (README, "Deep networks at T = 1-4") it lifted a 3-block ResNet at T = 1 / 2 from 0.881 / 0.935 to
    0.951 / 0.969 (ANN 0.976).

    Its objective models a rate code (up to ``T`` spikes per neuron), so it does not calibrate fire-once
    neurons: ``neuron="single_spike"`` is refused (use ``percentile``). The spike-time read-out's threshold
    uses DIET-SNN's rule (99.7th percentile).

    Args:
        shifts: candidate initial potentials as fractions of the threshold; ``(0.0,)`` keeps every
            neuron starting at 0 as in the paper, the default also tries half the threshold.
        per_channel: fit every channel on its own (default) or one value per layer (the paper).
        calibrate_weights: correct the synaptic layers by weight calibration (default) or keep the ANN's
            weights (the paper).
    """

    supports_single_spike = False

    def __init__(
        self, shifts: tuple[float, ...] = (0.0, 0.5), per_channel: bool = True, calibrate_weights: bool = True
    ) -> None:
        if not shifts or any(not 0 <= shift < 1 for shift in shifts):
            raise ValueError(f"shifts must be a non-empty tuple of values in [0, 1), got {shifts!r}")
        for name, flag in (("per_channel", per_channel), ("calibrate_weights", calibrate_weights)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        self.shifts, self.per_channel, self.calibrate_weights = tuple(shifts), per_channel, calibrate_weights
        self.errors: dict[str, float] = {}
        """Mean squared fit error per layer (units of mu**2), filled by the last conversion."""
        self.ridges: dict[str, float | None] = {}
        """Per corrected layer, the ridge strength weight calibration chose on held-out rows (``None``: the layer
        was left as it was, no correction predicting better than none), filled by the last conversion."""

    def scales(self, prepared, batches, timesteps, encoder, neuron="diet"):
        clips = _channel_peaks(prepared, batches) if self.per_channel else _peaks(prepared, batches)
        snn = copy.deepcopy(prepared.graph)
        scales, skipped = [], []
        self.ridges = {}
        for site in prepared.sites:
            if self.calibrate_weights:
                _calibrate_feeding_layer(prepared.graph, snn, site, batches, timesteps, encoder, self.ridges, skipped)
            fit = ThresholdFit(clips[site], timesteps, shifts=self.shifts)
            for x in batches:
                dnn_output = _activation(prepared, site, _input_of(prepared.graph, site, x.to(_device(snn))))
                snn_current = _input_of(snn, site, encoder(x.to(_device(snn)), timesteps).flatten(0, 1))
                fit.update(dnn_output, snn_current.unflatten(0, (timesteps, -1)))
            scale, self.errors[site] = fit.solve()
            scales.append(scale)
            _replace(snn, site, _SpikingSite(scale, timesteps))
        if self.calibrate_weights:
            _calibrate_feeding_layer(prepared.graph, snn, None, batches, timesteps, encoder, self.ridges, skipped)
            for name in self.ridges:  # the DNN served as the reference until here; now it takes the corrections
                with torch.no_grad():
                    for key, value in snn.get_submodule(name).named_parameters():
                        prepared.graph.get_submodule(name).get_parameter(key).copy_(value)
            if skipped:
                warnings.warn("weight calibration left these layers as in the ANN: " + "; ".join(skipped), stacklevel=4)
        return scales


_MAX_CALIBRATED_FEATURES = 8192
"""Inputs of a linear layer (or patch size of a convolution) above which weight calibration skips it: its normal
equations (fitted and held-out rows, float64) would take more than 1 GB."""


def _feeding_layer(graph: fx.GraphModule, node: fx.Node) -> fx.Node | None:
    """The conv/linear node whose output reaches ``node`` unchanged or through residual additions (the first
    such branch), or None."""
    modules = dict(graph.named_modules())
    if node.op == "call_module" and isinstance(modules[node.target], _CALIBRATED):
        return node
    if node.op == "call_function" and node.target in _ADD:
        for arg in node.args:
            found = _feeding_layer(graph, arg) if isinstance(arg, fx.Node) else None
            if found is not None:
                return found
    return None


def _why_not_calibrated(graph: fx.GraphModule, node: fx.Node | None, what: str) -> str | None:
    """Why weight calibration cannot correct ``node`` (the layer feeding ``what``), or None if it can."""
    if node is None:
        return f"{what} (not fed by a conv/linear layer directly or through an addition)"
    layer = graph.get_submodule(node.target)
    if len(node.users) != 1:
        return f"{node.target!r} (its output has several consumers)"
    if isinstance(layer, nn.Linear):
        features = layer.in_features
    elif isinstance(layer, nn.Conv3d):
        return f"{node.target!r} (3-d convolution)"
    elif layer.groups != 1 or layer.padding_mode != "zeros":
        return f"{node.target!r} (grouped convolution or padding_mode {layer.padding_mode!r})"
    else:
        features = layer.weight[0].numel()
    if features > _MAX_CALIBRATED_FEATURES:
        return f"{node.target!r} ({features} inputs > {_MAX_CALIBRATED_FEATURES})"
    return None


def _patches(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Rows ``[N, F]`` whose products with ``layer``'s flattened weight ``[C, F]`` give its outputs (no bias):
    the inputs of a linear layer, the input patches of a convolution."""
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, layer.in_features)
    kernel, dilation, stride, padding = layer.kernel_size, layer.dilation, layer.stride, layer.padding
    if isinstance(layer, nn.Conv1d):  # as a convolution of height 1
        x, kernel, dilation, stride = x.unsqueeze(2), (1, *kernel), (1, *dilation), (1, *stride)
        padding = padding if isinstance(padding, str) else (0, *padding)
    if isinstance(padding, str):  # "valid" or "same" (stride 1): torch pads (more on the right) by hand
        total = [d * (k - 1) for d, k in zip(dilation, kernel, strict=True)] if layer.padding == "same" else [0, 0]
        x = nn.functional.pad(x, (total[1] // 2, total[1] - total[1] // 2, total[0] // 2, total[0] - total[0] // 2))
        padding = (0, 0)
    columns = nn.functional.unfold(x, kernel, dilation, padding, stride)  # [B, F, L]
    return columns.transpose(1, 2).reshape(-1, columns.shape[1])


def _output_rows(z: torch.Tensor) -> torch.Tensor:
    """A layer's outputs ``[B, C, ...]`` as rows ``[N, C]`` matching :func:`_patches`."""
    return z.reshape(z.shape[0], z.shape[1], -1).transpose(1, 2).reshape(-1, z.shape[1]) if z.dim() > 2 else z


def _calibrate_feeding_layer(
    dnn: fx.GraphModule,
    snn: fx.GraphModule,
    site: str | None,
    batches: Batches,
    timesteps: int,
    encoder: Callable,
    ridges: dict[str, float | None],
    skipped: list[str],
) -> None:
    """Correct (in ``snn``) the layer feeding activation ``site`` (``None``: the output) so that its time-averaged
    current matches the DNN's; record the chosen ridge under its name in ``ridges``, or the reason in ``skipped``."""
    nodes = {node.target: node for node in snn.graph.nodes if node.op == "call_module"}
    end = nodes[site] if site is not None else next(n for n in snn.graph.nodes if n.op == "output")
    arg = end.args[0]
    node = _feeding_layer(snn, arg) if isinstance(arg, fx.Node) else None
    reason = _why_not_calibrated(snn, node, f"activation {site!r}" if site is not None else "the output")
    if reason is not None:
        skipped.append(reason)
        return
    layer = snn.get_submodule(node.target)
    correction = None
    device = _device(snn)
    seen: list[torch.Tensor] = []
    for x in batches:
        x = x.to(device)
        seen.clear()
        handle = layer.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
        try:
            if site is None:
                with torch.no_grad():
                    current, reference = snn(encoder(x, timesteps).flatten(0, 1)), dnn(x)
            else:
                current, reference = _input_of(snn, site, encoder(x, timesteps).flatten(0, 1)), _input_of(dnn, site, x)
        finally:
            handle.remove()
        features = _patches(layer, seen[0].unflatten(0, (timesteps, -1)).mean(0))
        residuals = _output_rows(reference - current.unflatten(0, (timesteps, -1)).mean(0))
        if correction is None:
            correction = LinearCorrection(features.shape[1], residuals.shape[1], bias=layer.bias is not None)
        correction.update(features, residuals)
    delta_w, delta_b = correction.solve()
    ridges[node.target] = correction.ridge
    with torch.no_grad():
        layer.weight += delta_w.reshape(layer.weight.shape).to(layer.weight)
        if delta_b is not None:
            layer.bias += delta_b.to(layer.bias)


class QCFSConversion(ConversionMethod):
    """QCFS (Bu et al., ICLR 2022): an ANN trained with :class:`~snn_ext.models.QCFS` activations becomes an SNN
    of integrate-and-fire neurons with threshold = the activation's trained clip ``lambda``, spikes worth
    ``lambda`` and every neuron started at ``shift`` (0.5) of its threshold.

    Under constant input, such a neuron's average output after ``T = L`` steps is the QCFS activation itself, and
    the expected error is 0 at any ``T`` for uniformly distributed inputs (the paper's argument). No data is
    needed for the thresholds (``calibration_data`` only serves the spike-time read-out's threshold). Every
    activation of the ANN must be a ``QCFS``.
    """

    supports_single_spike = False

    def scales(self, prepared, batches, timesteps, encoder, neuron="diet"):
        scales = []
        for site in prepared.sites:
            module = prepared.graph.get_submodule(site)
            if not isinstance(module, QCFS):
                raise TypeError(
                    f"method 'qcfs' converts QCFS activations (snn_ext.models.QCFS); activation {site!r} is a "
                    f"{type(module).__name__}: train the ANN with QCFS, or use 'distribution_aware' or 'max'"
                )
            clip = module.clip.item()
            scales.append(LayerScale(clip, clip, module.shift))
        return scales


def _channel_peaks(prepared: PreparedANN, batches: Batches) -> dict[str, torch.Tensor]:
    """Per activation, the largest DNN activation of each channel (dimension 1) over the calibration data; a
    channel whose activation is always 0 gets the layer's peak (and amplitude 0 from the fit)."""
    peaks: dict[str, torch.Tensor] = {}

    def record(site: str, y: torch.Tensor) -> None:
        if y.dim() < 2:
            raise ValueError(
                f"activation {site!r} gives outputs of shape {tuple(y.shape)}; per-channel fits need [B, C, ...]"
            )
        channel_max = y.transpose(0, 1).reshape(y.shape[1], -1).amax(1)
        peaks[site] = channel_max if site not in peaks else torch.maximum(peaks[site], channel_max)

    _site_activations(prepared, batches, record)
    result = {}
    for site, peak in peaks.items():
        layer_peak = _positive_peak(site, peak.max().item())
        result[site] = torch.where(peak > 0, peak, layer_peak)
    return result


_CALIBRATED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
"""Layers whose weights weight calibration considers (3-d convolutions only to name them as skipped)."""


def _input_of(graph: fx.GraphModule, site: str, x: torch.Tensor) -> torch.Tensor:
    """The input of activation ``site`` when ``graph`` runs on ``x`` (the rest of the graph is skipped)."""
    seen: list[torch.Tensor] = []

    def record(module, args) -> None:
        seen.append(args[0])
        raise _StopForward

    handle = graph.get_submodule(site).register_forward_pre_hook(record)
    try:
        with torch.no_grad(), contextlib.suppress(_StopForward):
            graph(x)
    finally:
        handle.remove()
    return seen[0]
