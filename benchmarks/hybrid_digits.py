"""Single-spike hybrid encoding on scikit-learn digits, in both frameworks, with spike and energy counts.

Trains ``snn_ext.lightning.SingleSpikeMLP`` (64-128-10 fire-once SNN, T steps, hybrid input, STDB surrogate,
spike-time + membrane loss) with ``SNNModule`` once with the snnTorch face and once with the SpikingJelly
face from the same seed, and prints test accuracy, hidden spikes per neuron per image and the estimated
energy per image against the same network run as an ANN (``snn_ext.energy.report``). Both faces compute with
the same core, so their rows should agree.

    python benchmarks/hybrid_digits.py --epochs 30 --timesteps 5
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from functools import partial

import lightning as L
import torch

from snn_ext.energy import report
from snn_ext.lightning import DigitsDataModule, SingleSpikeMLP, SNNModule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--timesteps", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # keep the output to the table
    warnings.filterwarnings("ignore", module="lightning")

    print(f"digits, T={args.timesteps}, {args.epochs} epochs, Adam lr {args.lr} (AMSGrad)")
    print("| framework | accuracy | hidden spikes/neuron | SNN pJ | ANN pJ | ANN/SNN | train s |")
    print("|---|---|---|---|---|---|---|")
    for framework in ("snntorch", "spikingjelly"):
        L.seed_everything(args.seed, verbose=False)
        data = DigitsDataModule(batch_size=64, seed=args.seed)
        net = SingleSpikeMLP(framework, timesteps=args.timesteps)
        trainer = L.Trainer(
            max_epochs=args.epochs,
            accelerator="cpu",
            devices=1,
            deterministic=True,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        start = time.perf_counter()
        trainer.fit(SNNModule(net, partial(torch.optim.Adam, lr=args.lr, amsgrad=True)), datamodule=data)
        seconds = time.perf_counter() - start
        r = report(net, [data.test_tensors()])
        print(
            f"| {framework} | {r.accuracy:.4f} | {r.spikes_per_neuron:.3f} | {r.snn_energy_pj:.4g} | "
            f"{r.ann_energy_pj:.4g} | {r.reduction:.2f} | {seconds:.1f} |"
        )
    print("energy: 45 nm fp32 (MAC 4.6 pJ, AC 0.9 pJ); first layer MACs at the analog step, ACs for input spikes")


if __name__ == "__main__":
    main()
