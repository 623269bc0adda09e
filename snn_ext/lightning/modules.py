"""LightningModules: ``ANNModule`` trains an ANN, ``SNNModule`` fine-tunes an SNN (DIET-SNN style).

Both take any ``net`` mapping images ``[B, ...]`` to logits ``[B, classes]`` and log ``train/loss``,
``train/acc``, ``val/loss``, ``val/acc``, ``test/loss`` and ``test/acc`` (cross-entropy and top-1 accuracy,
averaged over the epoch and, under DDP, over the processes).

Optimizer and learning-rate schedule are injected as callables, as LightningCLI does it: in Python
``optimizer=functools.partial(torch.optim.SGD, lr=0.01, momentum=0.9)``, in a YAML recipe
``optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.01, momentum: 0.9}}``; the same for
``scheduler`` (any ``torch.optim.lr_scheduler`` class, stepped once per epoch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from snn_ext.core import clamp_leak_, clamp_threshold_
from snn_ext.core.neuron import MIN_THRESHOLD
from snn_ext.lightning.converted import ConvertedSNN

__all__ = ["ANNModule", "SNNModule"]

Batch = tuple[torch.Tensor, torch.Tensor]
OptimizerFactory = Callable[[Iterable], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


class _Classifier(L.LightningModule):
    """Cross-entropy classification steps shared by :class:`ANNModule` and :class:`SNNModule`."""

    def __init__(self, net: nn.Module, optimizer: OptimizerFactory, scheduler: SchedulerFactory | None) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, ...]`` -> logits ``[B, classes]``."""
        return self.net(images)

    def _step(self, batch: Batch, stage: str) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(1) == labels).float().mean()
        on_step = stage == "train"
        log = {"on_epoch": True, "batch_size": len(labels), "sync_dist": not on_step}
        self.log(f"{stage}/loss", loss, prog_bar=on_step, on_step=on_step, **log)
        self.log(f"{stage}/acc", accuracy, prog_bar=True, on_step=False, **log)
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = self._step(batch, "train")
        if not torch.isfinite(loss):  # one value read per step (the progress bar reads the loss anyway)
            raise FloatingPointError(
                f"the training loss is {loss.item()} at step {self.global_step} (epoch {self.current_epoch}, batch "
                f"{batch_idx}); stopping before it reaches the weights and the checkpoints. Lower the learning rate "
                "or check the inputs (snn_ext.validate_values() names the first layer that receives NaN or inf)"
            )
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Step, then stop with an error naming the parameter if the step made one non-finite."""
        super().optimizer_step(*args, **kwargs)
        self._after_step()
        parameters = [p for p in self.parameters() if p.requires_grad]
        if parameters and not bool(torch.stack([p.isfinite().all() for p in parameters]).all()):
            bad = [name for name, p in self.named_parameters() if not p.isfinite().all()]
            raise FloatingPointError(
                f"the optimizer step at step {self.global_step} (epoch {self.current_epoch}) made {', '.join(bad)} "
                "NaN or inf; stopping before a checkpoint holds them. Lower the learning rate"
            )

    def _after_step(self) -> None:
        """What the module does to its parameters after every optimizer step, before they are checked."""

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}


class ANNModule(_Classifier):
    """Trains an ANN with cross-entropy.

    Args:
        net: the ANN, images ``[B, ...]`` -> logits ``[B, classes]`` (e.g. :class:`snn_ext.models.VGG`).
        optimizer: ``parameters -> Optimizer``; default ``Adam(lr=1e-3)``.
        scheduler: ``optimizer -> LRScheduler`` (stepped every epoch), e.g. ``CosineAnnealingLR``; default none.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__(net, optimizer or partial(torch.optim.Adam, lr=1e-3), scheduler)
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])


class SNNModule(_Classifier):
    """Fine-tunes an SNN by backpropagation through time (surrogate gradients), as DIET-SNN does.

    Cross-entropy on the SNN's logits; after every optimizer step every leak in ``net`` is clamped into
    ``[0, max_leak]`` (:func:`snn_ext.core.clamp_leak_`) and every threshold to at least ``min_threshold``
    (:func:`snn_ext.core.clamp_threshold_`); the number of clamped values is logged as ``train/clamped`` per
    epoch. Weights, leaks and thresholds are all trained. A non-finite loss or parameter stops training with a
    ``FloatingPointError`` naming the step (and the parameter), so no checkpoint holds NaN.
    Dropout layers converted from the ANN draw one mask per sample and keep it for all ``T`` steps
    (:class:`~snn_ext.conversion.SequenceDropout`).

    Args:
        net: the SNN, images ``[B, ...]`` -> logits ``[B, classes]``: a
            :class:`~snn_ext.conversion.SpikingModel` from ``snn_ext.convert``, a
            :class:`~snn_ext.lightning.ConvertedSNN` (converted from an ANN checkpoint when the Trainer
            sets the module up, with calibration batches from the DataModule), or any module with snn-ext
            neurons.
        optimizer: ``parameters -> Optimizer``; default DIET-SNN's ``Adam(lr=1e-4, amsgrad=True)``.
        scheduler: ``optimizer -> LRScheduler`` (stepped every epoch); default none.
        timesteps: if given, sets ``net.timesteps`` (the net must have that attribute).
        max_leak: upper bound of the leaks after each step (the lower bound is 0).
        min_threshold: lower bound of the thresholds after each step (> 0; in the potential's unit).

    ``net`` is put in training mode (``snn_ext.convert`` returns it in eval mode when the ANN was).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        timesteps: int | None = None,
        max_leak: float = 1.0,
        min_threshold: float = MIN_THRESHOLD,
    ) -> None:
        super().__init__(net, optimizer or partial(torch.optim.Adam, lr=1e-4, amsgrad=True), scheduler)
        if not min_threshold > 0:
            raise ValueError(f"min_threshold must be > 0, got {min_threshold!r}")
        if not 0 < max_leak <= 1:
            raise ValueError(f"max_leak must lie in (0, 1], got {max_leak!r}")
        self._clamped = torch.zeros((), dtype=torch.int64)
        if timesteps is not None:
            if not hasattr(net, "timesteps"):
                raise TypeError(f"timesteps={timesteps} given but {type(net).__name__} has no 'timesteps' attribute")
            net.timesteps = timesteps
        net.train()  # converted models come out of `snn_ext.convert` in eval mode, like the ANN they copy
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])

    def setup(self, stage: str) -> None:
        """Convert a :class:`~snn_ext.lightning.ConvertedSNN` ``net`` (once) from the DataModule's batches."""
        if isinstance(self.net, ConvertedSNN) and not self.net.built:
            datamodule = getattr(self.trainer, "datamodule", None)
            if datamodule is None:
                raise RuntimeError(
                    "SNNModule with a ConvertedSNN net needs a DataModule: trainer.fit(module, datamodule=...)"
                )
            # The training set in order, unsharded: every DDP process calibrates on the same images.
            training = datamodule.train_dataloader()
            calibration = DataLoader(training.dataset, batch_size=training.batch_size)
            self.net.build(calibration, self.trainer.strategy.root_device)
            self.net.train(self.training)

    def _after_step(self) -> None:
        """Clamp leaks and thresholds (before any callback, e.g. a checkpoint, sees the weights) and count."""
        clamped = clamp_leak_(self.net, self.hparams.max_leak) + clamp_threshold_(self.net, self.hparams.min_threshold)
        self._clamped = self._clamped.to(clamped.device) + clamped

    def on_train_epoch_end(self) -> None:
        self.log("train/clamped", self._clamped.float(), reduce_fx="sum", sync_dist=True)
        self._clamped = torch.zeros_like(self._clamped)
