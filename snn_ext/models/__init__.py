"""ANN architectures for conversion and the recipes (VGG, ResNet, ResNet20) and the ``ClippedReLU`` and ``QCFS``
activations."""

from snn_ext.models.activations import QCFS, ClippedReLU
from snn_ext.models.nets import VGG, VGG_CONFIGS, ResNet, ResNet20

__all__ = ["QCFS", "VGG", "VGG_CONFIGS", "ClippedReLU", "ResNet", "ResNet20"]
