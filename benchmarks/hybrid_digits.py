"""Single-spike hybrid encoding on scikit-learn digits, in both frameworks, with spike and energy counts.

Trains the same two-layer fire-once SNN (64-128-10, T steps, hybrid input, STDB surrogate, spike-time +
membrane loss) with the snnTorch face and with the SpikingJelly face from one seed, and prints test
accuracy, spikes per neuron per image and the estimated energy against the same MLP run as an ANN.

    python benchmarks/hybrid_digits.py --epochs 30 --timesteps 5
"""

from __future__ import annotations

import argparse
import time

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from snn_ext.core import clamp_leak_
from snn_ext.core.encoding import hybrid
from snn_ext.core.energy import OpCounter
from snn_ext.core.loss import spike_time_membrane_logits


def build(framework: str) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
    """fc1, neuron1, fc2, neuron2 of the given face (neurons run whole sequences)."""
    fc1, fc2 = nn.Linear(64, 128), nn.Linear(128, 10)
    if framework == "snntorch":
        from snn_ext.snntorch import SingleSpikeLeaky

        return fc1, SingleSpikeLeaky(), fc2, SingleSpikeLeaky()
    from snn_ext.spikingjelly import SingleSpikeLIFNode

    return fc1, SingleSpikeLIFNode(step_mode="m"), fc2, SingleSpikeLIFNode(step_mode="m")


class Net(nn.Module):
    def __init__(self, framework: str, timesteps: int) -> None:
        super().__init__()
        self.framework, self.timesteps = framework, timesteps
        self.fc1, self.n1, self.fc2, self.n2 = build(framework)

    def _neuron(self, neuron: nn.Module, current: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.framework == "snntorch":
            neuron.reset_mem()  # a new sequence per batch
            return neuron.forward_sequence(current)
        neuron.reset()
        neuron.store_v_seq = True
        return neuron(current), neuron.v_seq

    def forward(self, images: torch.Tensor):
        steps, batch = self.timesteps, images.shape[0]
        x_seq = hybrid(images, steps).flatten(0, 1)
        hidden, _ = self._neuron(self.n1, self.fc1(x_seq).unflatten(0, (steps, batch)))
        out, mem = self._neuron(self.n2, self.fc2(hidden.flatten(0, 1)).unflatten(0, (steps, batch)))
        threshold = self.n2.threshold if self.framework == "snntorch" else self.n2.v_threshold
        integrated = mem[-1] + threshold * out.sum(0)
        return spike_time_membrane_logits(out, integrated), hidden, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--timesteps", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    train_idx, test_idx = train_test_split(range(len(y)), test_size=0.25, random_state=0, stratify=y)
    print(f"digits: {len(train_idx)} train / {len(test_idx)} test, T={args.timesteps}, {args.epochs} epochs")
    print(f"{'framework':<13}{'accuracy':>9}{'spk/neuron L1':>15}{'spk/neuron out':>16}{'energy pJ':>12}"
          f"{'ANN pJ':>10}{'ANN/SNN':>9}{'time s':>8}")  # fmt: skip
    for framework in ("snntorch", "spikingjelly"):
        torch.manual_seed(args.seed)
        net = Net(framework, args.timesteps)
        optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
        start = time.perf_counter()
        for _ in range(args.epochs):
            order = torch.tensor(train_idx)[torch.randperm(len(train_idx))]
            for batch in order.split(64):
                logits, _, _ = net(x[batch])
                loss = nn.functional.cross_entropy(logits, y[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                clamp_leak_(net)
        seconds = time.perf_counter() - start
        with torch.no_grad(), OpCounter(net) as ops:
            logits, hidden, out = net(x[test_idx])
        ann = nn.Sequential(net.fc1, nn.ReLU(), net.fc2)
        with torch.no_grad(), OpCounter(ann) as ann_ops:
            ann(x[test_idx])
        accuracy = (logits.argmax(1) == y[test_idx]).float().mean().item()
        snn_pj, ann_pj = ops.energy_pj(), ann_ops.energy_pj()
        print(f"{framework:<13}{accuracy:>9.4f}{hidden.sum(0).mean().item():>15.3f}{out.sum(0).mean().item():>16.3f}"
              f"{snn_pj:>12.3g}{ann_pj:>10.3g}{ann_pj / snn_pj:>9.2f}{seconds:>8.1f}")  # fmt: skip
    print("energy: 45 nm fp32 (MAC 4.6 pJ, AC 0.9 pJ); first layer MACs at the analog step, ACs for input spikes")


if __name__ == "__main__":
    main()
