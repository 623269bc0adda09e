"""snn-ext conversion methods as SpikingJelly ``ann2snn`` recipes.

``ann2snn.Converter(PercentileRecipe(loader, timesteps=5)).convert(ann)`` returns the same
:class:`~snn_ext.conversion.SpikingModel` as ``snn_ext.convert(ann, loader, method="percentile",
timesteps=5, target="spikingjelly")``: images ``[B, ...]`` in, logits ``[B, C]`` out, with
:class:`~snn_ext.spikingjelly.DietLIFNode` neurons inside (``functional.reset_net`` works on it, and every
call resets the neurons anyway). The recipes take ``convert``'s ``neuron``, ``readout`` and ``kappa`` too:
``PercentileRecipe(loader, timesteps=5, encoder="hybrid", neuron="single_spike", readout="spike_time")`` gives
the single-spike hybrid SNN with :class:`~snn_ext.spikingjelly.SingleSpikeLIFNode` neurons.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

import torch
from spikingjelly.activation_based.ann2snn.recipes.base import FXConversionRecipe
from torch import fx, nn

from snn_ext.conversion.graph import prepare_graph, trace
from snn_ext.conversion.methods import (
    Batches,
    ConversionMethod,
    DistributionAwareConversion,
    MaxConversion,
    PercentileConversion,
    QCFSConversion,
    build_spiking_model,
)
from snn_ext.conversion.spiking_model import SpikingModel, resolve_encoder
from snn_ext.core.checks import check_num_steps
from snn_ext.core.encoding import hybrid

__all__ = ["DistributionAwareRecipe", "MaxRecipe", "PercentileRecipe", "QCFSRecipe"]


class _SnnExtRecipe(FXConversionRecipe):
    """Runs an snn-ext :class:`ConversionMethod` inside SpikingJelly's FX converter."""

    method_class: type[ConversionMethod]

    def __init__(
        self,
        calibration_data: Iterable | torch.Tensor,
        timesteps: int = 5,
        encoder: str | Callable = "direct",
        max_batches: int | None = None,
        *,
        neuron: str = "diet",
        readout: str = "mean",
        kappa: float | None = None,
        **options: Any,
    ) -> None:
        self.encoder = resolve_encoder(encoder)
        check_num_steps(timesteps, 2 if self.encoder is hybrid else 1, "timesteps")
        self.batches = Batches(calibration_data, max_batches)
        self.timesteps = timesteps
        self.method = self.method_class(**options)
        self.kappa = self.method.check_options(neuron, readout, kappa, timesteps)
        self.neuron, self.readout = neuron, readout

    def before_trace(self, converter, ann: nn.Module) -> nn.Module:
        self._ann = copy.deepcopy(ann).eval()  # the user's ANN is never modified
        return self._ann

    def after_trace(self, converter, fx_model: fx.GraphModule) -> fx.GraphModule:
        # SpikingJelly's tracer inlines custom activations such as ClippedReLU; trace again keeping them whole.
        self._prepared = prepare_graph(trace(self._ann))
        return self._prepared.graph.to(converter.device)

    def calibrate(self, converter, fx_model: fx.GraphModule) -> fx.GraphModule:
        args = (self._prepared, self.batches, self.timesteps, self.encoder)
        self._scales = self.method.scales(*args, neuron=self.neuron)
        self._output_threshold = None
        if self.readout == "spike_time":
            self._output_threshold = self.method.output_threshold(
                self._prepared, self._scales, *args[1:], neuron=self.neuron
            )
        return fx_model

    def finalize(self, converter, fx_model: fx.GraphModule) -> SpikingModel:
        return build_spiking_model(
            self._prepared,
            self._scales,
            self.timesteps,
            "spikingjelly",
            self.encoder,
            self.neuron,
            self._output_threshold,
            self.kappa,
        )


class MaxRecipe(_SnnExtRecipe):
    """Threshold = amplitude = the largest DNN pre-activation (see :class:`~snn_ext.conversion.MaxConversion`)."""

    method_class = MaxConversion


class PercentileRecipe(_SnnExtRecipe):
    """DIET-SNN percentile thresholds (see :class:`~snn_ext.conversion.PercentileConversion`);
    options ``percentile=99.7``, ``scaling_factor=1.0``."""

    method_class = PercentileConversion


class DistributionAwareRecipe(_SnnExtRecipe):
    """Datta & Beerel (2022) (see :class:`~snn_ext.conversion.DistributionAwareConversion`); options ``shifts``,
    ``per_channel``, ``calibrate_weights``; no ``neuron="single_spike"``."""

    method_class = DistributionAwareConversion


class QCFSRecipe(_SnnExtRecipe):
    """QCFS (Bu et al. 2022) for ANNs with ``snn_ext.models.QCFS`` activations (see
    :class:`~snn_ext.conversion.QCFSConversion`); no ``neuron="single_spike"``."""

    method_class = QCFSConversion
