"""On scikit-learn digits, distribution-aware conversion at T=2 stays within 2 points of the ANN and beats
SpikingJelly's rate-coding recipes on the same ANN (quick, seeded)."""

import torch
from torch import nn

import snn_ext
from snn_ext.data import digits
from snn_ext.models import VGG
from snn_ext.spikingjelly.baselines import rate_coding_logits


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def test_distribution_aware_t2_within_two_points_and_above_spikingjelly():
    x_train, y_train, x_test, y_test = digits()
    torch.manual_seed(0)
    ann = VGG("vgg_small", 10, 1, 8, activation="clipped_relu", batch_norm=True, bias=True)
    optimizer = torch.optim.Adam(ann.parameters(), lr=3e-3)
    for _ in range(20):
        for batch in torch.randperm(len(y_train)).split(64):
            loss = nn.functional.cross_entropy(ann(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    ann.eval()
    calibration = list(x_train[:512].split(128))
    with torch.no_grad():
        ann_accuracy = accuracy(ann(x_test), y_test)
        snn = snn_ext.convert(ann, calibration, method="distribution_aware", timesteps=2)
        ours = accuracy(snn(x_test), y_test)
    sj_max = accuracy(rate_coding_logits(ann, calibration, x_test, "Max", 2), y_test)
    sj_999 = accuracy(rate_coding_logits(ann, calibration, x_test, "99.9%", 2), y_test)
    assert ann_accuracy > 0.95
    assert ours >= ann_accuracy - 0.02, (ours, ann_accuracy)
    assert ours > sj_max
    assert ours > sj_999
