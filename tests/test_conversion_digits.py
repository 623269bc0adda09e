"""On scikit-learn digits, distribution-aware conversion at T=2 stays within 2 points of the ANN and beats
SpikingJelly's rate-coding recipes on the same ANN (quick, seeded)."""

import lightning as L
import torch

import snn_ext
from snn_ext.lightning import DigitsDataModule
from snn_ext.quickstart import train_digits_ann
from snn_ext.spikingjelly.baselines import rate_coding_logits


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def test_distribution_aware_t2_within_two_points_and_above_spikingjelly():
    L.seed_everything(0, verbose=False)
    data = DigitsDataModule(batch_size=64)
    ann = train_digits_ann(data, epochs=20)
    calibration = data.calibration_batches()
    x_test, y_test = data.test_tensors()
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
