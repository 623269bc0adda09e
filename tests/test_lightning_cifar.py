"""CIFARDataModule on a tiny generated CIFAR-10 written in the real on-disk (pickle) format."""

import pytest
import torch
from fake_data import write_fake_cifar

from snn_ext.lightning import CIFARDataModule


def test_loads_real_layout_with_augmentation(tmp_path):
    write_fake_cifar(tmp_path)
    data = CIFARDataModule(tmp_path, batch_size=8)
    data.setup("fit")
    assert len(data.train_set) == 20
    assert len(data.test_set) == 4
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == (8, 3, 32, 32)
    assert x.dtype == torch.float32
    assert y.shape == (8,)
    x_test, _ = next(iter(data.test_dataloader()))
    assert x_test.shape == (4, 3, 32, 32)
    assert data.train_set.classes[0] == "class0"


def test_missing_files_name_what_to_put_where(tmp_path):
    folder = write_fake_cifar(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3") as info:
        CIFARDataModule(tmp_path).setup()
    assert "cifar-10-python.tar.gz" in str(info.value)
    assert "download=True" in str(info.value)
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        CIFARDataModule(tmp_path / "nowhere", num_classes=100).setup()


def test_corrupt_file_is_reported(tmp_path):
    folder = write_fake_cifar(tmp_path)
    (folder / "test_batch").write_bytes(b"not a pickle")
    data = CIFARDataModule(tmp_path)
    with pytest.raises(RuntimeError, match="corrupt"):
        data.setup()
    assert data.train_set is None


def test_bad_options():
    with pytest.raises(ValueError, match="num_classes"):
        CIFARDataModule(".", num_classes=20)


def test_ann_module_fast_dev_run_on_fake_cifar(tmp_path):
    import lightning as L

    from snn_ext.lightning import ANNModule
    from snn_ext.models import VGG

    write_fake_cifar(tmp_path)
    net = VGG("vgg_small", 10, 3, 32, batch_norm=True, classifier_width=16)
    trainer = L.Trainer(
        accelerator="cpu", fast_dev_run=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.fit(ANNModule(net), datamodule=CIFARDataModule(tmp_path, batch_size=4))
    assert "val/acc" in trainer.callback_metrics
