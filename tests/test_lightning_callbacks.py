"""SpikeMonitor: logs spikes per neuron, energy and per-layer spike rates that agree with snn_ext.energy.report."""

import csv

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn

import snn_ext
from snn_ext.energy import EnergyTable, report
from snn_ext.lightning import ANNModule, DigitsDataModule, SNNModule
from snn_ext.lightning.callbacks import SpikeMonitor

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*does not have many workers.*", "ignore:.*smaller than the logging interval.*", "ignore:.*LeafSpec.*"
)


def tiny_ann() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 16),
        nn.ReLU(),
        nn.Linear(16, 10),
    ).eval()


class HooksDuringTraining(L.Callback):
    """Records how many forward hooks the net's layers carry at each training step."""

    def __init__(self):
        self.seen: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append(sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in pl_module.net.modules()))


def run(module: L.LightningModule, tmp_path, monitor: SpikeMonitor) -> tuple[L.Trainer, DigitsDataModule, list]:
    data = DigitsDataModule(batch_size=32)
    probe = HooksDuringTraining()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=2,
        limit_test_batches=2,
        logger=CSVLogger(tmp_path, name="logs", version="run"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[monitor, probe],
    )
    trainer.fit(module, datamodule=data)
    return trainer, data, probe.seen


def csv_metrics(tmp_path) -> list[dict[str, str]]:
    with open(tmp_path / "logs" / "run" / "metrics.csv") as file:
        return list(csv.DictReader(file))


def test_snn_validation_and_test_metrics_match_report(tmp_path):
    ann = tiny_ann()
    data = DigitsDataModule(batch_size=32)
    snn = snn_ext.convert(ann, data.calibration_batches(), "percentile", 3)
    module = SNNModule(snn)
    trainer, data, hooks_in_training = run(module, tmp_path, SpikeMonitor())
    assert hooks_in_training == [0, 0]  # training steps are not counted
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in snn.modules())  # removed after the epoch

    expected = report(snn, data.val_dataloader(), max_batches=2)
    assert expected.images == 64
    hidden = ["graph.4", "graph.6"]
    assert [layer.name for layer in expected.hidden] == hidden
    metrics = trainer.callback_metrics
    assert float(metrics["val/spikes_per_neuron"]) == pytest.approx(expected.spikes_per_neuron, rel=1e-5)
    assert float(metrics["val/energy_pj"]) == pytest.approx(expected.snn_energy_pj, rel=1e-5)
    assert expected.spikes_per_neuron > 0
    for layer in expected.hidden:
        assert float(metrics[f"val/spike_rate/{layer.name}"]) == pytest.approx(layer.spikes_per_neuron, rel=1e-5)
    assert {"val/spikes_per_neuron", "val/energy_pj"} <= set(trainer.progress_bar_metrics)
    assert not any(key.startswith("val/spike_rate") for key in trainer.progress_bar_metrics)

    rows = [row for row in csv_metrics(tmp_path) if row.get("val/energy_pj")]
    assert len(rows) == 1
    assert float(rows[0]["val/energy_pj"]) == pytest.approx(expected.snn_energy_pj, rel=1e-5)
    assert float(rows[0]["val/spike_rate/graph.4"]) == pytest.approx(expected.layers[1].spikes_per_neuron, rel=1e-5)

    trainer.test(module, datamodule=data, verbose=False)
    assert float(trainer.callback_metrics["test/energy_pj"]) == pytest.approx(expected.snn_energy_pj, rel=1e-5)
    assert float(trainer.callback_metrics["test/spikes_per_neuron"]) == pytest.approx(
        expected.spikes_per_neuron, rel=1e-5
    )


def test_ann_logs_its_dense_energy_with_a_custom_table(tmp_path):
    ann = tiny_ann().train()
    table = EnergyTable(mac_pj=3.2, ac_pj=0.1)
    trainer, data, _ = run(ANNModule(ann), tmp_path, SpikeMonitor(table=table))
    expected = report(ann, data.val_dataloader(), max_batches=2, table=table)
    assert expected.timesteps == 1
    assert expected.snn_energy_pj == pytest.approx((4 * 64 * 9 + 16 * 64 + 10 * 16) * 3.2)
    assert float(trainer.callback_metrics["val/energy_pj"]) == pytest.approx(expected.snn_energy_pj, rel=1e-5)
    assert float(trainer.callback_metrics["val/spikes_per_neuron"]) == 0.0
    assert "val/energy_pj" in csv_metrics(tmp_path)[0]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"timesteps": 0}, ValueError, "timesteps must be an integer >= 1, got 0"),
        ({"table": 4.6}, TypeError, "table must be an EnergyTable"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SpikeMonitor(**kwargs)
