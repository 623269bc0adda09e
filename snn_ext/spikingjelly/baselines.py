"""SpikingJelly's own converter on the same ANN, for side-by-side comparisons with snn-ext's methods."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from spikingjelly.activation_based import ann2snn, functional
from spikingjelly.activation_based.ann2snn.recipes import RateCodingRecipe
from torch import nn

from snn_ext.models.activations import ClippedReLU

__all__ = ["rate_coding_logits"]


def rate_coding_logits(
    ann: nn.Module, calibration_data: Iterable, images: torch.Tensor, mode: str | float, timesteps: int
) -> torch.Tensor:
    """Logits ``[B, C]`` of ``ann`` converted by SpikingJelly's ``RateCodingRecipe(mode)``, averaged over ``T``.

    SpikingJelly converts only ``nn.ReLU`` modules, so every :class:`~snn_ext.models.ClippedReLU` of (a copy
    of) ``ann`` is replaced by ``nn.ReLU`` first (the clip is dropped). The converted model runs
    ``timesteps`` single steps on the analog images (direct input), as SpikingJelly's examples do.

    Args:
        ann: the trained ANN (not modified).
        calibration_data: batches for the recipe's voltage hooks (tensors or ``(x, y)`` tuples).
        images: ``[B, ...]`` evaluation images.
        mode: ``"Max"``, ``"99.9%"`` or a float in ``(0, 1]``, as in SpikingJelly.
        timesteps: ``T``.
    """
    relu_ann = copy.deepcopy(ann).eval()
    for name, module in list(relu_ann.named_modules()):
        if isinstance(module, ClippedReLU):
            parent, _, child = name.rpartition(".")
            setattr(relu_ann.get_submodule(parent) if parent else relu_ann, child, nn.ReLU())
    snn = ann2snn.Converter(RateCodingRecipe(calibration_data, mode=mode)).convert(relu_ann)
    functional.reset_net(snn)
    with torch.no_grad():
        logits = sum(snn(images) for _ in range(timesteps)) / timesteps
    functional.reset_net(snn)
    return logits
