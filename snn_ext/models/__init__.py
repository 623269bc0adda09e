"""ANN architectures for conversion and the recipes (VGG, ResNet20) and the ``ClippedReLU`` activation."""

from snn_ext.models.activations import ClippedReLU
from snn_ext.models.nets import VGG, VGG_CONFIGS, ResNet20

__all__ = ["VGG", "VGG_CONFIGS", "ClippedReLU", "ResNet20"]
