"""Lightning callbacks: ``SpikeMonitor`` logs spikes per neuron and energy per image of each eval epoch."""

from __future__ import annotations

import dataclasses
from typing import Any

import lightning as L
import torch
from torch import nn

from snn_ext.core.checks import check_num_steps
from snn_ext.core.energy import EnergyTable, LayerOps, OpCounter
from snn_ext.energy import DEFAULT_TABLE, EnergyReport

__all__ = ["SpikeMonitor"]

_COUNTS = tuple(f.name for f in dataclasses.fields(LayerOps))


class SpikeMonitor(L.Callback):
    """Count spikes and synaptic operations over each validation/test epoch and log them per image.

    At the start of a validation (or test) epoch, :class:`~snn_ext.core.energy.OpCounter` hooks every
    Conv/Linear layer of ``pl_module.net`` (or of ``pl_module`` when it has no ``net``); at the end the hooks
    are removed and these are logged with ``pl_module.log`` (so every logger gets them), computed by
    :class:`snn_ext.energy.EnergyReport` exactly as :func:`snn_ext.energy.report` does on the same batches:

    * ``val/spikes_per_neuron`` -- hidden neurons' spikes per neuron per image, summed over ``T`` (the inputs
      of every layer after the first; progress bar);
    * ``val/energy_pj`` -- SNN energy per image in picojoules (analog input as MACs, spikes as
      ``spikes * fan-out`` ACs; progress bar);
    * ``val/spike_rate/<layer>`` -- for each layer after the first, the spikes arriving at it per input
      neuron per image, summed over ``T`` (DIET-SNN's spike rate; not on the progress bar);

    and the same under ``test/`` during ``trainer.test``. Training steps are not hooked and the sanity
    check is not counted. Values are per image over all the epoch's batches, on all processes.

    Args:
        table: energy per operation in pJ (default 45 nm fp32: MAC 4.6, AC 0.9).
        timesteps: ``T``; default ``pl_module.net.timesteps`` when present, else 1 (an ANN).
    """

    def __init__(self, table: EnergyTable = DEFAULT_TABLE, timesteps: int | None = None) -> None:
        if not isinstance(table, EnergyTable):
            raise TypeError(f"table must be an EnergyTable, got {type(table).__name__}")
        if timesteps is not None:
            check_num_steps(timesteps, 1, "timesteps")
        self.table = table
        self.timesteps = timesteps
        self._counter: OpCounter | None = None
        self._images = 0

    @staticmethod
    def _net(pl_module: L.LightningModule) -> nn.Module:
        net = getattr(pl_module, "net", None)
        return net if isinstance(net, nn.Module) else pl_module

    def _start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop()
        if trainer.sanity_checking:  # Lightning discards what the sanity check logs
            return
        self._counter = OpCounter(self._net(pl_module), self.table).__enter__()
        self._images = 0

    def _stop(self) -> None:
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self._counter = None

    def _count_images(self, batch: Any) -> None:
        if self._counter is not None:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            self._images += len(x)

    def _report(self, trainer: L.Trainer, pl_module: L.LightningModule, counter: OpCounter) -> EnergyReport | None:
        # Under DDP every process counted its own shard. Sum the integer counts over processes first and
        # divide once: a ratio of sums is the value over all images, whereas averaging per-process ratios
        # (`sync_dist=True` on the ratios, mean) would weight shards of different sizes equally.
        # `strategy.reduce` is the identity on a single device.
        names = list(counter.layers)
        rows = [[getattr(counter.layers[name], count) for count in _COUNTS] for name in names]
        rows.append([self._images] + [0] * (len(_COUNTS) - 1))
        counts = torch.tensor(rows, dtype=torch.int64, device=pl_module.device)
        counts = trainer.strategy.reduce(counts, reduce_op="sum").tolist()
        images = counts.pop()[0]
        if images == 0:
            return None
        layers = {
            name: LayerOps(**dict(zip(_COUNTS, row, strict=True))) for name, row in zip(names, counts, strict=True)
        }
        timesteps = self.timesteps or getattr(self._net(pl_module), "timesteps", 1)
        return EnergyReport.from_counts(layers, images, timesteps, self.table)

    def _finish(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        counter = self._counter
        if counter is None:
            return
        self._stop()
        report = self._report(trainer, pl_module, counter)
        if report is None:
            return

        def log(name: str, value: float, prog_bar: bool) -> None:
            # The values are already equal on every process (reduced counts above); sync_dist with "max"
            # keeps them exactly and tells Lightning they are synchronised (no per-rank warning).
            pl_module.log(name, value, prog_bar=prog_bar, on_step=False, on_epoch=True, sync_dist=True, reduce_fx="max")

        log(f"{stage}/spikes_per_neuron", report.spikes_per_neuron, prog_bar=True)
        log(f"{stage}/energy_pj", report.snn_energy_pj, prog_bar=True)
        for layer in report.hidden:
            log(f"{stage}/spike_rate/{layer.name}", layer.spikes_per_neuron, prog_bar=False)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(trainer, pl_module)

    def on_validation_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._count_images(batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish(trainer, pl_module, "val")

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start(trainer, pl_module)

    def on_test_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._count_images(batch)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finish(trainer, pl_module, "test")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._stop()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._stop()

    def __getstate__(self) -> dict[str, Any]:  # hooks are not picklable (ddp_spawn, checkpoints)
        return self.__dict__ | {"_counter": None, "_images": 0}
