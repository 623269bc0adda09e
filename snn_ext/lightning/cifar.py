"""CIFAR-10/100 from a local folder in torchvision's on-disk layout (no download unless asked).

Expected layout under ``root`` (what ``torchvision.datasets.CIFAR10/100(root, download=True)`` writes, or
the official ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` extracted into ``root``)::

    root/cifar-10-batches-py/{data_batch_1..data_batch_5, test_batch, batches.meta}
    root/cifar-100-python/{train, test, meta}

The files are Python pickles of ``{"data": uint8 [N, 3072], "labels" | "fine_labels": [N]}``. Unlike
torchvision, the files are not checked against the official MD5 sums (so subsets and generated test data
load); a missing file is reported by name and an unreadable one by path.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from snn_ext._optional import require
from snn_ext.lightning.sampling import EpochSampler, ResumableDataLoader

__all__ = ["CIFARDataModule"]

# Per-channel mean / std of the CIFAR training sets.
_STATS = {
    10: ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    100: ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _dataset_class(num_classes: int) -> type:
    """A torchvision CIFAR class that checks for the files' presence instead of their MD5 sums."""
    datasets = require("torchvision.datasets", "lightning")
    base = datasets.CIFAR10 if num_classes == 10 else datasets.CIFAR100

    class LocalCIFAR(base):  # type: ignore[misc, valid-type]
        def _check_integrity(self) -> bool:
            return not _missing(Path(self.root), num_classes)

        def _load_meta(self) -> None:
            path = Path(self.root) / self.base_folder / self.meta["filename"]
            with open(path, "rb") as file:
                self.classes = pickle.load(file, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    return LocalCIFAR


def _files(root: Path, num_classes: int) -> list[Path]:
    cls = _dataset_class_base(num_classes)
    names = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    return [root / cls.base_folder / name for name in names]


def _dataset_class_base(num_classes: int) -> Any:
    datasets = require("torchvision.datasets", "lightning")
    return datasets.CIFAR10 if num_classes == 10 else datasets.CIFAR100


def _missing(root: Path, num_classes: int) -> list[Path]:
    return [path for path in _files(root, num_classes) if not path.is_file()]


class CIFARDataModule(L.LightningDataModule):
    """CIFAR-10 or CIFAR-100: images ``[B, 3, 32, 32]``, labels ``[B]``.

    Images are normalized per channel (training-set mean and std) unless ``normalize=False``.

    Training augmentation (standard, as in DIET-SNN): random crop 32 with 4-pixel zero padding and random
    horizontal flip. Validation and test both use the official test split, unaugmented.

    Args:
        root: folder that holds ``cifar-10-batches-py/`` or ``cifar-100-python/`` (see the module docs).
        num_classes: 10 or 100.
        batch_size: images per batch.
        num_workers: DataLoader worker processes.
        download: download the archive into ``root`` if missing (needs internet; off by default).
        seed: seed of the training-set shuffling.
        normalize: subtract the per-channel mean and divide by the std; ``False`` keeps pixels in ``[0, 1]``
            (needed by the hybrid encoder's time code).

    Raises:
        FileNotFoundError: (in ``setup``) files missing, listing each one and how to get them.
        RuntimeError: (in ``setup``) a file that is not a readable CIFAR pickle.
    """

    def __init__(
        self,
        root: str | Path,
        num_classes: int = 10,
        batch_size: int = 128,
        num_workers: int = 0,
        download: bool = False,
        seed: int = 0,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if num_classes not in _STATS:
            raise ValueError(f"num_classes must be 10 (CIFAR-10) or 100 (CIFAR-100), got {num_classes}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.save_hyperparameters()
        self.root, self.num_classes, self.batch_size = Path(root), num_classes, batch_size
        self.num_workers, self.download, self.seed, self.normalize = num_workers, download, seed, normalize
        self.train_set: Any = None
        self.test_set: Any = None

    def _check_files(self) -> None:
        missing = _missing(self.root, self.num_classes)
        if not missing:
            return
        base = _dataset_class_base(self.num_classes)
        archive = "cifar-10-python.tar.gz" if self.num_classes == 10 else "cifar-100-python.tar.gz"
        raise FileNotFoundError(
            f"CIFAR-{self.num_classes} not found under {self.root.resolve()}: missing "
            + ", ".join(str(p) for p in missing)
            + f". Put the files of {base.base_folder}/ there: extract {archive} from {base.url} into "
            f"{self.root.resolve()}, or pass download=True (--data.download true) on a machine with internet."
        )

    def prepare_data(self) -> None:
        """Download into ``root`` only when ``download=True``."""
        if self.download:
            _dataset_class_base(self.num_classes)(self.root, train=True, download=True)
            _dataset_class_base(self.num_classes)(self.root, train=False, download=True)

    def setup(self, stage: str | None = None) -> None:
        """Check the files and load both splits (once)."""
        if self.train_set is not None:
            return
        transforms = require("torchvision.transforms", "lightning")
        self._check_files()
        tensor = [transforms.ToTensor()]
        if self.normalize:
            tensor.append(transforms.Normalize(*_STATS[self.num_classes]))
        train_tf = transforms.Compose(
            [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), *tensor]
        )
        test_tf = transforms.Compose(tensor)
        cls = _dataset_class(self.num_classes)
        try:
            self.train_set = cls(self.root, train=True, transform=train_tf)
            self.test_set = cls(self.root, train=False, transform=test_tf)
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as err:
            self.train_set = self.test_set = None
            raise RuntimeError(
                f"CIFAR-{self.num_classes} files under {self.root.resolve()} are corrupt or not CIFAR pickles "
                f"({type(err).__name__}: {err}); re-extract the official archive"
            ) from err

    def train_dataloader(self) -> DataLoader:
        """Augmented, shuffled training batches ``(x [B, 3, 32, 32], y [B])``.

        Epoch ``e``'s order depends only on ``(seed, e)``, each DDP process gets its shard, and the loader
        resumes mid-epoch from a Lightning checkpoint where it stopped (:mod:`snn_ext.lightning.sampling`).
        The random crops and flips are not restored: they draw from the global random number generators.
        """
        self.setup()
        sampler = EpochSampler(self.train_set, self.seed)
        return ResumableDataLoader(self.train_set, self.batch_size, sampler=sampler, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        """The test split, in order."""
        self.setup()
        return DataLoader(self.test_set, self.batch_size, num_workers=self.num_workers)

    def test_dataloader(self) -> DataLoader:
        """The test split, in order."""
        return self.val_dataloader()
