"""Moving a converted network between frameworks: ``snn_ext.to_framework`` and checkpoints of the other target.

A conv net with pooling (per-channel ``distribution_aware``), a residual net and an MLP (per-layer ``percentile``),
leak 1 and leak < 1: the moved copy gives the same logits (``torch.equal``) and the same gradients.
"""

import pytest
import torch
from conversion_nets import Residual, SmallCNN
from torch import nn

import snn_ext
from snn_ext.conversion import skeleton
from snn_ext.conversion.spiking_model import TimeBatchedNeuron

OTHER = {"snntorch": "spikingjelly", "spikingjelly": "snntorch"}


def _mlp() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))


NETS = {
    "cnn-per-channel": (lambda: SmallCNN(dropout=0.0), "distribution_aware"),
    "residual": (Residual, "max"),
    "mlp-per-layer": (_mlp, "percentile"),
}


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(2)
    return torch.rand(32, 1, 8, 8)


def _converted(name: str, target: str, images: torch.Tensor, leak: float = 1.0):
    make, method = NETS[name]
    snn = snn_ext.convert(make().eval(), images, method, 4, target)
    if leak != 1.0:
        with torch.no_grad():
            for neuron in snn.neurons():
                (neuron.beta if target == "snntorch" else neuron.leak).fill_(leak)
    return snn


def _logits_and_grads(snn, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    snn.zero_grad()
    logits = snn(images)
    (logits * torch.linspace(-1, 1, logits.numel()).view_as(logits)).sum().backward()
    return logits.detach(), [p.grad.reshape(-1) for p in snn.parameters()]


def _neuron_params(snn) -> list[torch.Tensor]:
    return [p.detach().reshape(-1) for n in snn.neurons() for p in n.parameters()]


@pytest.mark.parametrize("leak", [1.0, 0.875])
@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("source", ["snntorch", "spikingjelly"])
def test_to_framework_gives_identical_logits_and_gradients(source, name, leak, images):
    snn = _converted(name, source, images, leak).train()
    moved = snn_ext.to_framework(snn, OTHER[source])
    assert moved.target == OTHER[source]
    assert all(type(n).__module__.startswith(f"snn_ext.{OTHER[source]}") for n in moved.neurons())
    assert all(type(n).__module__.startswith(f"snn_ext.{source}") for n in snn.neurons())  # the original is kept
    logits, grads = _logits_and_grads(snn, images)
    m_logits, m_grads = _logits_and_grads(moved, images)
    assert torch.equal(logits, m_logits)
    assert logits.std() > 0
    assert len(grads) == len(m_grads)
    for g, m in zip(grads, m_grads, strict=True):
        torch.testing.assert_close(g, m, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(_neuron_params(snn), _neuron_params(moved), strict=True))
    back = snn_ext.to_framework(moved, source)
    assert torch.equal(back(images), snn(images))
    assert back.state_dict().keys() == snn.state_dict().keys()


def test_trainability_dtype_and_initial_potentials_travel(images):
    snn = _converted("cnn-per-channel", "snntorch", images).double()
    first = snn.neurons()[0]
    first.beta.requires_grad_(False)
    moved = snn_ext.to_framework(snn, "spikingjelly")
    node = moved.neurons()[0]
    assert not node.leak.requires_grad
    assert node.v_threshold.requires_grad
    assert node.v_threshold.dtype == torch.float64
    assert node.v_threshold.shape == (6,)  # snnTorch's [C, 1, 1] becomes SpikingJelly's [C]
    assert first.threshold.shape == (6, 1, 1)
    layers = [m for m in moved.modules() if isinstance(m, TimeBatchedNeuron)]
    assert layers[0].initial_fraction.abs().sum() > 0  # distribution_aware's initial potentials came along
    assert torch.equal(moved(images.double()), snn(images.double()))


@pytest.mark.parametrize("source", ["snntorch", "spikingjelly"])
def test_a_checkpoint_of_one_target_loads_into_the_others_model(source, images):
    snn = _converted("cnn-per-channel", source, images, leak=0.875)
    state = snn.state_dict()
    built = _converted("cnn-per-channel", OTHER[source], images)  # converted: it knows its layers' shapes
    built.load_state_dict(state)
    assert torch.equal(built(images), snn(images))
    if source == "snntorch":  # into a skeleton too, where SpikingJelly's [C] needs no layer shape
        restored = skeleton(SmallCNN(dropout=0.0).eval(), timesteps=4, target="spikingjelly")
        restored.load_state_dict(state)
        assert torch.equal(restored(images), snn(images))


def test_what_cannot_move_is_refused_clearly(images):
    with pytest.raises(TypeError, match="Linear holds no snn-ext neuron"):
        snn_ext.to_framework(nn.Linear(2, 2), "spikingjelly")
    snn = _converted("mlp-per-layer", "snntorch", images)
    with pytest.raises(ValueError, match="target must be one of snntorch, spikingjelly"):
        snn_ext.to_framework(snn, "norse")
    snn.neurons()[0].threshold = torch.full((4, 32), 0.5)  # per neuron: snnTorch only
    with pytest.raises(ValueError, match=r"per-neuron parameter of shape \(4, 32\) has no per-channel equivalent"):
        snn_ext.to_framework(snn, "spikingjelly")
    sj = skeleton(SmallCNN(dropout=0.0).eval(), timesteps=4, target="spikingjelly")
    sj.load_state_dict(_converted("cnn-per-channel", "spikingjelly", images).state_dict())
    with pytest.raises(ValueError, match="needs the layer's number of dimensions"):
        snn_ext.to_framework(sj, "snntorch")  # a skeleton that never ran: its layers' shapes are unknown
    sj(images)
    assert torch.equal(snn_ext.to_framework(sj, "snntorch")(images), sj(images))


def test_a_recipe_evaluates_an_snntorch_checkpoint_with_spikingjelly_neurons(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    from snn_ext.cli import main

    monkeypatch.chdir(tmp_path)
    recipe = str(Path(__file__).parents[1] / "recipes" / "diet_snn" / "digits_vgg_small.yaml")
    fast = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]
    fast += ["--trainer.enable_progress_bar", "false"]
    snn = [*fast, "--model.init_args.net.init_args.calibration_batches", "1", "--trainer.limit_test_batches", "2"]
    main(["fit", "-c", recipe, "--stage", "ann", *fast])
    main(["fit", "-c", recipe, "--stage", "snn", *snn])  # snnTorch neurons
    capsys.readouterr()
    main(["test", "-c", recipe, "--stage", "snn", *snn])
    snntorch_acc = capsys.readouterr().out
    main(["test", "-c", recipe, "--stage", "snn", *snn, "--model.init_args.net.init_args.target", "spikingjelly"])
    spikingjelly_acc = capsys.readouterr().out
    rows = [next(line for line in out.splitlines() if "test/acc" in line) for out in (snntorch_acc, spikingjelly_acc)]
    assert rows[0] == rows[1]


def _plain_snntorch_net() -> nn.Module:
    from snn_ext.snntorch import DietLeaky, SingleSpikeLeaky

    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        DietLeaky(
            beta=torch.full((4, 1, 1), 0.875),
            threshold=torch.tensor([0.5, 1.0, 0.75, 0.25]).view(4, 1, 1),
            init_hidden=True,
        ),  # fmt: skip
        nn.Flatten(),
        nn.Linear(144, 16),
        SingleSpikeLeaky(beta=1.0, threshold=0.5, init_hidden=True),
        nn.Linear(16, 3),
        DietLeaky(beta=0.5, threshold=0.25, init_hidden=True),
    )
    with torch.no_grad():
        for layer in (net[0], net[3], net[5]):
            layer.weight.mul_(3)
    return net


def _step_loop(net: nn.Module, images: torch.Tensor, steps: int = 4) -> torch.Tensor:
    from spikingjelly.activation_based import functional

    from snn_ext.snntorch import reset

    reset(net)
    functional.reset_net(net)
    return torch.stack([net(images) for _ in range(steps)])


def test_plain_networks_move_between_init_hidden_and_single_step_mode(images):
    from snn_ext.spikingjelly import DietLIFNode, SingleSpikeLIFNode

    net = _plain_snntorch_net()
    _step_loop(net, images).sum().backward()  # a net that has run: its states have autograd history
    sj = snn_ext.to_framework(net, "spikingjelly")
    net.zero_grad()
    assert [type(m) for m in sj if "LIF" in type(m).__name__] == [DietLIFNode, SingleSpikeLIFNode, DietLIFNode]
    assert sj[1].v_threshold.shape == (4,)
    assert sj[1].step_mode == "s"
    x1, x2 = images.clone().requires_grad_(), images.clone().requires_grad_()
    out, sj_out = _step_loop(net, x1), _step_loop(sj, x2)
    assert torch.equal(out, sj_out)
    assert out.sum() > 0
    out.sum().backward()
    sj_out.sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(net[1].threshold.grad.reshape(4), sj[1].v_threshold.grad)
    with pytest.raises(ValueError, match="pass sample= .* to to_framework"):
        snn_ext.to_framework(sj, "snntorch")  # SpikingJelly's [C] does not say which dimension the channels are
    back = snn_ext.to_framework(sj, "snntorch", sample=images)
    assert back[1].threshold.shape == (4, 1, 1)
    assert torch.equal(_step_loop(back, images), out)


def test_plain_networks_refuse_what_the_other_framework_cannot_call(images):
    from spikingjelly.activation_based import functional

    from snn_ext.snntorch import DietLeaky

    with pytest.raises(ValueError, match="called with an explicit mem .* build it with init_hidden=True"):
        snn_ext.to_framework(nn.Sequential(nn.Linear(4, 4), DietLeaky()), "spikingjelly")
    sj = snn_ext.to_framework(_plain_snntorch_net(), "spikingjelly")
    functional.set_step_mode(sj, "m")
    with pytest.raises(ValueError, match=r"step mode 'm' .* functional.set_step_mode\(net, 's'\)"):
        snn_ext.to_framework(sj, "snntorch", sample=images)
