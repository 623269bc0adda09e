"""Count spikes and synaptic operations per layer, and turn them into an energy estimate.

:class:`OpCounter` hooks every ``Conv1d/2d/3d`` and ``Linear`` layer of a model (any framework:
SpikingJelly's ``layer.*`` and snnTorch nets use the same torch layers) and classifies each input it
sees, one slice along dimension 0 at a time (a sample in single-step mode, a time step in
SpikingJelly's multi-step mode):

* an **analog** slice (any value other than 0 and 1) costs dense multiply-accumulates:
  ``MACs = output elements * fan-in`` (conv: ``C_in/groups * prod(kernel)``; linear: ``in_features``).
  With direct or hybrid encoding this is the first layer at the analog step(s);
* a **binary** slice (spikes) costs one accumulate per spike and outgoing synapse:
  ``ACs = spikes * fan-out`` (conv: ``C_out/groups * prod(kernel)``, border effects ignored, as in
  most papers; linear: ``out_features``). With hybrid encoding this is the first layer at the
  temporal steps, and every later layer at all steps.

Energy: ``MACs * mac_pj + ACs * ac_pj`` with :class:`EnergyTable` (default: 45 nm, 32-bit float,
Horowitz 2014: MAC 4.6 pJ, AC 0.9 pJ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["EnergyTable", "LayerOps", "OpCounter"]

_SYNAPTIC = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(frozen=True)
class EnergyTable:
    """Energy per operation in picojoules (replaceable, e.g. ``EnergyTable(3.2, 0.1)`` for int32)."""

    mac_pj: float = 4.6
    ac_pj: float = 0.9


@dataclass
class LayerOps:
    """Operations counted for one synaptic layer over everything it processed while counting."""

    macs: int = 0
    """Dense multiply-accumulates (analog input)."""
    acs: int = 0
    """Accumulates triggered by input spikes (binary input)."""
    input_spikes: int = 0
    """Spikes that arrived at the layer."""
    binary_inputs: int = 0
    """Input elements seen in binary slices (spike opportunities: neurons x samples x steps)."""

    @property
    def spike_rate(self) -> float:
        """Fraction of binary input elements that were spikes (per neuron and step); 0 if none."""
        return self.input_spikes / self.binary_inputs if self.binary_inputs else 0.0

    def energy_pj(self, table: EnergyTable) -> float:
        return self.macs * table.mac_pj + self.acs * table.ac_pj


def _fan_in_out(module: nn.Module) -> tuple[int, int]:
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    kernel = math.prod(module.kernel_size)
    return module.in_channels // module.groups * kernel, module.out_channels // module.groups * kernel


@dataclass
class OpCounter:
    """Context manager that counts MACs, ACs and input spikes per synaptic layer of ``model``.

    Example::

        with OpCounter(net) as ops:
            net(x_seq)
        print(ops.layers["0"].macs, ops.energy_pj())

    Args:
        model: the network; every Conv1d/2d/3d and Linear inside it is counted under its
            ``named_modules`` name.
        table: energy per operation.
    """

    model: nn.Module
    table: EnergyTable = field(default_factory=EnergyTable)
    layers: dict[str, LayerOps] = field(default_factory=dict, init=False)
    _handles: list = field(default_factory=list, init=False, repr=False)

    def __enter__(self) -> OpCounter:
        for name, module in self.model.named_modules():
            if isinstance(module, _SYNAPTIC):
                self.layers[name] = LayerOps()
                self._handles.append(module.register_forward_hook(self._hook(name, *_fan_in_out(module))))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str, fan_in: int, fan_out: int):
        @torch.no_grad()
        def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            x = inputs[0]
            slices = x.reshape(x.shape[0], -1)
            binary = ((slices == 0) | (slices == 1)).all(dim=1)
            spikes = (slices[binary] != 0).sum().item()
            ops = self.layers[name]
            ops.macs += int((~binary).sum().item()) * (output[0].numel() * fan_in)
            ops.acs += int(spikes) * fan_out
            ops.input_spikes += int(spikes)
            ops.binary_inputs += int(binary.sum().item()) * slices.shape[1]

        return count

    def energy_pj(self) -> float:
        """Total estimated energy in picojoules."""
        return sum(ops.energy_pj(self.table) for ops in self.layers.values())
