"""ANN-to-SNN conversion: ``snn_ext.convert(ann, calibration_data, method=..., timesteps=..., target=...)``.

Pipeline: deep-copy the ANN, trace it with torch.fx, fold BatchNorm, check every layer, calibrate one
threshold and spike amplitude per activation (``core.calibration``), swap each activation for an
integrate-and-fire DIET neuron of the chosen framework, fold the amplitudes into the next layers'
weights, and wrap the graph as a :class:`SpikingModel`.
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
)
from snn_ext.conversion.spiking_model import SpikingModel
from snn_ext.registry import PLUGINS

__all__ = [
    "SUPPORTED",
    "ConversionMethod",
    "DistributionAwareConversion",
    "MaxConversion",
    "PercentileConversion",
    "SpikingModel",
    "convert",
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
    **options: Any,
) -> SpikingModel:
    """Convert a trained ANN into a :class:`SpikingModel` (images ``[B, ...]`` in, logits ``[B, C]`` out).

    Args:
        ann: the trained network (never modified): ReLU or ``ClippedReLU`` activations, conv/linear
            layers, pooling, BatchNorm after conv/linear (folded), residual additions.
        calibration_data: training images: a DataLoader, a list of batches (tensors or ``(x, y)``), or
            one tensor ``[B, ...]``.
        method: a registered converter plugin: ``"max"``, ``"percentile"`` (DIET-SNN) or
            ``"distribution_aware"`` (Datta & Beerel 2022); see ``snn_ext.list_plugins("converter")``.
        timesteps: ``T`` of the SNN.
        target: ``"snntorch"`` or ``"spikingjelly"``: the framework of the neurons in the result.
        encoder: ``"direct"`` (analog image every step), ``"hybrid"`` or a callable ``(x, T) -> [T, B, ...]``.
        max_batches: use at most this many calibration batches.
        progress: show a progress bar over the calibration batches.
        **options: the method's own options, e.g. ``percentile=99.7, scaling_factor=0.2``.

    Raises:
        TypeError: an unsupported layer (named, with the supported list) or an untraceable model.
        ValueError: empty calibration data, unknown target or encoder, bad options.
        snn_ext.PluginNotFoundError: unknown method.
    """
    converter: ConversionMethod = PLUGINS.converter.create(method, "core", **options)
    return converter.convert(ann, calibration_data, timesteps, target, encoder, max_batches, progress)
