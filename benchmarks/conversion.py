"""Conversion accuracy vs time steps on scikit-learn digits: snn-ext's three methods vs SpikingJelly's recipes.

Trains the quickstart's ANN (VGG "vgg_small" with BatchNorm and ClippedReLU, folded/read at conversion;
``snn_ext.quickstart.train_digits_ann``, Lightning), then
converts it with ``max``, ``percentile`` (DIET-SNN, 99.7th percentile, scaling factor 1.0) and
``distribution_aware`` (Datta & Beerel) for every T, next to SpikingJelly's ``RateCodingRecipe`` in modes
'Max' and '99.9%' on the same weights (ClippedReLU replaced by ReLU, which SpikingJelly requires). Prints a
table and saves a PNG plot of accuracy vs T.

    python benchmarks/conversion.py --output conversion.png
"""

from __future__ import annotations

import argparse
import time

import matplotlib

matplotlib.use("Agg")
import lightning as L  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import snn_ext  # noqa: E402
from snn_ext.lightning import DigitsDataModule  # noqa: E402
from snn_ext.quickstart import train_digits_ann  # noqa: E402
from snn_ext.spikingjelly.baselines import rate_coding_logits  # noqa: E402

OURS = ("max", "percentile", "distribution_aware")
SPIKINGJELLY = ("Max", "99.9%")


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timesteps", type=int, nargs="+", default=[1, 2, 3, 4, 5, 8])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", choices=("snntorch", "spikingjelly"), default="snntorch")
    parser.add_argument("--output", default="conversion_digits.png", help="PNG plot path")
    args = parser.parse_args()

    L.seed_everything(args.seed, verbose=False)
    data = DigitsDataModule(batch_size=64, seed=args.seed)
    start = time.perf_counter()
    ann = train_digits_ann(data, args.epochs)
    calibration = data.calibration_batches()
    x_test, y_test = data.test_tensors()
    with torch.no_grad():
        ann_accuracy = accuracy(ann(x_test), y_test)
    print(f"ANN (vgg_small, BN folded, ClippedReLU): test accuracy {ann_accuracy:.4f}, "
          f"trained in {time.perf_counter() - start:.1f} s; target {args.target}")  # fmt: skip

    results: dict[str, list[float]] = {}
    for method in OURS:
        results[method] = []
        for steps in args.timesteps:
            snn = snn_ext.convert(ann, calibration, method=method, timesteps=steps, target=args.target)
            with torch.no_grad():
                results[method].append(accuracy(snn(x_test), y_test))
    for mode in SPIKINGJELLY:
        results[f"SpikingJelly {mode}"] = [
            accuracy(rate_coding_logits(ann, calibration, x_test, mode, steps), y_test) for steps in args.timesteps
        ]

    header = f"{'method':<24}" + "".join(f"{'T=' + str(t):>8}" for t in args.timesteps)
    print(header)
    for name, values in results.items():
        print(f"{name:<24}" + "".join(f"{v:>8.4f}" for v in values))

    figure, axis = plt.subplots(figsize=(6, 4))
    for name, values in results.items():
        axis.plot(args.timesteps, values, marker="o", label=name)
    axis.axhline(ann_accuracy, color="black", linestyle="--", label="ANN")
    axis.set(xlabel="time steps T", ylabel="test accuracy", title="ANN-to-SNN conversion on digits", ylim=(0, 1))
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(args.output, dpi=120)
    print(f"plot: {args.output}")


if __name__ == "__main__":
    main()
