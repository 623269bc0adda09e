"""The embedded dataset: scikit-learn's ``load_digits`` (1797 8x8 images, 10 classes, ships in the wheel).

Needs scikit-learn (``pip install "snn-ext[lightning]"``); nothing is downloaded.
"""

from __future__ import annotations

import torch

from snn_ext._optional import require

__all__ = ["digits"]


def digits(test_size: float = 0.25, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stratified train/test split of scikit-learn's digits as images scaled to ``[0, 1]``.

    Returns:
        ``(x_train [N, 1, 8, 8], y_train [N], x_test [M, 1, 8, 8], y_test [M])``, float32 / int64.
    """
    datasets = require("sklearn.datasets", "lightning")
    model_selection = require("sklearn.model_selection", "lightning")
    data = datasets.load_digits()
    x = torch.tensor(data.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    train, test = model_selection.train_test_split(
        torch.arange(len(y)), test_size=test_size, random_state=seed, stratify=y
    )
    return x[train], y[train], x[test], y[test]
