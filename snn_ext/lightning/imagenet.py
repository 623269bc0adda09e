"""ImageNet (ILSVRC-2012) from a local folder in torchvision's ``ImageFolder`` layout (never downloaded).

Expected layout under ``root``: one sub-folder per class (e.g. the WordNet ids ``n01440764`` ...), the same
class folders in both splits::

    root/train/<class>/<image files>
    root/val/<class>/<image files>

This is the usual ILSVRC-2012 layout: ``ILSVRC2012_img_train.tar`` extracted into ``train/`` (it holds one
tar per class; extract each into its class folder) and ``ILSVRC2012_img_val.tar`` extracted into ``val/``,
with the validation images then sorted into class folders, e.g. by the well-known ``valprep.sh`` script.
The archives need an account at https://image-net.org/ and cannot be downloaded automatically.

Image files are those ``ImageFolder`` accepts (``.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp``, in any
case); other files are ignored. Class indices follow the sorted class-folder names. Nothing is written.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from snn_ext._optional import require
from snn_ext.lightning.sampling import EpochSampler, ResumableDataLoader

__all__ = ["ImageNetDataModule"]

# Per-channel mean / std of the ImageNet training set (the usual torchvision values).
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_SPLITS = ("train", "val")
_SHOWN = 5  # at most this many names in an error message


def _how_to(root: Path) -> str:
    return (
        f"Put the images in {root}/train/<class>/ and {root}/val/<class>/, one sub-folder per class "
        "(e.g. n01440764), with the same class folders in both. ILSVRC-2012 cannot be downloaded "
        "automatically: get ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from https://image-net.org/ "
        "(needs an account), extract them and sort the validation images into class folders "
        "(e.g. with the well-known valprep.sh script)."
    )


def _shown(names: list[str]) -> str:
    more = f" ... ({len(names)} in all)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def _class_folders(split: Path) -> list[str]:
    """The class folders of one split, sorted as ``ImageFolder`` sorts them."""
    return sorted(entry.name for entry in os.scandir(split) if entry.is_dir())


def _check_layout(root: Path, num_classes: int | None) -> list[str]:
    """The class names, after checking the folders (not the files) of both splits."""
    if not root.is_dir():
        raise FileNotFoundError(f"ImageNet not found: {root} is not a folder. " + _how_to(root))
    missing = [str(root / split) for split in _SPLITS if not (root / split).is_dir()]
    if missing:
        raise FileNotFoundError(f"ImageNet under {root} is incomplete: missing {', '.join(missing)}. " + _how_to(root))
    train, val = (_class_folders(root / split) for split in _SPLITS)
    for split, names in zip(_SPLITS, (train, val), strict=True):
        if not names:
            raise FileNotFoundError(f"no class folders in {root / split}. " + _how_to(root))
    if train != val:
        only_train, only_val = sorted(set(train) - set(val)), sorted(set(val) - set(train))
        raise FileNotFoundError(
            f"the class folders of {root / 'train'} and {root / 'val'} differ: "
            f"only in train: {_shown(only_train) or '-'}; only in val: {_shown(only_val) or '-'}. " + _how_to(root)
        )
    if num_classes is not None and num_classes != len(train):
        raise ValueError(f"num_classes={num_classes}, but {root} has {len(train)} class folders")
    return train


def _check_not_empty(dataset: Any, split: Path) -> None:
    counts = Counter(dataset.targets)
    empty = [str(split / name) for index, name in enumerate(dataset.classes) if not counts[index]]
    if empty:
        extensions = " ".join(require("torchvision.datasets.folder", "lightning").IMG_EXTENSIONS)
        raise FileNotFoundError(
            f"no image files in the class folder(s) {_shown(empty)} (image files end in {extensions}, any case)"
        )


def _load_image(path: str) -> Any:
    """``ImageFolder``'s loader (an RGB PIL image), raising a RuntimeError that names an unreadable file."""
    folder = require("torchvision.datasets.folder", "lightning")
    try:
        return folder.default_loader(path)
    except Exception as err:  # PIL raises OSError, ValueError, DecompressionBombError, ...
        raise RuntimeError(f"cannot read the image file {path} ({type(err).__name__}: {err})") from err


class ImageNetDataModule(L.LightningDataModule):
    """ImageNet: images ``[B, 3, image_size, image_size]`` (normalized per channel), labels ``[B]`` (int64).

    Training augmentation (standard): ``RandomResizedCrop(image_size)`` and random horizontal flip.
    Validation and test both use the ``val`` split: the shorter side resized to ``resize``, then a center
    crop of ``image_size``. Both are normalized with the ImageNet mean / std.

    Args:
        root: folder that holds ``train/`` and ``val/`` (see the module docs).
        batch_size: images per batch.
        num_workers: DataLoader worker processes.
        image_size: side of the (square) images in a batch.
        resize: validation images are resized so that their shorter side is this (``>= image_size``).
        seed: seed of the training-set shuffling.
        num_classes: if given, the number of class folders that must be found; ``None`` accepts any.

    Attributes:
        num_classes: the number of class folders (read from ``root`` when first asked for).

    Raises:
        FileNotFoundError: (in ``setup`` or on reading ``num_classes``) ``root``, ``train/`` or ``val/``
            missing, no class folders, class folders that differ between the splits (listing some), or a
            class folder without image files (in ``setup``), each saying what to put where.
        ValueError: (in ``setup`` or on reading ``num_classes``) ``num_classes`` given and not the number of
            class folders found.
        RuntimeError: (when a batch is loaded) an image file that cannot be read, naming its path.
    """

    def __init__(
        self,
        root: str | Path,
        batch_size: int = 64,
        num_workers: int = 4,
        image_size: int = 224,
        resize: int = 256,
        seed: int = 0,
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        if resize < image_size:
            raise ValueError(f"resize must be >= image_size ({image_size}), got {resize}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be None (any) or >= 1, got {num_classes}")
        self.save_hyperparameters()
        self.root, self.batch_size, self.num_workers, self.seed = Path(root), batch_size, num_workers, seed
        self.image_size, self.resize = image_size, resize
        self._expected_classes = num_classes
        self.classes: list[str] | None = None
        self.train_set: Any = None
        self.val_set: Any = None

    @property
    def num_classes(self) -> int:
        """The number of class folders (checks the folder layout on first use)."""
        return len(self._find_classes())

    def _find_classes(self) -> list[str]:
        if self.classes is None:
            self.classes = _check_layout(self.root, self._expected_classes)
        return self.classes

    def setup(self, stage: str | None = None) -> None:
        """Check the folders and list the image files of both splits (once)."""
        if self.train_set is not None:
            return
        datasets = require("torchvision.datasets", "lightning")
        transforms = require("torchvision.transforms", "lightning")
        self._find_classes()
        normalize = transforms.Normalize(_MEAN, _STD)
        train_tf = transforms.Compose(
            [
                transforms.RandomResizedCrop(self.image_size),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                normalize,
            ]
        )
        val_tf = transforms.Compose(
            [transforms.Resize(self.resize), transforms.CenterCrop(self.image_size), transforms.ToTensor(), normalize]
        )
        sets = []
        for split, transform in zip(_SPLITS, (train_tf, val_tf), strict=True):
            folder = self.root / split
            dataset = datasets.ImageFolder(folder, transform=transform, loader=_load_image, allow_empty=True)
            _check_not_empty(dataset, folder)
            sets.append(dataset)
        self.train_set, self.val_set = sets

    def train_dataloader(self) -> DataLoader:
        """Augmented, shuffled training batches ``(x [B, 3, image_size, image_size], y [B])``."""
        self.setup()
        sampler = EpochSampler(self.train_set, self.seed)
        return ResumableDataLoader(self.train_set, self.batch_size, sampler=sampler, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        """The validation split, in order: ``(x [B, 3, image_size, image_size], y [B])``."""
        self.setup()
        return DataLoader(self.val_set, self.batch_size, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        """The validation split, in order (ILSVRC-2012 has no public test labels)."""
        return self.val_dataloader()
