"""The converted network: images in, logits out, spiking neurons of the chosen framework inside."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import fx, nn

from snn_ext.core.checks import check_num_steps
from snn_ext.core.encoding import direct, hybrid

__all__ = ["ENCODERS", "TARGETS", "SpikingModel", "TimeBatchedNeuron", "make_neuron"]

TARGETS = ("snntorch", "spikingjelly")
ENCODERS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {"direct": direct, "hybrid": hybrid}


class TimeBatchedNeuron(nn.Module):
    """Runs a framework neuron in multi-step mode inside a graph whose tensors merge time into the batch.

    Input and output ``[T * B, ...]`` (step-major); each call is one whole sequence, so the neuron's
    state is reset first, to ``initial_fraction * threshold``. ``neuron`` is a
    :class:`~snn_ext.snntorch.DietLeaky` or a :class:`~snn_ext.spikingjelly.DietLIFNode` (the
    multi-step paths of both frameworks).
    """

    def __init__(self, neuron: nn.Module, timesteps: int, initial_fraction: float = 0.0) -> None:
        super().__init__()
        self.neuron = neuron
        self.timesteps = timesteps
        self.initial_fraction = initial_fraction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_seq = x.unflatten(0, (self.timesteps, -1))
        if hasattr(self.neuron, "forward_sequence"):  # snnTorch face
            self.neuron.mem = self._start(x_seq, self.neuron.threshold)
            spikes = self.neuron.forward_sequence(x_seq)
        else:  # SpikingJelly face, step_mode 'm'
            self.neuron.reset()
            self.neuron.v = self._start(x_seq, self.neuron.v_threshold)
            spikes = self.neuron(x_seq)
        return spikes.flatten(0, 1)

    def _start(self, x_seq: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x_seq[0]) + self.initial_fraction * threshold

    def extra_repr(self) -> str:
        return f"timesteps={self.timesteps}, initial_fraction={self.initial_fraction}"


def make_neuron(target: str, threshold: float, timesteps: int, initial_fraction: float = 0.0) -> TimeBatchedNeuron:
    """An integrate-and-fire DIET neuron (leak 1, trainable leak and threshold) of ``target``."""
    if target == "snntorch":
        from snn_ext.snntorch import DietLeaky

        neuron = DietLeaky(beta=1.0, threshold=threshold, init_hidden=True)
    elif target == "spikingjelly":
        from snn_ext.spikingjelly import DietLIFNode

        neuron = DietLIFNode(leak=1.0, v_threshold=threshold, step_mode="m")
    else:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    return TimeBatchedNeuron(neuron, timesteps, initial_fraction)


def resolve_encoder(encoder: str | Callable[[torch.Tensor, int], torch.Tensor]):
    if callable(encoder):
        return encoder
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {', '.join(ENCODERS)} or a callable (x, T) -> [T, B, ...]")
    return ENCODERS[encoder]


class SpikingModel(nn.Module):
    """A converted SNN: ``forward(images [B, ...]) -> logits [B, classes]``.

    The encoder turns the images into ``[T, B, ...]``; the graph runs with time merged into the batch
    (``[T * B, ...]``, so every conv/linear layer runs once per call); the spiking neurons run each whole
    sequence; the output layer does not spike: the logits are its input current averaged over ``T``
    (DIET-SNN sums over ``T`` instead, which only scales the logits). Neuron states are reset at every
    call. Trainable end to end (weights, leaks, thresholds), e.g. for DIET-SNN fine-tuning.

    Attributes:
        timesteps: ``T``; assignable.
        encoder: the callable ``(images, T) -> [T, B, ...]``.
        target: ``"snntorch"`` or ``"spikingjelly"``: the framework of the neurons inside.
        graph: the ``torch.fx.GraphModule`` with the neurons.
    """

    def __init__(
        self,
        graph: fx.GraphModule,
        timesteps: int,
        encoder: str | Callable[[torch.Tensor, int], torch.Tensor] = "direct",
        target: str = "snntorch",
    ) -> None:
        super().__init__()
        self.graph = graph
        self.encoder = resolve_encoder(encoder)
        self.target = target
        self.timesteps = timesteps

    @property
    def timesteps(self) -> int:
        return self._timesteps

    @timesteps.setter
    def timesteps(self, value: int) -> None:
        check_num_steps(value, 2 if self.encoder is hybrid else 1, "timesteps")
        self._timesteps = value
        for module in self.graph.modules():
            if isinstance(module, TimeBatchedNeuron):
                module.timesteps = value

    def neurons(self) -> list[nn.Module]:
        """The framework neurons, in graph order."""
        return [m.neuron for m in self.graph.modules() if isinstance(m, TimeBatchedNeuron)]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x_seq = self.encoder(images, self.timesteps)
        out = self.graph(x_seq.flatten(0, 1))
        return out.unflatten(0, (self.timesteps, images.shape[0])).mean(0)

    def extra_repr(self) -> str:
        return f"timesteps={self.timesteps}, encoder={self.encoder.__name__}, target={self.target}"
