"""Small ANNs for the conversion tests, with weights that give O(1) activations."""

from __future__ import annotations

import torch
from torch import nn

from snn_ext.models import ClippedReLU


class SmallCNN(nn.Module):
    """conv-BN-ReLU-avgpool-conv-act-pool-linear-ReLU-dropout-linear on ``[B, 1, 8, 8]`` images.

    Args:
        second_activation: the second activation, e.g. ``ClippedReLU(1.5)`` or ``nn.ReLU()``.
        second_pool: the second 2x2 pooling, ``nn.AvgPool2d`` or ``nn.MaxPool2d``.
        dropout: the dropout probability before the classifier.
        classes: outputs.
    """

    def __init__(
        self,
        second_activation: nn.Module | None = None,
        second_pool: type[nn.Module] = nn.AvgPool2d,
        dropout: float = 0.5,
        classes: int = 4,
    ) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1, self.bn1, self.act1 = nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU()
        self.pool1 = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.act2 = ClippedReLU(1.5) if second_activation is None else second_activation
        self.pool2, self.flatten = second_pool(2), nn.Flatten()
        self.fc1, self.act3, self.drop = nn.Linear(32, 16), nn.ReLU(), nn.Dropout(dropout)
        self.fc2 = nn.Linear(16, classes)
        with torch.no_grad():
            for layer in (self.conv1, self.conv2, self.fc1, self.fc2):
                layer.weight.mul_(3)
            self.bn1.running_mean.uniform_(-0.1, 0.1)
            self.bn1.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.act1(self.bn1(self.conv1(x))))
        x = self.flatten(self.pool2(self.act2(self.conv2(x))))
        return self.fc2(self.drop(self.act3(self.fc1(x))))


class Residual(nn.Module):
    """conv-ReLU, then a residual block (two conv-ReLU, the second after the addition), global pooling, linear."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv0, self.act0 = nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()
        self.conv1, self.act1 = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
        self.conv2, self.act2 = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
        with torch.no_grad():
            for layer in (self.conv0, self.conv1, self.conv2):
                layer.weight.mul_(2)

    def forward(self, x):
        h = self.act0(self.conv0(x))
        return self.head(self.act2(self.conv2(self.act1(self.conv1(h))) + h))
