"""ImageNetDataModule on a tiny generated ImageFolder (real JPEG and PNG files written by PIL)."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_data import CLASSES, write_fake_imagenet, write_image

from snn_ext.lightning.imagenet import ImageNetDataModule


def files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def test_batches_have_the_documented_shapes_and_labels(tmp_path):
    root = write_fake_imagenet(tmp_path / "imagenet")
    before = files(tmp_path)
    data = ImageNetDataModule(root, batch_size=5, num_workers=0, image_size=32, resize=36)
    assert data.num_classes == 3
    data.setup("fit")
    assert data.classes == CLASSES
    assert len(data.train_set) == 12  # .JPEG counted, notes.txt ignored
    assert len(data.val_set) == 6
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == (5, 3, 32, 32)
    assert x.dtype == torch.float32
    assert y.shape == (5,)
    assert y.dtype == torch.int64
    assert set(y.tolist()) <= {0, 1, 2}
    whole = ImageNetDataModule(root, batch_size=6, num_workers=0, image_size=32, resize=36)
    x_val, y_val = next(iter(whole.val_dataloader()))
    assert x_val.shape == (6, 3, 32, 32)
    assert y_val.tolist() == [0, 0, 1, 1, 2, 2]
    test_batches = list(data.test_dataloader())
    assert [len(b[1]) for b in test_batches] == [5, 1]
    assert files(tmp_path) == before  # nothing written


def test_training_batches_are_reproducible_for_a_seed(tmp_path):
    root = write_fake_imagenet(tmp_path)

    def epoch(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        torch.manual_seed(0)  # the augmentation draws from the global RNG when num_workers=0
        data = ImageNetDataModule(root, batch_size=4, num_workers=0, image_size=32, resize=36, seed=seed)
        return list(data.train_dataloader())

    first, again, other = epoch(3), epoch(3), epoch(4)
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        assert torch.equal(x1, x2)
        assert torch.equal(y1, y2)
    assert torch.cat([y for _, y in first]).tolist() != torch.cat([y for _, y in other]).tolist()


def test_normalization_uses_the_imagenet_statistics(tmp_path):
    root = write_fake_imagenet(tmp_path)
    data = ImageNetDataModule(root, num_workers=0, image_size=32, resize=36)
    data.setup()
    red, label = data.val_set[0]
    assert label == 0
    expected = torch.tensor([(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0 - 0.406) / 0.225])
    torch.testing.assert_close(red.mean((1, 2)), expected, atol=1e-4, rtol=0)
    assert red.std((1, 2)).max() < 1e-4
    x, _ = next(iter(data.val_dataloader()))
    assert x.min() >= -2.2
    assert x.max() <= 2.7
    assert x.mean().abs() < 1.5


def test_missing_root_says_what_to_put_where(tmp_path):
    data = ImageNetDataModule(tmp_path / "nowhere", num_workers=0)
    with pytest.raises(FileNotFoundError, match="nowhere is not a folder") as info:
        data.setup()
    message = str(info.value)
    for text in ["train/<class>", "val/<class>", "one sub-folder per class", "ILSVRC2012_img_train.tar"]:
        assert text in message
    assert "cannot be downloaded automatically" in message
    assert "valprep.sh" in message
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("split", ["train", "val"])
def test_missing_split_is_named(tmp_path, split):
    root = write_fake_imagenet(tmp_path)
    (root / split).rename(root / f"{split}_old")
    with pytest.raises(FileNotFoundError, match=f"missing {re.escape(str(root / split))}"):
        ImageNetDataModule(root, num_workers=0).setup()


def test_split_without_class_folders(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(FileNotFoundError, match="no class folders in"):
        ImageNetDataModule(tmp_path, num_workers=0).setup()


def test_differing_class_folders_are_listed(tmp_path):
    root = write_fake_imagenet(tmp_path)
    (root / "val" / CLASSES[2]).rename(root / "val" / "n09999999")
    with pytest.raises(FileNotFoundError, match="differ") as info:
        ImageNetDataModule(root, num_workers=0).setup()
    assert f"only in train: {CLASSES[2]}" in str(info.value)
    assert "only in val: n09999999" in str(info.value)


def test_class_folder_without_images_is_named(tmp_path):
    root = write_fake_imagenet(tmp_path)
    for split in ["train", "val"]:
        (root / split / "n09999999").mkdir()
    (root / "train" / "n09999999" / "readme.txt").write_text("no images here")
    write_image(root / "val" / "n09999999" / "a.jpg", (0, 0, 0), np.random.default_rng(1))
    data = ImageNetDataModule(root, num_workers=0)
    with pytest.raises(FileNotFoundError, match=re.escape(str(root / "train" / "n09999999"))):
        data.setup()
    assert data.train_set is None


def test_num_classes_must_match_the_class_folders(tmp_path):
    root = write_fake_imagenet(tmp_path)
    with pytest.raises(ValueError, match="num_classes=1000, but .* has 3 class folders"):
        ImageNetDataModule(root, num_workers=0, num_classes=1000).setup()
    with pytest.raises(ValueError, match="num_classes=1000"):
        _ = ImageNetDataModule(root, num_workers=0, num_classes=1000).num_classes
    assert ImageNetDataModule(root, num_classes=3).num_classes == 3


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"num_workers": -1}, "num_workers"),
        ({"image_size": 0}, "image_size"),
        ({"image_size": 224, "resize": 200}, "resize"),
        ({"num_classes": 0}, "num_classes"),
    ],
)
def test_bad_options(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ImageNetDataModule(".", **kwargs)


def test_corrupt_image_names_its_path(tmp_path):
    root = write_fake_imagenet(tmp_path)
    bad = root / "val" / CLASSES[0] / "a.png"
    bad.unlink()
    bad = bad.with_name("a.jpg")
    bad.write_bytes(b"\xff\xd8 definitely not a JPEG")
    data = ImageNetDataModule(root, batch_size=2, num_workers=0, image_size=32, resize=36)
    data.setup()
    with pytest.raises(RuntimeError, match=re.escape(str(bad))):
        data.val_set[0]
    with pytest.raises(RuntimeError, match=re.escape(str(bad))):
        next(iter(data.val_dataloader()))


def test_ann_module_fast_dev_run(tmp_path):
    import lightning as L
    from torch import nn

    from snn_ext.lightning import ANNModule

    root = write_fake_imagenet(tmp_path / "imagenet")
    data = ImageNetDataModule(root, batch_size=4, num_workers=0, image_size=32, resize=36)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    trainer = L.Trainer(
        fast_dev_run=True,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(ANNModule(net), datamodule=data)
    assert trainer.state.finished
    assert {"train/loss", "val/loss"} <= set(trainer.callback_metrics)
