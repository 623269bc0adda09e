"""LightningModules: ``ANNModule`` trains an ANN, ``SNNModule`` fine-tunes an SNN (DIET-SNN style).

Both take any ``net`` mapping images ``[B, ...]`` to logits ``[B, classes]`` and log ``train/loss``,
``train/acc``, ``val/loss``, ``val/acc``, ``test/loss`` and ``test/acc`` (cross-entropy and top-1 accuracy,
averaged over the epoch).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn
from torch.nn import functional as F

from snn_ext.core import clamp_leak_

__all__ = ["ANNModule", "SNNModule"]

Batch = tuple[torch.Tensor, torch.Tensor]


class _Classifier(L.LightningModule):
    """Cross-entropy classification steps shared by :class:`ANNModule` and :class:`SNNModule`."""

    def __init__(self, net: nn.Module, lr: float, weight_decay: float) -> None:
        super().__init__()
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, ...]`` -> logits ``[B, classes]``."""
        return self.net(images)

    def _step(self, batch: Batch, stage: str) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        accuracy = (logits.argmax(1) == labels).float().mean()
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, prog_bar=on_step, on_step=on_step, on_epoch=True, batch_size=len(labels))
        self.log(f"{stage}/acc", accuracy, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(labels))
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "test")


class ANNModule(_Classifier):
    """Trains an ANN with cross-entropy and Adam.

    Args:
        net: the ANN, images ``[B, ...]`` -> logits ``[B, classes]`` (e.g. :class:`snn_ext.models.VGG`).
        lr: Adam learning rate.
        weight_decay: Adam (L2) weight decay.
        max_epochs: if given, the learning rate follows a cosine schedule to 0 over this many epochs;
            otherwise it is constant.
    """

    def __init__(self, net: nn.Module, lr: float = 3e-3, weight_decay: float = 0.0, max_epochs: int | None = None):
        super().__init__(net, lr, weight_decay)
        self.save_hyperparameters(ignore=["net"])

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.net.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if not self.hparams.max_epochs:
            return optimizer
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.hparams.max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}


class SNNModule(_Classifier):
    """Fine-tunes an SNN by backpropagation through time (surrogate gradients), as DIET-SNN does.

    Cross-entropy on the SNN's logits; Adam with AMSGrad (DIET-SNN: lr 1e-4); after every optimizer step
    every leak in ``net`` is clamped to at most 1 (:func:`snn_ext.core.clamp_leak_`). Weights, leaks and
    thresholds are all trained.

    Args:
        net: the SNN, images ``[B, ...]`` -> logits ``[B, classes]``: a
            :class:`~snn_ext.conversion.SpikingModel` from ``snn_ext.convert`` or any module with
            snn-ext neurons.
        timesteps: if given, sets ``net.timesteps`` (the net must have that attribute).
        lr: Adam learning rate.
        weight_decay: Adam (L2) weight decay.
        amsgrad: use AMSGrad (DIET-SNN: yes).
        max_leak: upper bound of the leaks after each step.

    ``net`` is put in training mode (``snn_ext.convert`` returns it in eval mode when the ANN was).
    """

    def __init__(
        self,
        net: nn.Module,
        timesteps: int | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        amsgrad: bool = True,
        max_leak: float = 1.0,
    ) -> None:
        super().__init__(net, lr, weight_decay)
        if timesteps is not None:
            if not hasattr(net, "timesteps"):
                raise TypeError(f"timesteps={timesteps} given but {type(net).__name__} has no 'timesteps' attribute")
            net.timesteps = timesteps
        net.train()  # converted models come out of `snn_ext.convert` in eval mode, like the ANN they copy
        self.save_hyperparameters(ignore=["net"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.Adam(self.net.parameters(), lr=hp.lr, weight_decay=hp.weight_decay, amsgrad=hp.amsgrad)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Clamp every leak to ``max_leak`` (runs after the batch's optimizer step)."""
        clamp_leak_(self.net, self.hparams.max_leak)
