"""Lightning DataModules. ``DigitsDataModule``: scikit-learn's digits, embedded in the wheel (offline)."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from snn_ext.data import digits
from snn_ext.lightning.sampling import EpochSampler, ResumableDataLoader

__all__ = ["DigitsDataModule"]


class DigitsDataModule(L.LightningDataModule):
    """scikit-learn's digits as images ``[B, 1, 8, 8]`` in ``[0, 1]`` with labels ``[B]`` (10 classes).

    A stratified split (:func:`snn_ext.data.digits`): 1347 training and 450 test images with the default
    ``test_size``. Digits has no separate validation split: validation and test both use the test split.

    Args:
        batch_size: images per batch (all loaders).
        seed: seed of the train/test split and of the training-set shuffling.
        test_size: fraction of the 1797 images held out.
        calibration_size: training images returned by :meth:`calibration_batches` (for conversion).
    """

    num_classes: int = 10
    dims: tuple[int, int, int] = (1, 8, 8)

    def __init__(self, batch_size: int = 64, seed: int = 0, test_size: float = 0.25, calibration_size: int = 512):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 < test_size < 1.0:
            raise ValueError(f"test_size must be in (0, 1), got {test_size}")
        self.save_hyperparameters()
        self.batch_size, self.seed, self.test_size, self.calibration_size = (
            batch_size,
            seed,
            test_size,
            calibration_size,
        )
        self.train_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        """Load and split the digits once (no files are read or written)."""
        if self.train_set is None:
            x_train, y_train, x_test, y_test = digits(self.test_size, self.seed)
            self.train_set = TensorDataset(x_train, y_train)
            self.test_set = TensorDataset(x_test, y_test)

    def _sets(self) -> tuple[TensorDataset, TensorDataset]:
        self.setup()
        if self.train_set is None or self.test_set is None:  # pragma: no cover - setup() always fills both
            raise RuntimeError("DigitsDataModule.setup() did not load the data")
        return self.train_set, self.test_set

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches ``(x [B, 1, 8, 8], y [B])``, reproducible from ``seed``.

        Epoch ``e``'s order depends only on ``(seed, e)`` and, under DDP, each process gets its shard
        (:class:`~snn_ext.lightning.sampling.EpochSampler`); the loader resumes mid-epoch from a Lightning
        checkpoint exactly where it stopped (:class:`~snn_ext.lightning.sampling.ResumableDataLoader`).
        """
        train_set = self._sets()[0]
        return ResumableDataLoader(train_set, batch_size=self.batch_size, sampler=EpochSampler(train_set, self.seed))

    def val_dataloader(self) -> DataLoader:
        """The test split, in order (digits has no validation split)."""
        return DataLoader(self._sets()[1], batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        """The test split, in order."""
        return self.val_dataloader()

    def calibration_batches(self, batch_size: int = 128) -> list[torch.Tensor]:
        """The first ``calibration_size`` training images as batches ``[batch_size, 1, 8, 8]`` for ``convert``."""
        images = self._sets()[0].tensors[0][: self.calibration_size]
        return list(images.split(batch_size))

    def test_tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole test split as ``(x [M, 1, 8, 8], y [M])``."""
        x, y = self._sets()[1].tensors
        return x, y
