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
* **average-pooled spikes** (an ``AvgPool``/``AdaptiveAvgPool`` between neurons and the layer, as in
  DIET-SNN's VGG) count as spikes too: the pooling is folded into the layer's weights, so each spike
  that entered the pooling costs ``fan-out`` accumulates.

Energy: ``MACs * mac_pj + ACs * ac_pj`` with :class:`EnergyTable` (default: 45 nm, 32-bit float,
Horowitz 2014: MAC 4.6 pJ, AC 0.9 pJ).

Each layer also counts ``inputs`` (input elements of every slice) and ``dense_macs`` (every slice counted
as MACs: the iso-architecture ANN, ``T`` times); :func:`snn_ext.energy.report` turns the counts into
numbers per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["EnergyTable", "LayerOps", "OpCounter"]

_SYNAPTIC = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_AVERAGE_POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)


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
    """Spike opportunities seen in binary slices (neurons x samples x steps; before any average pooling)."""
    inputs: int = 0
    """Input elements seen in all slices, binary or analog (neurons x samples x steps; before any average
    pooling). ``inputs / (steps * samples)`` is the number of input neurons of one sample at one step."""
    dense_macs: int = 0
    """Multiply-accumulates had every slice been dense (analog): ``output elements * fan-in`` per slice,
    summed over all slices. Divided by ``steps * samples`` it is the iso-architecture ANN's MACs per
    sample, whatever the layout (per-step ``[B]`` calls, merged ``[T * B]`` or multi-step ``[T, B]``)."""

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

    _pooled: dict[int, tuple[torch.Tensor, int]] = field(default_factory=dict, init=False, repr=False)

    def __enter__(self) -> OpCounter:
        self._handles.append(self.model.register_forward_pre_hook(lambda *_: self._pooled.clear()))
        for name, module in self.model.named_modules():
            if isinstance(module, _SYNAPTIC):
                self.layers[name] = LayerOps()
                self._handles.append(module.register_forward_hook(self._hook(name, *_fan_in_out(module))))
            elif isinstance(module, _AVERAGE_POOLS):
                self._handles.append(module.register_forward_hook(self._remember_pooled_spikes))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._pooled.clear()

    @staticmethod
    def _slices(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per slice along dim 0: whether it is binary, and its number of non-zeros."""
        slices = x.reshape(x.shape[0], -1)
        return ((slices == 0) | (slices == 1)).all(dim=1), (slices != 0).sum(dim=1)

    @torch.no_grad()
    def _remember_pooled_spikes(
        self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor
    ) -> None:
        x = inputs[0]
        binary, spikes = self._slices(x)
        # keyed by storage: flatten/view keep it, so the next layer finds it (analog slices marked -1)
        self._pooled[output.data_ptr()] = (torch.where(binary, spikes, -1), x.numel() // x.shape[0])

    def _hook(self, name: str, fan_in: int, fan_out: int):
        @torch.no_grad()
        def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            x = inputs[0]
            binary, nonzeros = self._slices(x)
            neurons = x.numel() // x.shape[0]
            pooled, pooled_neurons = self._pooled.pop(x.data_ptr(), (None, 0))
            if pooled is not None and pooled.shape == binary.shape:
                binary, nonzeros, neurons = pooled >= 0, pooled.clamp(min=0), pooled_neurons
            spikes = int(nonzeros[binary].sum().item())
            binary_slices = int(binary.sum().item())
            dense = output[0].numel() * fan_in  # MACs of one slice computed densely
            ops = self.layers[name]
            ops.macs += (len(binary) - binary_slices) * dense
            ops.acs += spikes * fan_out
            ops.input_spikes += spikes
            ops.binary_inputs += binary_slices * neurons
            ops.inputs += len(binary) * neurons
            ops.dense_macs += len(binary) * dense

        return count

    def energy_pj(self) -> float:
        """Total estimated energy in picojoules."""
        return sum(ops.energy_pj(self.table) for ops in self.layers.values())
