"""Nothing a user ran is lost or silently wrong: run folders, misused stages, damaged checkpoints, option checks.

Each test runs the offline DIET digits recipe (or the quickstart) for a couple of batches, in a temporary folder.
"""

import json
import re
from pathlib import Path

import pytest
import torch

from snn_ext.cli import main

RECIPE = str(Path(__file__).parents[1] / "recipes" / "diet_snn" / "digits_vgg_small.yaml")
FAST = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]
FAST += ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
ANN_CKPT = Path("runs/diet_snn/digits_vgg_small/ann/checkpoints")
SNN_CKPT = Path("runs/diet_snn/digits_vgg_small/snn/checkpoints")
SNN_FAST = [*FAST, "--model.init_args.net.init_args.calibration_batches", "1"]


def _files(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _fit_ann(*extra: str) -> None:
    main(["fit", "-c", RECIPE, "--stage", "ann", *FAST, *extra])


def test_a_stage_never_replaces_an_earlier_runs_checkpoints(run_dir):
    _fit_ann()
    last = ANN_CKPT / "last.ckpt"
    first = torch.load(last, weights_only=False)
    epoch, first = first["epoch"], first["state_dict"]
    with pytest.raises(SystemExit, match=r"holds the checkpoints of an earlier run \(best.ckpt, last.ckpt\).*"
                       r"--ckpt_path last.*--overwrite"):  # fmt: skip
        _fit_ann("--model.init_args.optimizer.init_args.lr", "10.0")
    kept = torch.load(last, weights_only=False)["state_dict"]
    assert all(torch.equal(first[k], kept[k]) for k in first)
    # resuming continues the same run (a second epoch), under the rule
    main(["fit", "-c", RECIPE, "--stage", "ann", *FAST, "--trainer.max_epochs", "2", "--ckpt_path", "last"])
    assert torch.load(last, weights_only=False)["epoch"] > epoch
    _fit_ann("--overwrite")  # starting over is explicit
    assert torch.load(last, weights_only=False)["epoch"] == epoch


def test_fit_of_an_evaluation_stage_is_refused(run_dir):
    _fit_ann()
    with pytest.raises(SystemExit, match=r"stage 'convert' keeps no checkpoint.*snn-ext test -c .* --stage convert"):
        main(["fit", "-c", RECIPE, "--stage", "convert", *SNN_FAST])


def test_evaluating_a_training_stage_uses_its_last_checkpoint_and_says_so(run_dir, capsys):
    _fit_ann()
    with pytest.raises(SystemExit, match=r"stage 'snn' has no checkpoint .* train it first .* --stage snn"):
        main(["test", "-c", RECIPE, "--stage", "snn", *SNN_FAST])  # not the untrained conversion as a result
    main(["fit", "-c", RECIPE, "--stage", "snn", *SNN_FAST])
    capsys.readouterr()
    main(["test", "-c", RECIPE, "--stage", "snn", *SNN_FAST])
    said = capsys.readouterr().err
    assert "test stage 'snn' with its last checkpoint" in said
    assert str(SNN_CKPT / "last.ckpt") in said


@pytest.mark.parametrize(
    ("content", "says"),
    [(b"", "is an empty file"), (b"not a checkpoint", "cannot be read"), (None, "cannot be read")],
)
def test_damaged_checkpoints_are_named_before_anything_is_written(run_dir, content, says):
    _fit_ann()
    path = ANN_CKPT / "last.ckpt"
    if content is None:  # truncated
        data = path.read_bytes()
        content = data[: len(data) // 2]
    path.write_bytes(content)
    before = _files(run_dir)
    with pytest.raises(SystemExit, match=f"ANN checkpoint {path} {says}"):
        main(["test", "-c", RECIPE, "--stage", "convert", *SNN_FAST])
    with pytest.raises(SystemExit, match=f"--ckpt_path {path} {says}"):
        main(["fit", "-c", RECIPE, "--stage", "ann", *FAST, "--ckpt_path", str(path)])
    assert _files(run_dir) == before


def test_a_checkpoint_folder_that_cannot_be_written_fails_before_training(run_dir):
    Path("runs").write_text("a file where the recipe's run folder goes")
    with pytest.raises(SystemExit, match=f"cannot write checkpoints to .*{ANN_CKPT} \\(.*runs is not writable\\)"):
        _fit_ann()
    assert _files(run_dir) == {run_dir / "runs"}


def test_quickstart_refuses_a_used_output_folder_and_bad_options_before_training(run_dir, capsys):
    used = run_dir / "qs"
    used.mkdir()
    (used / "results.json").write_text(json.dumps([]))
    for argv, says in [
        (["--output", str(used)], "holds files of an earlier run .* --overwrite"),
        (["--output", "new", "--scaling-factor", "0"], "--scaling-factor must be a number > 0"),
        (["--output", "new", "--sweep", "0"], "--sweep takes time-step counts, integers >= 1"),
        (["--output", "new", "--ann-epochs", "0"], "--ann-epochs must be an integer >= 1"),
    ]:
        with pytest.raises(SystemExit):
            main(["quickstart", *argv])
        assert re.search(says, capsys.readouterr().err), says
    assert not (run_dir / "new").exists()
    assert json.loads((used / "results.json").read_text()) == []


def _snn_and_data():
    import lightning as L

    import snn_ext
    from snn_ext.lightning import DigitsDataModule
    from snn_ext.models import VGG

    L.seed_everything(0, verbose=False)
    data = DigitsDataModule(batch_size=32)
    ann = VGG("vgg_small", 10, 1, 8, batch_norm=True, bias=True).eval()
    return snn_ext.convert(ann, data.calibration_batches(), "max", 3), data


def _trainer(**kwargs):
    import lightning as L

    options = {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 0, "logger": False}
    options |= {"enable_progress_bar": False, "enable_model_summary": False, "enable_checkpointing": False}
    return L.Trainer(**(options | kwargs))


def test_training_keeps_thresholds_and_leaks_in_range_and_counts_the_clamps():
    from functools import partial

    from snn_ext.core.neuron import MIN_THRESHOLD
    from snn_ext.lightning import SNNModule

    snn, data = _snn_and_data()
    from snn_ext.conversion.spiking_model import TimeBatchedNeuron

    neurons = [m.neuron for m in snn.modules() if isinstance(m, TimeBatchedNeuron)]
    with torch.no_grad():  # out of range, as a too large learning rate leaves them
        neurons[0].threshold.fill_(-4.9)
        neurons[1].beta.fill_(-4.9)
        neurons[2].beta.fill_(1.5)
    trainer = _trainer()
    trainer.fit(SNNModule(snn, partial(torch.optim.SGD, lr=0.0)), datamodule=data)
    assert neurons[0].threshold.min() >= MIN_THRESHOLD
    assert neurons[1].beta.min() == 0
    assert neurons[2].beta.max() == 1
    assert trainer.callback_metrics["train/clamped"] == 3  # one value each, clamped once (then in range)


@pytest.mark.parametrize("where", ["loss", "parameter"])
def test_a_non_finite_loss_or_parameter_stops_training_before_a_checkpoint(tmp_path, where):
    from functools import partial

    from lightning.pytorch.callbacks import ModelCheckpoint

    from snn_ext.lightning import SNNModule

    snn, data = _snn_and_data()
    lr = 1e-3
    if where == "loss":
        with torch.no_grad():  # the classifier's bias: a NaN before it would stop at the next spiking layer
            list(snn.parameters())[-1].fill_(float("nan"))
    else:
        lr = float("nan")  # the step itself writes NaN into the weights
    checkpoints = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=1)
    trainer = _trainer(enable_checkpointing=True, callbacks=[checkpoints])
    says = r"the training loss is nan at step 0 \(epoch 0, batch 0\)" if where == "loss" else r"made .*weight.* NaN"
    with pytest.raises(FloatingPointError, match=says):
        trainer.fit(SNNModule(snn, partial(torch.optim.SGD, lr=lr)), datamodule=data)
    assert list(tmp_path.iterdir()) == []


def test_a_saved_snn_records_what_it_is_and_refuses_another_model():
    import snn_ext
    from snn_ext.conversion import skeleton
    from snn_ext.lightning import ConvertedSNN
    from snn_ext.models import VGG

    torch.manual_seed(0)
    ann = VGG("vgg_small", 10, 1, 8, batch_norm=True, bias=True).eval()
    snn = snn_ext.convert(ann, torch.rand(16, 1, 8, 8), "percentile", 4)
    assert snn.description() == {
        "timesteps": 4, "encoder": "direct", "target": "snntorch", "neuron": "diet", "readout": "mean",
        "kappa": None, "method": "percentile",
    }  # fmt: skip
    state = snn.state_dict()
    assert all(isinstance(value, torch.Tensor) for value in state.values())  # the description too (uint8 JSON)
    restored = skeleton(ann, timesteps=4)
    restored.load_state_dict(state)
    assert restored.method == "percentile"  # a skeleton takes the stored method
    for model, says in [
        (skeleton(ann, timesteps=5), "timesteps=4 but this model has timesteps=5"),
        (skeleton(ann, timesteps=4, encoder="hybrid"), "encoder='direct' but this model has encoder='hybrid'"),
        (skeleton(ann, timesteps=4, neuron="single_spike"), "neuron='diet' but this model has neuron='single_spike'"),
    ]:
        with pytest.raises(ValueError, match=says):
            model.load_state_dict(state)
    skeleton(ann, timesteps=4, target="spikingjelly").load_state_dict(state)  # the other target: translated
    wrapped = {f"snn.{key}": value for key, value in state.items()}
    with pytest.raises(ValueError, match="method='percentile' but this model has method='max'"):
        ConvertedSNN(ann, method="max", timesteps=4).load_state_dict(wrapped)
    with pytest.raises(ValueError, match="encoder='direct' but this model has encoder='hybrid'"):
        ConvertedSNN(ann, timesteps=4, encoder="hybrid").load_state_dict(wrapped)


def test_energy_report_needs_the_timesteps_of_an_snn_and_reads_one_hot_labels():
    from snn_ext.energy import report
    from snn_ext.snntorch import DietLeaky

    class StepLoop(torch.nn.Module):  # runs 4 steps, has no `timesteps` attribute
        def __init__(self):
            super().__init__()
            self.fc, self.lif = torch.nn.Linear(3, 3), DietLeaky(init_hidden=True)

        def forward(self, x):
            self.lif.reset_mem()
            return sum(self.lif(self.fc(x)) for _ in range(4)) / 4

    torch.manual_seed(0)
    x, y = torch.rand(3, 3), torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="timesteps= is needed: StepLoop has spiking neurons"):
        report(StepLoop(), [(x, y)])
    net = StepLoop()
    by_index = report(net, [(x, y)], timesteps=4).accuracy
    assert report(net, [(x, torch.eye(3)[y])], timesteps=4).accuracy == by_index  # B equals the class count
    with pytest.raises(ValueError, match="must be one-hot"):
        report(net, [(x, torch.full((3, 3), 0.5))], timesteps=4)
    with pytest.raises(ValueError, match=r"class indices \[B\] .* or one-hot"):
        report(net, [(x, y.float())], timesteps=4)
    assert report(torch.nn.Linear(3, 3), [(x, y)]).timesteps == 1  # an ANN: one pass


def test_fire_once_neurons_continue_their_sequence_through_a_detached_potential():
    from snn_ext.snntorch import SingleSpikeLeaky

    torch.manual_seed(0)
    x_seq = torch.rand(8, 4, 16) * 0.9

    def run(detach_every: int | None) -> torch.Tensor:
        lif = SingleSpikeLeaky(beta=0.9, threshold=1.0)
        mem, spikes = lif.reset_mem(), []
        for t, x in enumerate(x_seq):
            spk, mem = lif(x, mem)
            spikes.append(spk)
            if detach_every and t % detach_every == detach_every - 1:
                mem = mem.detach()  # snnTorch's truncated-BPTT idiom: the same sequence goes on
        return torch.stack(spikes)

    spikes = run(detach_every=2)
    assert spikes.sum(0).max() == 1  # every neuron fires at most once
    assert torch.equal(spikes, run(detach_every=None))
    assert spikes.sum() > 10


def test_conversion_refuses_what_it_cannot_run_in_the_users_terms():
    import snn_ext

    torch.manual_seed(0)
    ann = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 3))
    good = torch.rand(8, 1, 8, 8)
    with pytest.raises(ValueError, match=r"the ANN cannot run on the calibration batches \(shape \(8, 3, 8, 8\)\)"):
        snn_ext.convert(ann, torch.rand(8, 3, 8, 8), "max", 4)
    with pytest.raises(ValueError, match=r"calibration batch 1 has shape \(8, 1, 6, 6\), but the first"):
        snn_ext.convert(ann, [good, torch.rand(8, 1, 6, 6)], "max", 4)
    bad = good.clone()
    bad[3, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="calibration batch 1 holds NaN or inf"):
        snn_ext.convert(ann, [good, bad], "max", 4)  # `max` ignored the NaN before

    class DictOutput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = ann

        def forward(self, x):
            return {"logits": self.net(x)}

    with pytest.raises(TypeError, match="the ANN returns a dict, not a tensor of logits"):
        snn_ext.convert(DictOutput(), good, "max", 4)


@pytest.mark.parametrize("flatten", ["shape", "size", "size_call", "reshape", "flatten"])
def test_conversion_takes_the_ways_users_flatten(flatten):
    import snn_ext

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.act, self.fc = torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Linear(144, 3)

        def forward(self, x):
            x = self.act(self.conv(x))
            if flatten == "shape":
                x = x.view(x.shape[0], -1)
            elif flatten == "size":
                x = x.view(x.size(0), -1)
            elif flatten == "size_call":
                x = x.reshape(x.size()[0], -1)
            elif flatten == "reshape":
                x = x.reshape(x.shape[0], x.shape[1] * x.shape[2] * x.shape[3])
            else:
                x = x.flatten(1)
            return self.fc(x)

    torch.manual_seed(0)
    net, x = Net().eval(), torch.rand(8, 1, 8, 8)
    snn = snn_ext.convert(net, x, "max", 64)
    assert snn(x).shape == (8, 3)
    assert (snn(x) - net(x)).abs().max() < 0.1 * net(x).abs().max()
