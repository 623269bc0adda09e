"""snn_ext.lightning: the digits DataModule, ANNModule and SNNModule (fast_dev_run), the DIET leak clamp."""

from functools import partial

import lightning as L
import pytest
import torch

import snn_ext
from snn_ext.lightning import ANNModule, ConvertedSNN, DigitsDataModule, SingleSpikeMLP, SNNModule
from snn_ext.models import VGG


def trainer(**kwargs) -> L.Trainer:
    options = {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return L.Trainer(**(options | kwargs))


def small_vgg() -> VGG:
    torch.manual_seed(0)
    return VGG("vgg_small", 10, 1, 8, activation="clipped_relu", batch_norm=True, bias=True, classifier_width=32)


def test_digits_datamodule_shapes_and_reproducible_shuffle():
    data = DigitsDataModule(batch_size=32, seed=1)
    data.setup("fit")
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == (32, 1, 8, 8)
    assert x.dtype == torch.float32
    assert y.shape == (32,)
    assert y.dtype == torch.int64
    assert x.min() >= 0.0
    assert x.max() <= 1.0
    assert len(data.train_set) == 1347
    assert len(data.test_set) == 450
    x_again, _ = next(iter(DigitsDataModule(batch_size=32, seed=1).train_dataloader()))
    assert torch.equal(x, x_again)
    x_test, y_test = data.test_tensors()
    assert x_test.shape == (450, 1, 8, 8)
    assert y_test.shape == (450,)
    calibration = data.calibration_batches(batch_size=100)
    assert [len(b) for b in calibration] == [100] * 5 + [12]


@pytest.mark.parametrize(("kwargs", "match"), [({"batch_size": 0}, "batch_size"), ({"test_size": 1.5}, "test_size")])
def test_digits_datamodule_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DigitsDataModule(**kwargs)


def test_ann_module_fast_dev_run_logs_accuracy():
    optimizer = partial(torch.optim.SGD, lr=0.05, momentum=0.9)
    module = ANNModule(small_vgg(), optimizer, partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5))
    assert "net" not in module.hparams
    run = trainer(fast_dev_run=2)
    run.fit(module, datamodule=DigitsDataModule(batch_size=16))
    assert {"train/loss", "val/acc"} <= set(run.callback_metrics)
    assert isinstance(run.optimizers[0], torch.optim.SGD)
    assert run.optimizers[0].param_groups[0]["momentum"] == 0.9
    assert isinstance(run.lr_scheduler_configs[0].scheduler, torch.optim.lr_scheduler.StepLR)
    run.test(module, datamodule=DigitsDataModule(batch_size=16), verbose=False)
    assert 0.0 <= run.callback_metrics["test/acc"].item() <= 1.0


@pytest.mark.parametrize("target", ["snntorch", "spikingjelly"])
def test_snn_module_trains_converted_model_and_clamps_leaks(target):
    data = DigitsDataModule(batch_size=16)
    snn = snn_ext.convert(small_vgg().eval(), data.calibration_batches()[:1], "percentile", 2, target)
    module = SNNModule(snn, timesteps=3)
    assert snn.timesteps == 3
    leaks = [n.beta if target == "snntorch" else n.leak for n in snn.neurons()]
    with torch.no_grad():
        for leak in leaks:
            leak.fill_(1.5)  # as if an optimizer step had pushed the leak above 1
    weight = next(snn.parameters()).detach().clone()
    trainer(fast_dev_run=1).fit(module, datamodule=data)
    assert all((leak <= 1.0).all() for leak in leaks)
    assert not torch.equal(weight, next(snn.parameters()))  # the weights were updated
    defaults = module.trainer.optimizers[0].defaults  # DIET-SNN's optimizer by default
    assert (defaults["lr"], defaults["amsgrad"]) == (1e-4, True)


@pytest.mark.parametrize("target", ["snntorch", "spikingjelly"])
def test_trained_converted_snn_loads_from_its_checkpoint_without_the_ann_or_data(tmp_path, target):
    torch.save(small_vgg().state_dict(), tmp_path / "ann.pt")
    options = {"method": "distribution_aware", "timesteps": 2, "target": target}
    module = SNNModule(ConvertedSNN(small_vgg(), checkpoint=str(tmp_path / "ann.pt"), calibration_batches=1, **options))
    run = trainer(fast_dev_run=2)
    run.fit(module, datamodule=DigitsDataModule(batch_size=16))
    run.save_checkpoint(tmp_path / "snn.ckpt")
    (tmp_path / "ann.pt").unlink()
    restored = SNNModule.load_from_checkpoint(tmp_path / "snn.ckpt", net=ConvertedSNN(small_vgg(), **options))
    images = torch.rand(4, 1, 8, 8)
    module.eval()
    restored.eval()
    with torch.no_grad():
        assert torch.equal(restored(images), module(images))


@pytest.mark.parametrize("framework", ["snntorch", "spikingjelly"])
def test_single_spike_mlp_trains_with_snn_module(framework):
    torch.manual_seed(0)
    net = SingleSpikeMLP(framework, timesteps=3)
    assert net(torch.rand(4, 1, 8, 8)).shape == (4, 10)
    trainer(fast_dev_run=2).fit(
        SNNModule(net, partial(torch.optim.Adam, lr=1e-3)), datamodule=DigitsDataModule(batch_size=16)
    )


def test_clear_errors():
    with pytest.raises(TypeError, match="no 'timesteps'"):
        SNNModule(torch.nn.Linear(2, 2), timesteps=2)
    with pytest.raises(ValueError, match="framework"):
        SingleSpikeMLP("brian2")
    with pytest.raises(ValueError, match="timesteps must be >= 2"):
        SingleSpikeMLP(timesteps=1)
