"""A small fire-once SNN with hybrid input learns scikit-learn digits (seeded, a few seconds on 2 CPUs)."""

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from snn_ext.core import clamp_leak_
from snn_ext.core.loss import spike_time_membrane_logits
from snn_ext.snntorch import SingleSpikeLeaky, reset, spikegen

T = 5


class HybridDigitsNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.lif1 = nn.Linear(64, 128), SingleSpikeLeaky()
        self.fc2, self.lif2 = nn.Linear(128, 10), SingleSpikeLeaky()

    def forward(self, images):  # images [B, 64] in [0, 1]
        reset(self)
        x_seq = spikegen.hybrid(images, num_steps=T)
        batch = images.shape[0]
        hidden, _ = self.lif1.forward_sequence(self.fc1(x_seq.flatten(0, 1)).unflatten(0, (T, batch)))
        out, mem = self.lif2.forward_sequence(self.fc2(hidden.flatten(0, 1)).unflatten(0, (T, batch)))
        integrated = mem[-1] + self.lif2.threshold * out.sum(0)  # potential without the reset
        return spike_time_membrane_logits(out, integrated, kappa=1.0), hidden, out


def test_hybrid_single_spike_snn_learns_digits():
    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    train_idx, test_idx = train_test_split(range(len(y)), test_size=0.25, random_state=0, stratify=y)
    net = HybridDigitsNet()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(15):
        order = torch.tensor(train_idx)[torch.randperm(len(train_idx))]
        for batch in order.split(64):
            logits, _, _ = net(x[batch])
            loss = nn.functional.cross_entropy(logits, y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            clamp_leak_(net)
    with torch.no_grad():
        logits, hidden, out = net(x[test_idx])
    accuracy = (logits.argmax(1) == y[test_idx]).float().mean().item()
    assert accuracy >= 0.90, accuracy
    assert hidden.sum(0).max() <= 1
    assert out.sum(0).max() <= 1
    assert 0 < hidden.mean().item() * T <= 1  # spikes per hidden neuron per image
