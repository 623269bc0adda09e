"""ANN architectures and the ClippedReLU activation."""

import pytest
import torch
from torch import nn

from snn_ext.models import VGG, ClippedReLU, ResNet20


def test_clipped_relu_values_and_pact_gradient():
    act = ClippedReLU(init=2.0)
    x = torch.tensor([-1.0, 0.5, 1.5, 3.0, 5.0], requires_grad=True)
    y = act(x)
    assert y.tolist() == [0.0, 0.5, 1.5, 2.0, 2.0]
    y.backward(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert x.grad.tolist() == [0.0, 2.0, 3.0, 0.0, 0.0]  # ReLU gradient below the clip
    assert act.clip.grad.item() == 9.0  # sum of upstream gradients over the clipped elements
    with pytest.raises(ValueError, match="init must be > 0"):
        ClippedReLU(init=0.0)


@pytest.mark.parametrize(("arch", "image_size", "channels"), [("vgg_small", 8, 1), ("vgg11", 32, 3), ("vgg16", 32, 3)])
def test_vgg_shapes(arch, image_size, channels):
    model = VGG(arch, num_classes=7, in_channels=channels, image_size=image_size, classifier_width=64)
    assert model(torch.rand(2, channels, image_size, image_size)).shape == (2, 7)


def test_vgg_options():
    model = VGG("vgg_small", in_channels=1, image_size=8, activation="clipped_relu", pool="max", batch_norm=True)
    kinds = {type(m) for m in model.modules()}
    assert {ClippedReLU, nn.MaxPool2d, nn.BatchNorm2d} <= kinds
    assert nn.ReLU not in kinds
    vgg16 = VGG("vgg16", image_size=32)
    assert vgg16.classifier[1].in_features == 2048  # DIET-SNN's CIFAR VGG16: 512 x 2 x 2
    assert vgg16.classifier[1].out_features == 4096
    assert all(m.bias is None for m in vgg16.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def test_resnet20_shape_and_depth():
    model = ResNet20(num_classes=100, batch_norm=True)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 100)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == 20  # 3 stem + 16 block convs + classifier (1x1 shortcuts not counted)


def test_bad_arguments():
    with pytest.raises(ValueError, match="arch must be one of"):
        VGG("vgg19")
    with pytest.raises(ValueError, match="activation must be one of relu, clipped_relu"):
        VGG("vgg_small", image_size=8, activation="gelu")
    with pytest.raises(ValueError, match="pool must be 'avg'"):
        VGG("vgg_small", image_size=8, pool="l2")
    with pytest.raises(ValueError, match="image_size must be divisible by 16"):
        VGG("vgg16", image_size=30)
