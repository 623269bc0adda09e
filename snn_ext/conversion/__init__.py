"""ANN-to-SNN conversion: ``snn_ext.convert(ann, calibration_data, method=..., timesteps=..., target=...)``.

Pipeline: deep-copy the ANN, trace it with torch.fx, fold BatchNorm, check every layer, calibrate one
threshold and spike amplitude per activation (``core.calibration``), swap each activation for an
integrate-and-fire neuron of the chosen framework (DIET, or fire-once with ``neuron="single_spike"``), fold
the amplitudes into the next layers' weights, and wrap the graph as a :class:`SpikingModel` (read-out: the
output current averaged over ``T``, or fire-once output neurons with ``readout="spike_time"``).

The single-spike hybrid SNN of Datta, Kundu & Beerel (2021)::

    snn = snn_ext.convert(ann, loader, "percentile", timesteps=5, encoder="hybrid",
                          neuron="single_spike", readout="spike_time")
    loss = nn.functional.cross_entropy(snn(images), labels)  # spike-time + membrane loss; fine-tune
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from snn_ext.conversion.graph import SUPPORTED
from snn_ext.conversion.methods import (
    ConversionMethod,
    DistributionAwareConversion,
    MaxConversion,
    PercentileConversion,
    QCFSConversion,
    skeleton,
)
from snn_ext.conversion.spiking_model import NEURONS, READOUTS, SequenceDropout, SpikingModel, to_framework
from snn_ext.registry import PLUGINS

__all__ = [
    "NEURONS",
    "READOUTS",
    "SUPPORTED",
    "ConversionMethod",
    "DistributionAwareConversion",
    "MaxConversion",
    "PercentileConversion",
    "QCFSConversion",
    "SequenceDropout",
    "SpikingModel",
    "convert",
    "skeleton",
    "to_framework",
]


def convert(
    ann: nn.Module,
    calibration_data: Iterable | torch.Tensor,
    method: str = "percentile",
    timesteps: int = 5,
    target: str = "snntorch",
    encoder: str | Callable = "direct",
    max_batches: int | None = None,
    progress: bool = False,
    *,
    neuron: str = "diet",
    readout: str = "mean",
    kappa: float | None = None,
    **options: Any,
) -> SpikingModel:
    """Convert a trained ANN into a :class:`SpikingModel` (images ``[B, ...]`` in, logits ``[B, C]`` out).

    Args:
        ann: the trained network (never modified): ReLU, ``ClippedReLU`` or ``QCFS`` activations, conv/linear
            layers, pooling, BatchNorm after conv/linear (folded), residual additions.
        calibration_data: training images: a DataLoader, a list of batches (tensors or ``(x, y)``), or
            one tensor ``[B, ...]``.
        method: a registered converter plugin: ``"max"``, ``"percentile"`` (DIET-SNN),
            ``"distribution_aware"`` (Datta & Beerel 2022) or ``"qcfs"`` (Bu et al. 2022, for ANNs trained with
            ``snn_ext.models.QCFS``); see ``snn_ext.list_plugins("converter")``.
        timesteps: ``T`` of the SNN.
        target: ``"snntorch"`` or ``"spikingjelly"``: the framework of the neurons in the result.
        encoder: ``"direct"`` (analog image every step), ``"hybrid"`` or a callable ``(x, T) -> [T, B, ...]``.
        max_batches: use at most this many calibration batches.
        progress: show a progress bar over the calibration batches.
        neuron: ``"diet"`` (default: integrate-and-fire DIET neurons, triangle surrogate) or
            ``"single_spike"`` (fire-once neurons with the STDB surrogate: each hidden neuron fires at most
            once per image; Datta, Kundu & Beerel 2021). The calibration runs fire-once neurons too.
            ``"single_spike"`` works with methods ``percentile`` (the paper's DIET-SNN initialisation) and
            ``max``.
        readout: ``"mean"`` (default: the output layer does not spike, logits = its current averaged over
            ``T``) or ``"spike_time"``: the output layer is a fire-once neuron (threshold calibrated by the
            method's percentile rule on the output current, see ``ConversionMethod.output_threshold``) and
            logits = integrated membrane - ``kappa`` * first spike time
            (:func:`snn_ext.core.loss.spike_time_membrane_logits`), so cross-entropy on them is the
            spike-time + membrane loss. Needs ``timesteps >= 2``.
        kappa: weight of one step of output spike time against one unit of membrane potential, >= 0;
            ``readout="spike_time"`` only (default 1.0).
        **options: the method's own options, e.g. ``percentile=99.7, scaling_factor=0.2``.

    Raises:
        TypeError: an unsupported layer (named, with the supported list) or an untraceable model.
        ValueError: empty calibration data, unknown target, encoder, neuron or readout, bad options or
            combinations (``kappa`` without ``readout="spike_time"``, ``readout="spike_time"`` with
            ``timesteps < 2``, ``neuron="single_spike"`` with ``distribution_aware``).
        snn_ext.PluginNotFoundError: unknown method.
    """
    converter: ConversionMethod = PLUGINS.converter.create(method, "core", **options)
    model = converter.convert(
        ann,
        calibration_data,
        timesteps,
        target,
        encoder,
        max_batches,
        progress,
        neuron=neuron,
        readout=readout,
        kappa=kappa,
    )
    model.method = method
    return model
