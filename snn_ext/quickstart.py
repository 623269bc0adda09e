"""``snn-ext quickstart``: offline, on the embedded digits, the whole pipeline in a few minutes on a CPU:
train an ANN (Lightning), convert it (distribution-aware at T=2, DIET percentile at T=5), fine-tune the
percentile SNN at T=5 (DIET-SNN, :class:`~snn_ext.lightning.SNNModule`), train the single-spike hybrid
SNN, then print one table (accuracy, spikes per neuron, energy) and write ``results.json`` and PNG plots.

Spikes per neuron and energy come from :func:`snn_ext.energy.report` on the test split: the spikes arriving
at every synaptic layer after the first (= the spikes emitted by the hidden neurons; the input encoding's
spikes are not counted), divided by the number of those neurons, per test image (summed over the T steps);
energy per test image with the 45 nm model (MAC 4.6 pJ, AC 0.9 pJ); the first layer costs MACs at the analog
steps (direct encoding: every step; hybrid: step 0 only).
"""

from __future__ import annotations

import copy
import json
import logging
import time
import warnings
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snn_ext.conversion.spiking_model import TARGETS, check_target

__all__ = ["FRAMEWORKS", "QuickstartConfig", "Row", "check_output", "quickstart", "train_digits_ann"]

FRAMEWORKS = TARGETS


@dataclass
class Row:
    """One line of the quickstart table (energy per test image)."""

    method: str
    framework: str
    timesteps: int | None
    accuracy: float
    spikes_per_neuron: float | None
    energy_pj: float
    energy_ratio: float


@dataclass
class _Measure:
    accuracy: float
    spikes_per_neuron: float
    energy_pj: float
    layer_rates: dict[str, float]


def _measure(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> _Measure:
    """Accuracy, hidden spikes per neuron per image, energy per image (pJ), spike rate per hidden layer."""
    from snn_ext.energy import report

    r = report(net, [(x, y)])
    return _Measure(
        accuracy=r.accuracy,
        spikes_per_neuron=r.spikes_per_neuron,
        energy_pj=r.snn_energy_pj,
        layer_rates={layer.name: layer.spikes_per_neuron / r.timesteps for layer in r.layers[1:]},
    )


def _trainer(output: Path | None, name: str, epochs: int, progress: bool) -> Any:
    """A deterministic single-CPU Trainer with CSV logs in ``output/logs/name`` (no logs when ``output`` is None)."""
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    return L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        logger=False if output is None else CSVLogger(output, name="logs", version=name),
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
        num_sanity_val_steps=0,
        deterministic=True,
        log_every_n_steps=5,
    )


def _row(method: str, framework: str, steps: int | None, m: _Measure, reference_pj: float, spiking: bool) -> Row:
    return Row(
        method=method,
        framework=framework,
        timesteps=steps,
        accuracy=round(m.accuracy, 4),
        spikes_per_neuron=round(m.spikes_per_neuron, 4) if spiking else None,
        energy_pj=round(m.energy_pj, 1),
        energy_ratio=round(m.energy_pj / reference_pj, 4),
    )


def _format_table(rows: list[Row]) -> str:
    header = (
        f"{'method':<22}{'framework':<14}{'T':>3}{'accuracy':>10}{'spikes/neuron':>15}{'energy pJ':>13}{'ratio':>8}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        steps = "-" if r.timesteps is None else str(r.timesteps)
        spikes = "-" if r.spikes_per_neuron is None else f"{r.spikes_per_neuron:.3f}"
        lines.append(
            f"{r.method:<22}{r.framework:<14}{steps:>3}{r.accuracy:>10.4f}{spikes:>15}{r.energy_pj:>13.4g}"
            f"{r.energy_ratio:>8.3f}"
        )
    return "\n".join(lines)


def _plot(
    output: Path, sweep: dict[str, dict[int, float]], rows: list[Row], rates: dict[str, dict[str, float]]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for method, points in sweep.items():
        axis.plot(list(points), list(points.values()), marker="o", label=f"{method} (converted)")
    for r in rows:
        if r.timesteps is None:
            axis.axhline(r.accuracy, linestyle="--", color="black" if "vgg" in r.method else "gray", label=r.method)
        elif r.method not in sweep:
            axis.plot([r.timesteps], [r.accuracy], marker="*", markersize=10, linestyle="none", label=r.method)
    axis.set(xlabel="time steps T", ylabel="test accuracy", title="digits: accuracy vs T", ylim=(0, 1.02))
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(output / "accuracy_vs_timesteps.png", dpi=120)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(6, 4))
    for method, layers in rates.items():
        axis.plot(range(1, len(layers) + 1), list(layers.values()), marker="o", label=method)
    axis.xaxis.get_major_locator().set_params(integer=True)
    axis.set(xlabel="hidden spiking layer", ylabel="spikes per neuron per step", title="digits: per-layer spike rate")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(output / "spike_rates.png", dpi=120)
    plt.close(figure)


@dataclass
class QuickstartConfig:
    """Options of :func:`quickstart` (the ``snn-ext quickstart`` flags)."""

    framework: str = "snntorch"
    seed: int = 0
    output: Path = Path("quickstart")
    ann_epochs: int = 20
    finetune_epochs: int = 5
    hybrid_epochs: int = 30
    scaling_factor: float = 0.7
    """Of the T=5 percentile conversion; best for this ANN (2026-12-03, T=5: 0.5 -> 0.8733, 0.6 -> 0.9556,
    0.7 -> 0.9689, 0.8 -> 0.9533, 1.0 -> 0.8267)."""
    sweep: tuple[int, ...] = (1, 2, 3, 4, 5, 8)
    progress: bool = True
    overwrite: bool = False
    """Replace the files of an earlier run in ``output`` (otherwise a non-empty ``output`` is refused)."""

    def __post_init__(self) -> None:
        """Check every option now, before anything trains (the messages name the ``snn-ext quickstart`` flags)."""
        check_target(self.framework, "framework")
        for name in ("ann_epochs", "finetune_epochs", "hybrid_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")
        if isinstance(self.scaling_factor, bool) or not isinstance(self.scaling_factor, (int, float)):
            raise ValueError(f"--scaling-factor must be a number > 0, got {self.scaling_factor!r}")
        if not 0 < self.scaling_factor < float("inf"):
            raise ValueError(f"--scaling-factor must be a number > 0, got {self.scaling_factor!r}")
        sweep = tuple(self.sweep)
        if not sweep or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in sweep):
            raise ValueError(f"--sweep takes time-step counts, integers >= 1, got {list(sweep)!r}")
        self.sweep = sweep
        self.output = Path(self.output)


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse to write into a folder that holds files already, unless ``overwrite`` (no earlier result is lost)."""
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} is a file, not a folder")
    if not overwrite and output.is_dir() and any(output.iterdir()):
        raise ValueError(
            f"--output {output} holds files of an earlier run (results.json, plots, logs); pass another --output, "
            "or --overwrite to replace them"
        )


def train_digits_ann(data: Any, epochs: int, output: Path | None = None, progress: bool = False) -> nn.Module:
    """The quickstart's ANN, trained on ``data`` (a :class:`~snn_ext.lightning.DigitsDataModule`); eval mode.

    ``VGG("vgg_small")`` with BatchNorm, biases and ``ClippedReLU`` (images ``[B, 1, 8, 8]`` -> logits
    ``[B, 10]``), Adam lr 3e-3 with a cosine schedule over ``epochs``, batch size from ``data``. Seed first
    (``lightning.seed_everything``) for a reproducible net. CSV logs go to ``output/logs/ann`` when given.
    """
    from snn_ext.lightning import ANNModule
    from snn_ext.models import VGG

    ann = VGG("vgg_small", 10, 1, 8, activation="clipped_relu", batch_norm=True, bias=True)
    optimizer = partial(torch.optim.Adam, lr=3e-3)
    module = ANNModule(ann, optimizer, partial(torch.optim.lr_scheduler.CosineAnnealingLR, T_max=epochs))
    _trainer(output, "ann", epochs, progress).fit(module, datamodule=data)
    return ann.eval()


def _conversion_rows(cfg: QuickstartConfig, data: Any, ann: nn.Module) -> tuple[list[Row], dict, dict, nn.Module]:
    """ANN row, distribution-aware T=2, percentile T=5, the T sweep, and the percentile SNN (for fine-tuning)."""
    import snn_ext

    x, y = data.test_tensors()
    calibration = data.calibration_batches()
    options: dict[str, dict[str, float]] = {
        "distribution_aware": {},
        "percentile": {"scaling_factor": cfg.scaling_factor},
    }
    cache: dict[tuple[str, int], nn.Module] = {}

    def convert(method: str, steps: int) -> nn.Module:
        if (method, steps) not in cache:
            cache[method, steps] = snn_ext.convert(ann, calibration, method, steps, cfg.framework, **options[method])
        return cache[method, steps]

    ann_m = _measure(ann, x, y)
    rows = [_row("ann (vgg_small)", "torch", None, ann_m, ann_m.energy_pj, spiking=False)]
    rates: dict[str, dict[str, float]] = {}
    for method, steps in (("distribution_aware", 2), ("percentile", 5)):
        m = _measure(convert(method, steps), x, y)
        rows.append(_row(method, cfg.framework, steps, m, ann_m.energy_pj, spiking=True))
        rates[f"{method} T={steps}"] = m.layer_rates
    sweep = {method: {t: _measure(convert(method, t), x, y).accuracy for t in cfg.sweep} for method in options}
    percentile_snn = copy.deepcopy(convert("percentile", 5))
    return rows, sweep, rates, percentile_snn


def _quiet_lightning() -> None:
    """Hide Lightning's notices that do not concern the user of the quickstart (progress bars stay)."""
    for message in (".*does not have many workers.*", ".*LeafSpec.*", ".*smaller than the logging interval.*"):
        warnings.filterwarnings("ignore", message=message)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)


def quickstart(cfg: QuickstartConfig) -> list[Row]:
    """Run the whole digits pipeline, print the table, write ``results.json`` and the plots to ``cfg.output``."""
    import lightning as L

    from snn_ext.lightning import DigitsDataModule, SingleSpikeMLP, SNNModule

    check_output(cfg.output, cfg.overwrite)
    cfg.output.mkdir(parents=True, exist_ok=True)
    _quiet_lightning()
    start = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    data = DigitsDataModule(batch_size=64, seed=cfg.seed)
    x, y = data.test_tensors()
    ann = train_digits_ann(data, cfg.ann_epochs, cfg.output, cfg.progress)
    rows, sweep, rates, snn = _conversion_rows(cfg, data, ann)
    ann_pj = rows[0].energy_pj

    snn.train()
    _trainer(cfg.output, "diet_snn", cfg.finetune_epochs, cfg.progress).fit(
        SNNModule(snn, timesteps=5), datamodule=data
    )
    m = _measure(snn, x, y)
    rows.append(_row("diet_snn (fine-tuned)", cfg.framework, 5, m, ann_pj, spiking=True))
    rates["diet_snn T=5"] = m.layer_rates

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    hybrid = SingleSpikeMLP(cfg.framework, timesteps=5)
    _trainer(cfg.output, "hybrid", cfg.hybrid_epochs, cfg.progress).fit(
        SNNModule(hybrid, partial(torch.optim.Adam, lr=1e-3, amsgrad=True)), datamodule=data
    )
    mlp_m = _measure(hybrid.ann(), x, y)
    m = _measure(hybrid, x, y)
    rows.append(_row("ann (mlp 64-128-10)", "torch", None, mlp_m, mlp_m.energy_pj, spiking=False))
    rows.append(_row("hybrid_single_spike", cfg.framework, 5, m, mlp_m.energy_pj, spiking=True))
    rates["hybrid_single_spike T=5"] = m.layer_rates

    print(_format_table(rows))
    print(
        "energy per test image, 45 nm fp32 (MAC 4.6 pJ, AC 0.9 pJ); first layer: MACs at analog steps; "
        "ratio: to the ANN of the same architecture (hybrid: the MLP with ReLU, its ANN row is the reference; "
        "its accuracy uses the SNN's weights, untrained as an ANN)"
    )
    (cfg.output / "results.json").write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    _plot(cfg.output, sweep, rows, rates)
    print(f"wrote {cfg.output / 'results.json'}, accuracy_vs_timesteps.png, spike_rates.png "
          f"in {time.perf_counter() - start:.0f} s")  # fmt: skip
    return rows
