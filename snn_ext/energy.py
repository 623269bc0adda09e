"""Energy report: per synaptic layer, spikes, synaptic operations and picojoules per image, against the ANN.

``report(model, data)`` runs ``model`` (an SNN or an ANN: images ``[B, ...]`` in, logits ``[B, classes]``
out) over ``data`` with :class:`~snn_ext.core.energy.OpCounter` hooked on every Conv1d/2d/3d and Linear
layer, and turns the counts into numbers per image::

    from snn_ext.energy import report

    r = report(snn, test_loader)  # T from snn.timesteps
    print(r.format())
    r.reduction  # ANN energy / SNN energy: the papers' "N x less energy"

How each layer is counted (one rule for every layer, the output layer included):

* **analog input** costs dense multiply-accumulates, ``MACs = output elements * fan-in`` per image and
  step at which the input is analog. The first layer with direct encoding sees the analog image at every
  step (``T`` times the ANN's MACs); with hybrid encoding only at step 0 (then spikes);
* **binary input** (spikes, also average-pooled spikes) costs accumulates, ``SOPs = ACs = spikes *
  fan-out`` (conv: ``C_out/groups * prod(kernel)``, borders ignored; linear: ``out_features``). The output
  layer's input spikes are counted like any other layer's;
* energy ``= MACs * mac_pj + SOPs * ac_pj`` with an :class:`EnergyTable` (default 45 nm, 32-bit float,
  Horowitz 2014: MAC 4.6 pJ, AC 0.9 pJ);
* the iso-architecture ANN runs the same layers once, densely: ``E_ANN = sum_l MACs_l * mac_pj``.

This is DIET-SNN's accounting (``E_SNN = MACs_1 * 4.6 pJ + sum_l spikes_{l-1} * fan-out_l * 0.9 pJ``),
except that whatever is analog is counted as MACs wherever it occurs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from snn_ext.core.checks import check_num_steps
from snn_ext.core.energy import EnergyTable, LayerOps, OpCounter

__all__ = ["DEFAULT_TABLE", "INPUT_KINDS", "EnergyReport", "EnergyTable", "LayerEnergy", "report"]

DEFAULT_TABLE = EnergyTable()
"""45 nm, 32-bit float (Horowitz 2014): MAC 4.6 pJ, AC 0.9 pJ."""

INPUT_KINDS = ("analog", "spikes", "mixed")
"""What a layer received: only analog slices, only binary slices (spikes), or both (e.g. hybrid encoding)."""


@dataclass(frozen=True)
class LayerEnergy:
    """One synaptic layer's numbers, **per image** (all ``T`` steps together).

    Attributes:
        name: the layer's ``named_modules`` name.
        input_kind: one of :data:`INPUT_KINDS`.
        neurons: input neurons of one image at one step (elements of one input sample; before any
            average pooling, whose spikes are counted where they entered the pooling).
        spikes_per_neuron: input spikes arriving at the layer, summed over ``T``, per input neuron
            (the DIET-SNN "spike rate"; 0 for analog input).
        sops: synaptic operations (accumulates), ``spikes * fan-out``.
        macs: dense multiply-accumulates at the analog steps.
        energy_pj: ``macs * mac_pj + sops * ac_pj`` in picojoules.
        ann_macs: MACs of the same layer in the ANN (one dense step): ``output elements * fan-in``.
    """

    name: str
    input_kind: str
    neurons: float
    spikes_per_neuron: float
    sops: float
    macs: float
    energy_pj: float
    ann_macs: float

    @classmethod
    def from_counts(
        cls, name: str, ops: LayerOps, images: int, timesteps: int, table: EnergyTable = DEFAULT_TABLE
    ) -> LayerEnergy:
        """Per-image numbers from the totals ``ops`` counted over ``images`` images of ``timesteps`` steps.

        Every layout gives the same per-image numbers: per-step calls ``[B, ...]``, time merged into the
        batch ``[T * B, ...]`` and SpikingJelly's multi-step ``[T, B, ...]`` all see ``T * images`` samples
        (``ops.inputs`` and ``ops.dense_macs`` are summed over them).
        """
        sample_steps = timesteps * images
        if ops.binary_inputs == 0:
            kind = "analog"
        elif ops.binary_inputs == ops.inputs:
            kind = "spikes"
        else:
            kind = "mixed"
        return cls(
            name=name,
            input_kind=kind,
            neurons=ops.inputs / sample_steps,
            spikes_per_neuron=ops.input_spikes * timesteps / ops.inputs if ops.inputs else 0.0,
            sops=ops.acs / images,
            macs=ops.macs / images,
            energy_pj=ops.energy_pj(table) / images,
            ann_macs=ops.dense_macs / sample_steps,
        )


@dataclass(frozen=True)
class EnergyReport:
    """Energy of a model on some data, per image, layer by layer, against the iso-architecture ANN.

    Attributes:
        layers: one :class:`LayerEnergy` per synaptic layer that ran, in ``named_modules`` order.
        images: images counted.
        timesteps: ``T`` used to turn counts into per-step numbers (1 for an ANN).
        table: the energy per operation used.
        accuracy: top-1 accuracy on the labelled data, or ``None`` when no labels were given.
    """

    layers: tuple[LayerEnergy, ...]
    images: int
    timesteps: int
    table: EnergyTable = DEFAULT_TABLE
    accuracy: float | None = None

    @classmethod
    def from_counts(
        cls,
        counts: Mapping[str, LayerOps],
        images: int,
        timesteps: int,
        table: EnergyTable = DEFAULT_TABLE,
        accuracy: float | None = None,
    ) -> EnergyReport:
        """Build a report from :attr:`OpCounter.layers <snn_ext.core.energy.OpCounter.layers>` totals.

        Layers that never ran (no input seen) are left out.

        Raises:
            ValueError: ``images`` < 1 or ``timesteps`` < 1.
        """
        check_num_steps(images, 1, "images")
        check_num_steps(timesteps, 1, "timesteps")
        layers = tuple(
            LayerEnergy.from_counts(name, ops, images, timesteps, table) for name, ops in counts.items() if ops.inputs
        )
        return cls(layers, images, timesteps, table, accuracy)

    @property
    def hidden(self) -> tuple[LayerEnergy, ...]:
        """The layers after the first: their inputs are the hidden (and output-feeding) neurons' spikes."""
        return self.layers[1:]

    @property
    def spikes_per_neuron(self) -> float:
        """Hidden neurons' spikes per neuron per image (summed over ``T``): all spikes arriving at the layers
        after the first, divided by their input neurons. Spikes reaching several layers count at each."""
        neurons = sum(layer.neurons for layer in self.hidden)
        spikes = sum(layer.spikes_per_neuron * layer.neurons for layer in self.hidden)
        return spikes / neurons if neurons else 0.0

    @property
    def sops(self) -> float:
        """Synaptic operations (accumulates) per image, all layers."""
        return sum(layer.sops for layer in self.layers)

    @property
    def macs(self) -> float:
        """Multiply-accumulates per image (analog inputs), all layers."""
        return sum(layer.macs for layer in self.layers)

    @property
    def ann_macs(self) -> float:
        """The iso-architecture ANN's multiply-accumulates per image."""
        return sum(layer.ann_macs for layer in self.layers)

    @property
    def snn_energy_pj(self) -> float:
        """Energy per image in picojoules, as counted (MACs for analog input, ACs for spikes)."""
        return sum(layer.energy_pj for layer in self.layers)

    @property
    def ann_energy_pj(self) -> float:
        """Energy per image in picojoules of the iso-architecture ANN (every layer dense, one step)."""
        return self.ann_macs * self.table.mac_pj

    @property
    def reduction(self) -> float:
        """``ann_energy_pj / snn_energy_pj``: "N x less energy" (1.0 for an ANN; ``inf`` if nothing was spent)."""
        return self.ann_energy_pj / self.snn_energy_pj if self.snn_energy_pj else math.inf

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: the per-layer rows, the totals per image and the table (``inf`` becomes ``None``)."""
        return {
            "images": self.images,
            "timesteps": self.timesteps,
            "table": asdict(self.table),
            "accuracy": self.accuracy,
            "spikes_per_neuron": self.spikes_per_neuron,
            "sops": self.sops,
            "macs": self.macs,
            "ann_macs": self.ann_macs,
            "snn_energy_pj": self.snn_energy_pj,
            "ann_energy_pj": self.ann_energy_pj,
            "reduction": self.reduction if math.isfinite(self.reduction) else None,
            "layers": [asdict(layer) for layer in self.layers],
        }

    def format(self) -> str:
        """Plain-text table: one row per layer, the totals, and how the operations were counted."""
        header = (
            f"{'layer':<24}{'input':>8}{'spikes/neuron':>15}{'SOPs':>14}{'MACs':>14}{'energy pJ':>14}{'ANN MACs':>14}"
        )
        lines = [f"energy per image over {self.images} images, T={self.timesteps}", header, "-" * len(header)]
        for layer in self.layers:
            spikes = "-" if layer.input_kind == "analog" else f"{layer.spikes_per_neuron:.4f}"
            lines.append(
                f"{layer.name or '(model)':<24}{layer.input_kind:>8}{spikes:>15}{layer.sops:>14,.1f}"
                f"{layer.macs:>14,.1f}{layer.energy_pj:>14,.1f}{layer.ann_macs:>14,.1f}"
            )
        lines.append("-" * len(header))
        lines.append(
            f"{'total':<24}{'':>8}{self.spikes_per_neuron:>15.4f}{self.sops:>14,.1f}{self.macs:>14,.1f}"
            f"{self.snn_energy_pj:>14,.1f}{self.ann_macs:>14,.1f}"
        )
        accuracy = "" if self.accuracy is None else f", accuracy {self.accuracy:.4f}"
        lines += [
            f"SNN {self.snn_energy_pj:,.1f} pJ/image, ANN {self.ann_energy_pj:,.1f} pJ/image, "
            f"reduction (ANN/SNN) {self.reduction:.3g}x{accuracy}",
            f"table: MAC {self.table.mac_pj} pJ, AC {self.table.ac_pj} pJ"
            + (" (45 nm fp32, Horowitz 2014)" if self.table == DEFAULT_TABLE else ""),
            "analog input costs MACs (output elements x fan-in) at each step it is analog: the first layer at every "
            "step with direct encoding, at step 0 only with hybrid encoding; binary input (spikes) costs "
            "ACs = spikes x fan-out.",
            "the output layer's input spikes are counted like any other layer's; total spikes/neuron: layers after "
            "the first; ANN: every layer dense (MACs), one step.",
        ]
        return "\n".join(lines)


def _batches(data: Iterable | torch.Tensor, max_batches: int | None) -> Iterator[tuple[torch.Tensor, Any]]:
    """Yield ``(x, y or None)`` from a tensor, or an iterable of tensors or ``(x, y, ...)`` tuples."""
    if isinstance(data, torch.Tensor):
        data = [data]
    elif not isinstance(data, Iterable):
        raise TypeError(
            "data must be a tensor [B, ...] or an iterable of batches (tensors or (x, y) tuples), "
            f"got {type(data).__name__}"
        )
    for count, batch in enumerate(data):
        if max_batches is not None and count == max_batches:
            return
        x, y = (batch[0], batch[1] if len(batch) > 1 else None) if isinstance(batch, (tuple, list)) else (batch, None)
        if not isinstance(x, torch.Tensor) or not (y is None or isinstance(y, torch.Tensor)):
            raise TypeError(f"data batches must be tensors or (x, y) tuples of tensors, got {type(batch).__name__}")
        if x.dim() == 0:
            raise ValueError("data batches must be images [B, ...], got a 0-d tensor")
        yield x, y


def _timesteps_of(model: nn.Module, timesteps: int | None) -> int:
    """``timesteps``, else ``model.timesteps``, else 1 for a model without spiking neurons; never a guess."""
    if timesteps is None:
        timesteps = getattr(model, "timesteps", None)
    if timesteps is None:
        spiking = next((m for m in model.modules() if _is_spiking_neuron(m)), None)
        if spiking is not None:
            raise ValueError(
                f"timesteps= is needed: {type(model).__name__} has spiking neurons ({type(spiking).__name__}) but no "
                "`timesteps` attribute, and the ANN reference (its MACs divided by T) depends on T"
            )
        timesteps = 1  # an ANN: one pass
    check_num_steps(timesteps, 1, "timesteps")
    return timesteps


def _is_spiking_neuron(module: nn.Module) -> bool:
    """An snnTorch or SpikingJelly neuron (snn-ext's included), told by class name so neither is imported."""
    return any(cls.__name__ in ("SpikingNeuron", "BaseNode") for cls in type(module).__mro__)


def _correct(logits: torch.Tensor, labels: torch.Tensor) -> int:
    """Correct predictions for labels ``[B]`` (class indices) or ``[B, classes]`` (one-hot)."""
    if logits.dim() != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(
            f"model(x) must return logits [B, classes] to score labels [B]; got logits of shape {tuple(logits.shape)} "
            f"for labels of shape {tuple(labels.shape)}"
        )
    if labels.shape == logits.shape:
        if not bool(((labels == 0) | (labels == 1)).all() & (labels.sum(1) == 1).all()):
            raise ValueError("labels [B, classes] must be one-hot (a single 1 per row)")
        labels = labels.argmax(1)
    elif labels.dim() != 1 or labels.is_floating_point():
        raise ValueError(
            f"labels must be class indices [B] (an integer tensor) or one-hot [B, classes], got a {labels.dtype} "
            f"tensor of shape {tuple(labels.shape)} for logits {tuple(logits.shape)}"
        )
    return int((logits.argmax(1) == labels.to(logits.device)).sum().item())


def report(
    model: nn.Module,
    data: Iterable | torch.Tensor,
    *,
    timesteps: int | None = None,
    table: EnergyTable = DEFAULT_TABLE,
    max_batches: int | None = None,
) -> EnergyReport:
    """Count spikes and operations of ``model`` on ``data`` and report energy per image against the ANN.

    ``model(x)`` is called once per batch, in eval mode and under ``torch.no_grad()`` (the previous
    training modes are restored afterwards); ``x`` is moved to the device of the model's parameters.
    The model runs its ``T`` steps inside that call, in any layout (per-step ``[B, ...]`` calls of each
    layer, time merged into the batch ``[T * B, ...]`` as in :class:`~snn_ext.conversion.SpikingModel`,
    or SpikingJelly's multi-step ``[T, B, ...]``) and must reset its own state between calls.

    Counting (see the module docstring): analog input costs MACs at each step it is analog -- the first
    layer at every step with direct encoding, at step 0 only with hybrid encoding; binary input (spikes,
    also average-pooled) costs ``ACs = spikes * fan-out``, the output layer's input spikes included;
    energy ``= MACs * table.mac_pj + ACs * table.ac_pj``; the ANN counts every layer as MACs, once.
    A layer of an ANN whose input happens to be all 0/1 for a sample counts as spikes for that sample.

    Args:
        model: images ``[B, ...]`` -> logits ``[B, classes]`` (an SNN or an ANN).
        data: images: one tensor ``[B, ...]``, or an iterable of batches (a DataLoader, a list), each a
            tensor ``[B, ...]`` or an ``(x, y, ...)`` tuple with labels ``y`` (then ``accuracy`` is reported):
            class indices ``[B]`` or one-hot ``[B, classes]``. Wrap a single ``(x, y)`` pair in a list.
        timesteps: ``T``; default ``model.timesteps``, else 1 for a model without spiking neurons (an ANN).
            Required for a model with spiking neurons but no ``timesteps`` attribute (the ANN's MACs are the
            counted dense MACs / ``T``, so a wrong ``T`` would misstate the reduction).
        table: energy per operation in pJ.
        max_batches: use at most this many batches of ``data``.

    Returns:
        An :class:`EnergyReport`: per-layer rows and totals per image (pJ, MACs, SOPs, spikes per neuron).

    Raises:
        ValueError: ``timesteps`` or ``max_batches`` not an integer >= 1, or missing for an SNN without a
            ``timesteps`` attribute; empty ``data``; a model without Conv/Linear layers; labels neither class
            indices nor one-hot, or ``model(x)`` not ``[B, classes]``.
        TypeError: ``data``, its batches or ``table`` of the wrong type.
    """
    timesteps = _timesteps_of(model, timesteps)
    if max_batches is not None:
        check_num_steps(max_batches, 1, "max_batches")
    if not isinstance(table, EnergyTable):
        raise TypeError(f"table must be an EnergyTable, got {type(table).__name__}")
    device = next((p.device for p in model.parameters()), None)
    modes = {module: module.training for module in model.modules()}
    images = correct = 0
    labelled = True
    model.eval()
    try:
        with torch.no_grad(), OpCounter(model, table) as counter:
            if not counter.layers:
                raise ValueError(f"model has no Conv1d/2d/3d or Linear layer to count ({type(model).__name__})")
            for x, y in _batches(data, max_batches):
                if x.shape[0] == 0:
                    continue  # no images: nothing to run or count
                logits = model(x if device is None else x.to(device))
                images += x.shape[0]
                labelled = labelled and y is not None
                if labelled:
                    correct += _correct(logits, y)
    finally:
        for module, mode in modes.items():
            module.train(mode)
    if images == 0:
        raise ValueError("data is empty: pass at least one batch of images [B, ...] with B >= 1")
    accuracy = correct / images if labelled else None
    return EnergyReport.from_counts(counter.layers, images, timesteps, table, accuracy)
