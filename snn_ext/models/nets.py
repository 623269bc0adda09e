"""ANN architectures used by the recipes, with a pluggable activation for conversion.

No BatchNorm and no bias by default, as in DIET-SNN; ``batch_norm=True`` adds BatchNorm after each
convolution (the converter folds it into the convolution). The activation is ``"relu"`` or
``"clipped_relu"`` (:class:`~snn_ext.models.ClippedReLU`, for the distribution-aware DNN) or ``"qcfs"``
(:class:`~snn_ext.models.QCFS`); every layer
gets its own activation module, which the converter replaces with a spiking neuron.
"""

from __future__ import annotations

from torch import nn

from snn_ext.models.activations import QCFS, ClippedReLU

__all__ = ["VGG", "VGG_CONFIGS", "ResNet", "ResNet20"]

# Channel counts, "P" = 2x2 pooling. The CIFAR VGGs have 4 poolings (DIET-SNN: 32x32 -> 2x2, so VGG16's
# classifier is 2048 -> 4096 -> 4096 -> classes); the ImageNet VGG16 has 5 (224 -> 7x7).
VGG_CONFIGS: dict[str, list[int | str]] = {
    "vgg_small": [32, "P", 64, "P"],
    "vgg11": [64, "P", 128, "P", 256, 256, "P", 512, 512, "P", 512, 512],
    "vgg16": [64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512],
    "vgg16_imagenet": [64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P"],
}
_ACTIVATIONS = ("relu", "clipped_relu", "qcfs")


def _activation(name: str, clip_init: float, levels: int = 4) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "clipped_relu":
        return ClippedReLU(clip_init)
    if name == "qcfs":
        return QCFS(levels, clip_init)
    raise ValueError(f"activation must be one of {', '.join(_ACTIVATIONS)}, got {name!r}")


def _pool(kind: str) -> nn.Module:
    if kind == "avg":
        return nn.AvgPool2d(2)
    if kind == "max":
        return nn.MaxPool2d(2)
    raise ValueError(f"pool must be 'avg' (DIET-SNN) or 'max' (Datta & Beerel), got {kind!r}")


def _init_weights(model: nn.Module) -> None:
    """DIET-SNN's initialisation: conv N(0, sqrt(2 / (k^2 C_out))), linear N(0, 0.01), zero biases."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.01)
        if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
            nn.init.zeros_(module.bias)


class VGG(nn.Module):
    """VGG for images ``[B, in_channels, image_size, image_size]`` -> logits ``[B, num_classes]``.

    Args:
        arch: a key of :data:`VGG_CONFIGS` (``vgg_small`` for 8x8 digits, ``vgg11``/``vgg16`` for
            CIFAR, ``vgg16_imagenet`` for 224x224), or a list of its own in their format (conv widths, ``"P"``
            for a 2x2 pooling).
        num_classes: output classes.
        in_channels: image channels.
        image_size: input height = width; must be divisible by 2 ** (number of poolings).
        activation: ``"relu"``, ``"clipped_relu"`` or ``"qcfs"`` (:class:`~snn_ext.models.QCFS`, for ``qcfs``
            conversion).
        clip_init: initial clip of ``ClippedReLU`` / ``QCFS`` (4.0).
        levels: ``L`` of ``QCFS`` (4).
        pool: ``"avg"`` (DIET-SNN) or ``"max"`` (Datta & Beerel).
        batch_norm: BatchNorm after every convolution.
        bias: biases in conv and linear layers.
        dropout: dropout after every convolutional activation (DIET-SNN ANN: 0.2).
        classifier_width: hidden width of the 3-layer classifier; default 4096 (128 for ``vgg_small``).
        classifier_dropout: dropout in the classifier (DIET-SNN ANN: 0.5).
        head: ``"mlp"`` (the 3-layer classifier) or ``"gap"`` (global average pooling, then one linear layer).
    """

    def __init__(
        self,
        arch: str | list[int | str] = "vgg16",
        num_classes: int = 10,
        in_channels: int = 3,
        image_size: int = 32,
        activation: str = "relu",
        clip_init: float = 4.0,
        pool: str = "avg",
        batch_norm: bool = False,
        bias: bool = False,
        dropout: float = 0.0,
        classifier_width: int | None = None,
        classifier_dropout: float = 0.0,
        head: str = "mlp",
        levels: int = 4,
    ) -> None:
        super().__init__()
        config = _vgg_config(arch)
        if head not in ("mlp", "gap"):
            raise ValueError(f"head must be 'mlp' or 'gap', got {head!r}")
        pools = config.count("P")
        if image_size % 2**pools:
            raise ValueError(f"image_size must be divisible by {2**pools} for {arch}, got {image_size}")
        layers: list[nn.Module] = []
        channels = in_channels
        for item in config:
            if item == "P":
                layers.append(_pool(pool))
                continue
            layers.append(nn.Conv2d(channels, item, 3, padding=1, bias=bias))
            if batch_norm:
                layers.append(nn.BatchNorm2d(item))
            layers.append(_activation(activation, clip_init, levels))
            if dropout:
                layers.append(nn.Dropout(dropout))
            channels = item
        self.features = nn.Sequential(*layers)
        if head == "gap":
            self.classifier = nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes, bias=bias)
            )
        else:
            width = classifier_width or (128 if arch == "vgg_small" else 4096)
            side = image_size // 2**pools
            mlp: list[nn.Module] = [nn.Flatten()]
            for fan_in in (channels * side * side, width):
                mlp += [nn.Linear(fan_in, width, bias=bias), _activation(activation, clip_init, levels)]
                if classifier_dropout:
                    mlp.append(nn.Dropout(classifier_dropout))
            mlp.append(nn.Linear(width, num_classes, bias=bias))
            self.classifier = nn.Sequential(*mlp)
        _init_weights(self)

    def forward(self, x):
        return self.classifier(self.features(x))


def _vgg_config(arch: str | list[int | str]) -> list[int | str]:
    if isinstance(arch, str):
        if arch not in VGG_CONFIGS:
            raise ValueError(f"arch must be one of {', '.join(VGG_CONFIGS)} or a list of widths and 'P', got {arch!r}")
        return VGG_CONFIGS[arch]
    config = list(arch)
    if not any(isinstance(item, int) for item in config) or any(
        item != "P" and (isinstance(item, bool) or not isinstance(item, int) or item < 1) for item in config
    ):
        raise ValueError(f"arch must list positive conv widths and 'P' (pooling), got {arch!r}")
    return config


class _BasicBlock(nn.Module):
    def __init__(
        self,
        c_in: int,
        c_out: int,
        stride: int,
        activation: str,
        clip_init: float,
        bn: bool,
        bias: bool,
        levels: int = 4,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=bias)
        self.bn1 = nn.BatchNorm2d(c_out) if bn else nn.Identity()
        self.act1 = _activation(activation, clip_init, levels)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=bias)
        self.bn2 = nn.BatchNorm2d(c_out) if bn else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            conv = nn.Conv2d(c_in, c_out, 1, stride, bias=bias)
            self.shortcut = nn.Sequential(conv, nn.BatchNorm2d(c_out)) if bn else conv
        self.act2 = _activation(activation, clip_init, levels)  # conv2 + shortcut feed a single activation

    def forward(self, x):
        out = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(out + self.shortcut(x))


class ResNet20(nn.Module):
    """DIET-SNN's ResNet20: 3-conv stem (64 ch) + 2x2 avg-pool, 4 stages x 2 basic blocks
    (64/128/256/512 channels, strides 1/2/2/2), global average pool, linear classifier.

    Images ``[B, in_channels, H, W]`` -> logits ``[B, num_classes]``. Arguments as in :class:`VGG`.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        activation: str = "relu",
        clip_init: float = 4.0,
        batch_norm: bool = False,
        bias: bool = False,
    ) -> None:
        super().__init__()
        stem: list[nn.Module] = []
        channels = in_channels
        for _ in range(3):
            stem.append(nn.Conv2d(channels, 64, 3, padding=1, bias=bias))
            if batch_norm:
                stem.append(nn.BatchNorm2d(64))
            stem.append(_activation(activation, clip_init))
            channels = 64
        stem.append(nn.AvgPool2d(2))
        self.stem = nn.Sequential(*stem)
        blocks = []
        for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            for i in range(2):
                blocks.append(
                    _BasicBlock(channels, width, stride if i == 0 else 1, activation, clip_init, batch_norm, bias)
                )
                channels = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(512, num_classes, bias=bias)
        _init_weights(self)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.blocks(self.stem(x)))))


class ResNet(nn.Module):
    """A small residual network: Conv-BN-activation stem, then one basic block per entry of ``widths``
    (``act(bn(conv(act(bn(conv(x))))) + shortcut(x))``, a 1x1 conv shortcut where the width changes), a 2x2
    average pooling between blocks, global average pooling and a linear classifier.

    Images ``[B, in_channels, H, W]`` -> logits ``[B, num_classes]``; ``H`` and ``W`` divisible by
    ``2 ** (len(widths) - 1)``. Other arguments as in :class:`VGG` (BatchNorm and biases on by default).
    """

    def __init__(
        self,
        widths: tuple[int, ...] = (32, 32, 32),
        num_classes: int = 10,
        in_channels: int = 1,
        activation: str = "clipped_relu",
        clip_init: float = 4.0,
        batch_norm: bool = True,
        bias: bool = True,
        levels: int = 4,
    ) -> None:
        super().__init__()
        if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty tuple of positive integers, got {widths!r}")
        stem: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=bias)]
        if batch_norm:
            stem.append(nn.BatchNorm2d(widths[0]))
        stem.append(_activation(activation, clip_init, levels))
        self.stem = nn.Sequential(*stem)
        blocks: list[nn.Module] = []
        channels = widths[0]
        for i, width in enumerate(widths):
            if i:
                blocks.append(nn.AvgPool2d(2))
            blocks.append(_BasicBlock(channels, width, 1, activation, clip_init, batch_norm, bias, levels))
            channels = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes, bias=bias)
        _init_weights(self)

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.blocks(self.stem(x)))))
