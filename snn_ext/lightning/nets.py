"""Small SNNs trained from scratch by the recipes: the single-spike hybrid-encoding MLP."""

from __future__ import annotations

import torch
from torch import nn

from snn_ext.conversion.spiking_model import check_target
from snn_ext.core.encoding import hybrid
from snn_ext.core.loss import spike_time_membrane_logits

__all__ = ["SingleSpikeMLP"]


class SingleSpikeMLP(nn.Module):
    """Two-layer fire-once SNN with hybrid input encoding (Datta, Kundu & Beerel 2021), as a classifier.

    ``images [B, ...]`` are flattened to ``[B, in_features]``, hybrid-encoded to ``[T, B, in_features]``
    (analog at t=0, one spike per pixel after), then ``fc1 -> single-spike neurons -> fc2 -> single-spike
    output neurons``. The logits ``[B, classes]`` are ``membrane - kappa * first_spike_time`` of the output
    layer (:func:`snn_ext.core.loss.spike_time_membrane_logits`), so cross-entropy on them is the
    spike-time + membrane loss.

    Args:
        framework: ``"snntorch"`` (``SingleSpikeLeaky``) or ``"spikingjelly"`` (``SingleSpikeLIFNode``).
        timesteps: ``T`` (>= 2: hybrid encoding needs the analog step and at least one temporal step).
        in_features: flattened image size (64 for digits).
        hidden: hidden neurons.
        num_classes: output neurons.
        kappa: weight of one step of spike time against one unit of membrane potential.
    """

    def __init__(
        self,
        framework: str = "snntorch",
        timesteps: int = 5,
        in_features: int = 64,
        hidden: int = 128,
        num_classes: int = 10,
        kappa: float = 1.0,
    ) -> None:
        super().__init__()
        check_target(framework, "framework")
        if timesteps < 2:
            raise ValueError(f"timesteps must be >= 2 for hybrid encoding, got {timesteps}")
        self.framework, self.timesteps, self.kappa = framework, timesteps, kappa
        self.fc1, self.fc2 = nn.Linear(in_features, hidden), nn.Linear(hidden, num_classes)
        if framework == "snntorch":
            from snn_ext.snntorch import SingleSpikeLeaky

            self.n1, self.n2 = SingleSpikeLeaky(), SingleSpikeLeaky()
        else:
            from snn_ext.spikingjelly import SingleSpikeLIFNode

            self.n1, self.n2 = SingleSpikeLIFNode(step_mode="m"), SingleSpikeLIFNode(step_mode="m")

    def _run(self, neuron: nn.Module, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole sequence ``[T, B, N]`` from a fresh state -> (spikes, membrane) ``[T, B, N]``."""
        if self.framework == "snntorch":
            neuron.reset_mem()
            return neuron.forward_sequence(current)
        neuron.reset()
        neuron.store_v_seq = True
        return neuron(current), neuron.v_seq

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, ...]`` -> logits ``[B, num_classes]``."""
        steps, batch = self.timesteps, images.shape[0]
        x_seq = hybrid(images.reshape(batch, -1), steps).flatten(0, 1)
        hidden, _ = self._run(self.n1, self.fc1(x_seq).unflatten(0, (steps, batch)))
        out, mem = self._run(self.n2, self.fc2(hidden.flatten(0, 1)).unflatten(0, (steps, batch)))
        threshold = self.n2.threshold if self.framework == "snntorch" else self.n2.v_threshold
        integrated = mem[-1] + threshold * out.sum(0)
        return spike_time_membrane_logits(out, integrated, self.kappa)

    def ann(self) -> nn.Sequential:
        """The same weights as an ANN (``Flatten, fc1, ReLU, fc2``), the energy reference."""
        return nn.Sequential(nn.Flatten(), self.fc1, nn.ReLU(), self.fc2)
