"""``ConvertedSNN``: an SNN that converts a trained ANN checkpoint when training or evaluation starts.

The recipes' conversion and fine-tuning stages use it as :class:`~snn_ext.lightning.SNNModule`'s ``net``:
the YAML describes the ANN architecture, the checkpoint written by the ANN stage and the conversion
method; :meth:`SNNModule.setup` calls :meth:`ConvertedSNN.build` with the DataModule's training batches
(calibration), before any checkpoint of the SNN stage is restored and before DDP broadcasts the weights
of process 0 to the others.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from itertools import islice
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snn_ext.conversion.methods import skeleton
from snn_ext.conversion.spiking_model import check_neuron_options, check_target, check_timesteps, resolve_encoder
from snn_ext.core.checks import check_num_steps
from snn_ext.registry import PLUGINS

__all__ = ["ConvertedSNN", "load_ann_weights", "read_checkpoint"]


_ANN_HINT = (
    " Train the ANN first (recipes: `snn-ext fit -c <recipe.yaml> --stage ann` writes it there) or point "
    "--model.init_args.net.init_args.checkpoint to your checkpoint."
)


def read_checkpoint(
    checkpoint: str | Path, what: str = "checkpoint", hint: str = "", weights_only: bool = True
) -> dict[str, Any]:
    """Open a checkpoint file (a Lightning checkpoint or a ``state_dict``) and return its contents.

    Args:
        checkpoint: the file.
        what: what it is, for the messages (``"ANN checkpoint"``).
        hint: appended to the "not found" message (how to make the file).
        weights_only: as in ``torch.load`` (Lightning checkpoints of a whole run need ``False``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is empty, truncated or not a checkpoint; the message names the path and the cause.
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found.{hint}")
    if path.stat().st_size == 0:
        raise ValueError(f"{what} {path} is an empty file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as err:  # torch.load raises many kinds for a damaged file
        raise ValueError(
            f"{what} {path} cannot be read ({type(err).__name__}: {err}); it is damaged (truncated?) or not a "
            "checkpoint written by torch.save or Lightning"
        ) from err
    if not isinstance(state, dict) or not all(isinstance(key, str) for key in state):
        raise ValueError(f"{what} {path} holds a {type(state).__name__}, not a state_dict or a Lightning checkpoint")
    return state


def load_ann_weights(ann: nn.Module, checkpoint: str | Path) -> None:
    """Load ``checkpoint`` into ``ann`` (in place): a Lightning checkpoint of an :class:`ANNModule`
    (``state_dict`` with ``net.`` prefixes) or a plain ``state_dict`` of ``ann``.

    Raises:
        FileNotFoundError, ValueError: as :func:`read_checkpoint`.
        RuntimeError: the weights do not fit ``ann`` (missing / unexpected / mis-shaped keys).
    """
    path = Path(checkpoint)
    state = read_checkpoint(path, "ANN checkpoint", _ANN_HINT)
    if "state_dict" in state:
        state = {key.removeprefix("net."): value for key, value in state["state_dict"].items()}
    try:
        ann.load_state_dict(state)
    except RuntimeError as err:
        raise RuntimeError(f"the ANN checkpoint {path} does not match the ANN of this recipe: {err}") from err


class ConvertedSNN(nn.Module):
    """Converts ``ann`` (weights from ``checkpoint``) with ``snn_ext.convert`` when :meth:`build` is called.

    After :meth:`build` it is the converted :class:`~snn_ext.conversion.SpikingModel`: images ``[B, ...]``
    -> logits ``[B, classes]``; before, calling it raises an error.

    Loading a ``state_dict`` with the SNN's weights into one that is not built yet builds the structure
    without calibration (:func:`snn_ext.conversion.skeleton`), then loads the converted or trained values:
    restoring a trained SNN needs neither the ANN checkpoint nor the data, e.g.
    ``SNNModule.load_from_checkpoint(path, net=ConvertedSNN(VGG(...), timesteps=5))``.

    Args:
        ann: the ANN architecture (same as the ANN stage's ``net``).
        checkpoint: the ANN stage's checkpoint (``ANNModule`` Lightning checkpoint or a ``state_dict``), which
            must exist already; ``None`` converts ``ann`` as constructed (e.g. weights loaded in Python).
        method: converter plugin (``max``, ``percentile``, ``distribution_aware``).
        timesteps: ``T``.
        target: ``snntorch`` or ``spikingjelly``: the framework of the neurons.
        encoder: ``direct`` or ``hybrid``.
        neuron: ``diet`` (DIET LIF) or ``single_spike`` (fire-once, STDB surrogate; the hybrid-encoding paper).
        readout: ``mean`` (output current averaged over T) or ``spike_time`` (membrane - kappa * spike time).
        kappa: weight of the output spike time in the ``spike_time`` read-out (default 1.0 there).
        calibration_batches: training batches used to calibrate the thresholds.
        options: the method's options, e.g. ``{percentile: 99.7, scaling_factor: 0.2}``.
    """

    def __init__(
        self,
        ann: nn.Module,
        checkpoint: str | None = None,
        method: str = "percentile",
        timesteps: int = 5,
        target: str = "snntorch",
        encoder: str = "direct",
        neuron: str = "diet",
        readout: str = "mean",
        kappa: float | None = None,
        calibration_batches: int = 4,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_num_steps(calibration_batches, 1, "calibration_batches")
        check_target(target)
        check_timesteps(timesteps, resolve_encoder(encoder))
        check_neuron_options(neuron, readout, kappa, timesteps)
        # Resolve the method now: an unknown plugin name or option fails before the Trainer writes anything.
        try:
            self.__dict__["converter"] = PLUGINS.converter.create(method, "core", **(options or {}))
        except TypeError as err:
            accepted = ", ".join(inspect.signature(PLUGINS.converter.get(method, "core")).parameters)
            raise TypeError(f"options {options} do not fit converter {method!r}: {err}; accepted: {accepted}") from err
        if checkpoint is not None:
            read_checkpoint(checkpoint, "ANN checkpoint", _ANN_HINT)  # fail now, before a Trainer writes anything
        self.__dict__["ann"] = ann  # not a submodule: its weights are neither trained nor checkpointed
        self.checkpoint, self.method, self.target, self.encoder = checkpoint, method, target, encoder
        self.neuron, self.readout, self.kappa = neuron, readout, kappa
        self.calibration_batches, self.options = calibration_batches, dict(options or {})
        self._timesteps = timesteps
        self.snn: nn.Module | None = None
        self.register_load_state_dict_pre_hook(_build_before_loading)

    @property
    def built(self) -> bool:
        """Whether :meth:`build` has run."""
        return self.snn is not None

    @property
    def timesteps(self) -> int:
        return self._timesteps

    @timesteps.setter
    def timesteps(self, value: int) -> None:
        check_timesteps(value, resolve_encoder(self.encoder))
        self._timesteps = value
        if self.snn is not None:
            self.snn.timesteps = value

    def build(self, calibration_data: Iterable, device: torch.device | str = "cpu") -> None:
        """Load the checkpoint and convert on ``device``, calibrating on the first ``calibration_batches``
        batches of ``calibration_data`` (batches ``(x [B, ...], y)`` or ``x``, e.g. the training DataLoader;
        read once, so every method sees the same images).
        """
        if self.checkpoint is not None:
            load_ann_weights(self.ann, self.checkpoint)
        batches = [
            b[0] if isinstance(b, (tuple, list)) else b for b in islice(calibration_data, self.calibration_batches)
        ]
        if not batches:
            raise ValueError("the calibration data (the DataModule's training set) is empty")
        self.snn = self.converter.convert(self.ann.to(device), batches, **self._snn_arguments())
        self.snn.method = self.method

    def _snn_arguments(self) -> dict[str, Any]:
        """The SNN's options as ``convert`` and :func:`~snn_ext.conversion.skeleton` take them."""
        return {
            "timesteps": self._timesteps,
            "target": self.target,
            "encoder": self.encoder,
            "neuron": self.neuron,
            "readout": self.readout,
            "kappa": self.kappa,
        }

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, ...]`` -> logits ``[B, classes]``."""
        if self.snn is None:
            raise RuntimeError("ConvertedSNN.build(calibration_data) must run first (SNNModule.setup does it)")
        return self.snn(images)

    def extra_repr(self) -> str:
        return f"method={self.method}, timesteps={self._timesteps}, target={self.target}, checkpoint={self.checkpoint}"


def _build_before_loading(module: ConvertedSNN, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """``load_state_dict`` pre-hook: an unbuilt :class:`ConvertedSNN` gets the SNN's structure (placeholder
    values, see :func:`snn_ext.conversion.skeleton`) for the SNN's keys to load into."""
    if not module.built and any(key.startswith(f"{prefix}snn.") for key in state_dict):
        module.snn = skeleton(module.ann, **module._snn_arguments()).train(module.training)
        module.snn.method = module.method  # so that a checkpoint of another method is refused too
