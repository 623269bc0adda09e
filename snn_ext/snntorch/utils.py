"""Network utilities for snnTorch users."""

from __future__ import annotations

from snntorch import SpikingNeuron
from torch import nn

__all__ = ["reset"]


def reset(net: nn.Module) -> nn.Module:
    """Zero the hidden state of every snnTorch and snn-ext neuron inside ``net``, and only there.

    Unlike ``snntorch.utils.reset``, this walks ``net.modules()`` (so neurons nested in
    containers or submodules are found, and subclasses of any snnTorch neuron count) and touches
    no other network: snnTorch's version resets every instance of a neuron class in the process
    (snnTorch issues #438, #414). The new states are fresh zero tensors, detached from any graph.

    Args:
        net: any module; it may itself be a neuron.

    Returns:
        ``net``, so the call can be chained.
    """
    for module in net.modules():
        if isinstance(module, SpikingNeuron) and callable(getattr(module, "reset_mem", None)):
            module.reset_mem()
    return net
