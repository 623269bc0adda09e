"""ANN-to-SNN conversion: rate-coding limit, both targets, SpikingJelly recipes, errors, the ANN untouched."""

import copy

import pytest
import torch
from conversion_nets import Residual, SmallCNN
from spikingjelly.activation_based import ann2snn, functional
from torch import nn

import snn_ext
from snn_ext.conversion import SpikingModel
from snn_ext.conversion.graph import Scale
from snn_ext.conversion.spiking_model import make_neuron
from snn_ext.core.energy import OpCounter
from snn_ext.snntorch import DietLeaky
from snn_ext.spikingjelly import DietLIFNode
from snn_ext.spikingjelly.recipes import DistributionAwareRecipe, MaxRecipe, PercentileRecipe


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(2)
    return torch.rand(64, 1, 8, 8)


METHOD_OPTIONS = {"max": {}, "percentile": {"percentile": 100.0}, "distribution_aware": {}}


@pytest.mark.parametrize("target", ["snntorch", "spikingjelly"])
@pytest.mark.parametrize("method", list(METHOD_OPTIONS))
def test_large_t_reproduces_the_ann_logits(images, method, target):
    ann = SmallCNN().eval()
    with torch.no_grad():
        expected = ann(images)
        snn = snn_ext.convert(ann, [images[:32], images[32:]], method, 512, target, **METHOD_OPTIONS[method])
        logits = snn(images)
    assert isinstance(snn, SpikingModel)
    assert logits.shape == expected.shape
    error = (logits - expected).abs().max() / expected.abs().max()
    assert error < 0.05, (method, target, error.item())
    neuron_type = DietLeaky if target == "snntorch" else DietLIFNode
    assert [type(n) for n in snn.neurons()] == [neuron_type] * 3


def test_residual_network_with_scaled_shortcut(images):
    ann = Residual().eval()
    with torch.no_grad():
        snn = snn_ext.convert(ann, images, "max", 512)
        error = (snn(images) - ann(images)).abs().max() / ann(images).abs().max()
    assert error < 0.05
    scales = [m for m in snn.modules() if isinstance(m, Scale)]
    assert len(scales) == 1  # only the identity shortcut into the addition needs an explicit amplitude


SAVED_MODELS = {
    "residual-distribution_aware": (Residual, "distribution_aware", {"shifts": (0.5,)}, {}),
    "cnn-single_spike-spike_time": (
        SmallCNN,
        "percentile",
        {"scaling_factor": 0.5},
        {"encoder": "hybrid", "neuron": "single_spike", "readout": "spike_time", "kappa": 0.5},
    ),
}


@pytest.mark.parametrize("target", ["snntorch", "spikingjelly"])
@pytest.mark.parametrize("name", list(SAVED_MODELS))
def test_skeleton_restores_a_trained_snn_from_its_state_dict(images, tmp_path, name, target):
    architecture, method, options, snn_options = SAVED_MODELS[name]
    snn = snn_ext.convert(architecture().eval(), images, method, 3, target, **snn_options, **options)
    torch.manual_seed(3)
    with torch.no_grad():  # as fine-tuning would: every weight, leak and threshold moves
        for parameter in snn.parameters():
            parameter.mul_(1 + 0.05 * torch.rand_like(parameter))
    torch.save(snn.state_dict(), tmp_path / "snn.pt")
    other_weights = architecture()
    with torch.no_grad():
        for parameter in other_weights.parameters():
            parameter.zero_()  # only the architecture is needed
    restored = snn_ext.conversion.skeleton(other_weights, 3, target, **snn_options)
    restored.load_state_dict(torch.load(tmp_path / "snn.pt"))
    snn.eval()
    restored.eval()
    with torch.no_grad():
        assert torch.equal(restored(images), snn(images))
    if architecture is Residual:  # calibrated values that only buffers carry: per-channel initial potentials, a Scale
        fractions = [m.initial_fraction for m in restored.modules() if hasattr(m, "initial_fraction")]
        assert all(f.dim() == 1 for f in fractions)  # the skeleton's per-layer values took the stored [C] shape
        assert 0.5 in set(torch.cat(fractions).tolist()) <= {0.0, 0.5}  # dead channels start at 0
        factors = [m.factor for m in restored.modules() if isinstance(m, Scale)]
        assert len(factors) == 1
        assert factors[0].dim() == 1
        assert not torch.equal(factors[0], torch.ones_like(factors[0]))


@pytest.mark.parametrize("target", ["snntorch", "spikingjelly"])
@pytest.mark.parametrize("name", list(SAVED_MODELS))
def test_no_state_or_graph_stays_in_the_model_after_a_training_step(images, name, target):
    """A copy of the model (an EMA or best-model copy) can be taken right after backward, and equals it."""
    architecture, method, options, snn_options = SAVED_MODELS[name]
    snn = snn_ext.convert(architecture().eval(), images, method, 3, target, **snn_options, **options).train()
    snn(images).sum().backward()
    for neuron in snn.neurons():
        state = neuron.mem if target == "snntorch" else neuron.v
        assert not (isinstance(state, torch.Tensor) and state.requires_grad)  # no autograd graph kept
        if target == "snntorch":  # snnTorch keeps every neuron alive in a class-level list: no batch-sized state
            assert state.numel() == 0
    copied = copy.deepcopy(snn).eval()
    with torch.no_grad():
        assert torch.equal(copied(images), snn.eval()(images))


@pytest.mark.parametrize("target", ["snntorch", "spikingjelly"])
def test_a_float64_ann_gives_a_float64_snn_with_unrounded_thresholds(images, target):
    ann = Residual().double().eval()
    x = images.double()
    snn = snn_ext.convert(ann, x, "max", 4, target)
    assert {value.dtype for value in snn.state_dict().values() if value.is_floating_point()} == {torch.float64}
    first = snn.neurons()[0]
    threshold = first.threshold if target == "snntorch" else first.v_threshold
    assert threshold.item() == ann.conv0(x).max().item()  # the calibrated peak, not its float32 rounding
    assert snn(x).dtype == torch.float64
    assert torch.get_default_dtype() == torch.float32  # the conversion left torch's default as it was


@pytest.mark.parametrize("method", list(METHOD_OPTIONS))
def test_both_targets_give_identical_outputs(images, method):
    ann = SmallCNN().eval()
    options = METHOD_OPTIONS[method]
    with torch.no_grad():
        st = snn_ext.convert(ann, images, method, 4, "snntorch", **options)(images)
        sj = snn_ext.convert(ann, images, method, 4, "spikingjelly", **options)(images)
    torch.testing.assert_close(st, sj, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("recipe", "method"),
    [(MaxRecipe, "max"), (PercentileRecipe, "percentile"), (DistributionAwareRecipe, "distribution_aware")],
)
def test_spikingjelly_recipes_match_convert(images, recipe, method):
    ann = SmallCNN().eval()
    snn = ann2snn.Converter(recipe([images], timesteps=3)).convert(ann)
    assert isinstance(snn, SpikingModel)
    with torch.no_grad():
        expected = snn_ext.convert(ann, images, method, 3, "spikingjelly")(images)
        got = snn(images)
    torch.testing.assert_close(got, expected)
    functional.reset_net(snn)  # SpikingJelly idioms still apply


def test_converter_plugins():
    assert set(snn_ext.list_plugins("converter")) >= {"max", "percentile", "distribution_aware"}
    recipe = snn_ext.create("converter", "percentile", framework="spikingjelly", calibration_data=[torch.rand(2, 3)])
    assert isinstance(recipe, PercentileRecipe)


def test_conversion_never_modifies_the_ann(images):
    ann = SmallCNN().train()
    before = copy.deepcopy(ann.state_dict())
    for method in METHOD_OPTIONS:
        snn_ext.convert(ann, images, method, 2)
    ann2snn.Converter(PercentileRecipe(images, timesteps=2)).convert(ann)
    after = ann.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert ann.training
    assert isinstance(ann.act1, nn.ReLU)
    assert isinstance(ann.bn1, nn.BatchNorm2d)


def test_spiking_model_interface_and_energy(images):
    ann = SmallCNN().eval()
    snn = snn_ext.convert(ann, images, "distribution_aware", 2, encoder="hybrid")
    assert not any(module.training for module in snn.modules())  # in eval mode, wrapper and graph alike
    assert snn.timesteps == 2
    assert snn.encoder.__name__ == "hybrid"
    snn.timesteps = 5
    assert all(m.timesteps == 5 for m in snn.graph.modules() if hasattr(m, "initial_fraction"))
    with torch.no_grad(), OpCounter(snn) as ops:
        snn(images)
    # the first layer sees the analog step (MACs) and the input spikes (ACs); later layers only spikes
    assert ops.layers["graph.conv1"].macs > 0
    assert ops.layers["graph.conv1"].acs > 0
    for name in ("graph.conv2", "graph.fc1", "graph.fc2"):
        assert ops.layers[name].macs == 0, name
    with pytest.raises(ValueError, match="timesteps must be an integer >= 2"):
        snn.timesteps = 1


def test_spiking_model_is_trainable(images):
    snn = snn_ext.convert(SmallCNN().eval(), images, "percentile", 4, "spikingjelly")
    loss = nn.functional.cross_entropy(snn(images), torch.zeros(64, dtype=torch.long))
    loss.backward()
    neurons = snn.neurons()
    assert all(n.v_threshold.grad is not None for n in neurons)
    assert any(n.v_threshold.grad.abs() > 0 for n in neurons)


def test_unsupported_layer_is_named():
    ann = nn.Sequential(nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 2))
    with pytest.raises(TypeError, match=r"layer '1' \(Sigmoid\) is not supported\. Supported modules: Conv1d"):
        snn_ext.convert(ann, torch.rand(8, 4))

    class FunctionalGelu(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act = nn.Linear(4, 4), nn.ReLU()

        def forward(self, x):
            return self.act(nn.functional.gelu(self.fc(x)))

    with pytest.raises(TypeError, match="operation 'gelu' .* is not supported"):
        snn_ext.convert(FunctionalGelu(), torch.rand(8, 4))
    no_statistics = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.ReLU())
    with pytest.raises(TypeError, match="BatchNorm layer '1' keeps no running statistics"):
        snn_ext.convert(no_statistics, torch.rand(8, 4))
    with pytest.raises(ValueError, match="dropout layer '2' has p=1.0"):
        snn_ext.convert(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Dropout(1.0), nn.Linear(4, 2)), torch.rand(8, 4))


def test_untraceable_model():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.act = nn.Linear(4, 4), nn.ReLU()

        def forward(self, x):
            return self.act(self.fc(x)) if x.sum() > 0 else x

    with pytest.raises(TypeError, match="could not trace Branchy with torch.fx"):
        snn_ext.convert(Branchy(), torch.rand(8, 4))


def test_bad_calibration_data_and_arguments():
    ann = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="calibration_data is empty"):
        snn_ext.convert(ann, [])
    with pytest.raises(TypeError, match="must be re-iterable"):
        snn_ext.convert(ann, (torch.rand(2, 4) for _ in range(2)))
    with pytest.raises(TypeError, match="calibration batches must be tensors"):
        snn_ext.convert(ann, [["not", "tensors"]])
    with pytest.raises(
        snn_ext.PluginNotFoundError, match="known converter plugins: distribution_aware, max, percentile, qcfs"
    ):
        snn_ext.convert(ann, torch.rand(2, 4), method="spikezip")
    with pytest.raises(ValueError, match="target must be one of snntorch, spikingjelly"):
        snn_ext.convert(ann, torch.rand(2, 4), target="norse")
    with pytest.raises(ValueError, match="encoder must be one of direct, hybrid"):
        snn_ext.convert(ann, torch.rand(2, 4), encoder="poisson")
    with pytest.raises(ValueError, match="scaling_factor must be > 0"):
        snn_ext.convert(ann, torch.rand(2, 4), scaling_factor=0)
    silent = nn.Sequential(nn.Linear(4, 4, bias=False), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="activation '1' never saw a positive input"):
        snn_ext.convert(silent, torch.zeros(2, 4), method="max")
    with pytest.raises(TypeError, match="no ReLU, ClippedReLU or QCFS activation"):
        snn_ext.convert(nn.Sequential(nn.Linear(4, 2)), torch.rand(2, 4))


@pytest.mark.parametrize("target", ["snntorch", "spikingjelly"])
@pytest.mark.parametrize("width", [3, 5])  # C == W and C != W
def test_per_channel_initial_potential_acts_on_channels(target, width):
    """A per-channel threshold and initial fraction start each channel (dimension 1) at fraction * threshold."""
    channels = 3
    neuron = make_neuron(target, torch.tensor([1.0, 2.0, 4.0]), 1, torch.tensor([0.5, 0.25, 0.0]), step_dims=4)
    x = torch.full((2, channels, 4, width), 0.6)  # T=1: one step
    spikes = neuron(x)
    # first step by hand: u = start + 0.6 with start = (0.5, 0.5, 0.0) per channel; spike where u > threshold
    expected = torch.tensor([1.0, 0.0, 0.0]).view(1, channels, 1, 1).expand_as(x)
    assert torch.equal(spikes, expected)
    potential = neuron.potential
    torch.testing.assert_close(potential[:, :, 0, 0], torch.tensor([[0.1, 1.1, 0.6]]).expand(2, -1))


@pytest.mark.parametrize("target", ["snntorch", "spikingjelly"])
def test_micro_batches_bound_the_activations_and_keep_the_logits(images, target):
    snn = snn_ext.convert(Residual().eval(), images, "distribution_aware", 16, target)
    with torch.no_grad():
        whole = snn(images)
        snn.micro_batch = 3
        seen = []
        hooks = [m.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0])) for m in snn.graph.modules()]
        chunked = snn(images)
        for hook in hooks:
            hook.remove()
    assert torch.equal(chunked, whole)
    assert max(seen) == 16 * 3  # T * micro_batch rows at most, whatever B
    assert "micro_batch=3" in repr(snn)
    with pytest.raises(ValueError, match="micro_batch must be an integer >= 1"):
        snn.micro_batch = 0
