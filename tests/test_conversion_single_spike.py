"""Conversion to the single-spike hybrid SNN (Datta, Kundu & Beerel 2021): fire-once neurons of both
frameworks, the spike-time read-out, calibration, gradients, errors and a short fine-tune."""

import conversion_nets
import pytest
import torch
from spikingjelly.activation_based import ann2snn, functional
from torch import nn

import snn_ext
from snn_ext.conversion.spiking_model import TimeBatchedNeuron
from snn_ext.core import clamp_leak_
from snn_ext.core.calibration import percentile
from snn_ext.core.encoding import hybrid
from snn_ext.data import digits
from snn_ext.snntorch import DietLeaky, SingleSpikeLeaky
from snn_ext.spikingjelly import SingleSpikeLIFNode
from snn_ext.spikingjelly.recipes import DistributionAwareRecipe, PercentileRecipe

T = 5
SINGLE_SPIKE = {"encoder": "hybrid", "neuron": "single_spike", "readout": "spike_time"}


def relu_cnn() -> nn.Module:
    """The conversion tests' CNN with a plain ReLU, max pooling and dropout 0.2 before the classifier."""
    return conversion_nets.SmallCNN(nn.ReLU(), nn.MaxPool2d, dropout=0.2)


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(2)
    return torch.rand(48, 1, 8, 8)


def spike_counts(snn, images):
    """Per layer, spikes per neuron summed over the sequence ``[B, ...]``, read by hooks on every neuron."""
    counts = []
    modules = [m for m in snn.modules() if isinstance(m, TimeBatchedNeuron)]
    hooks = [
        m.register_forward_hook(lambda m, args, out: counts.append(out.unflatten(0, (m.timesteps, -1)).sum(0)))
        for m in modules
    ]
    try:
        with torch.no_grad():
            snn(images)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(counts) == len(modules)
    return counts


@pytest.mark.parametrize("target", ["snntorch", "spikingjelly"])
def test_single_spike_model_and_fire_once_property(images, target):
    ann = relu_cnn().eval()
    snn = snn_ext.convert(ann, images, "percentile", T, target, **SINGLE_SPIKE)
    neuron_type = SingleSpikeLeaky if target == "snntorch" else SingleSpikeLIFNode
    assert [type(n) for n in snn.neurons()] == [neuron_type] * 4  # three hidden layers and the output
    assert (snn.neuron, snn.readout, snn.kappa, snn.target) == ("single_spike", "spike_time", 1.0, target)
    assert "neuron=single_spike, readout=spike_time, kappa=1.0" in repr(snn)
    counts = spike_counts(snn, images)
    assert all(c.max() <= 1 for c in counts)  # every neuron, output included, fires at most once per image
    assert all(c.sum() > 0 for c in counts)  # and every layer does fire
    # the same network with DIET neurons fires several times per neuron: the bound above is not trivial
    diet = snn_ext.convert(ann, images, "percentile", T, target, encoder="hybrid")
    assert max(c.max() for c in spike_counts(diet, images)) > 1
    # the state (potential, spike-time record, step counter) starts afresh at every call, also on a new batch size
    with torch.no_grad():
        first = snn(images)
        torch.testing.assert_close(snn(images[:7]), first[:7])
        torch.testing.assert_close(snn(images), first)
    assert first.shape == (images.shape[0], 4)
    assert torch.isfinite(first).all()


@pytest.mark.parametrize("readout", ["spike_time", "mean"])
def test_both_targets_give_identical_outputs_and_gradients(images, readout):
    ann = relu_cnn().eval()
    labels = torch.arange(images.shape[0]) % 4
    results = []
    for target in ("snntorch", "spikingjelly"):
        snn = snn_ext.convert(
            ann, images, "percentile", T, target, encoder="hybrid", neuron="single_spike", readout=readout
        )
        logits = snn(images)
        nn.functional.cross_entropy(logits, labels).backward()
        thresholds = [n.threshold if target == "snntorch" else n.v_threshold for n in snn.neurons()]
        results.append((logits.detach(), [t.grad for t in thresholds], snn.graph.conv1.weight.grad))
    (st_logits, st_thr, st_w), (sj_logits, sj_thr, sj_w) = results
    torch.testing.assert_close(st_logits, sj_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(st_thr, sj_thr, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(st_w, sj_w, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("target", ["snntorch", "spikingjelly"])
def test_gradients_reach_weights_thresholds_and_leaks(images, target):
    snn = snn_ext.convert(relu_cnn().eval(), images, "percentile", T, target, **SINGLE_SPIKE)
    loss = nn.functional.cross_entropy(snn(images), torch.arange(images.shape[0]) % 4)
    loss.backward()
    for name in ("conv1", "conv2", "fc1", "fc2"):
        assert_useful_grad(snn.graph.get_submodule(name).weight)
    for neuron in snn.neurons():
        threshold, leak = (neuron.threshold, neuron.beta) if target == "snntorch" else (neuron.v_threshold, neuron.leak)
        assert_useful_grad(threshold)
        assert_useful_grad(leak)


def assert_useful_grad(param):
    assert param.grad is not None
    assert torch.isfinite(param.grad).all()
    assert param.grad.abs().sum() > 0


def test_calibration_runs_the_fire_once_hybrid_snn(images):
    ann = relu_cnn().eval()
    diet = snn_ext.convert(ann, images, "percentile", T, encoder="hybrid")
    single = snn_ext.convert(ann, images, "percentile", T, **SINGLE_SPIKE)
    diet_thr = [n.threshold.item() for n in diet.neurons()]
    single_thr = [n.threshold.item() for n in single.neurons()]
    assert single_thr[0] == pytest.approx(diet_thr[0])  # the first layer sees the same hybrid input
    assert single_thr[1:3] != pytest.approx(diet_thr[1:3])  # later layers see fire-once spikes
    # output threshold: 99.7th percentile of the output layer's current at each step, max over steps
    with torch.no_grad():
        currents = single.graph(hybrid(images, T).flatten(0, 1)).unflatten(0, (T, -1))
    expected = max(percentile(c, 99.7) for c in currents)
    assert single.output_neuron.threshold.item() == pytest.approx(expected, rel=1e-5)


def test_max_method_and_spikingjelly_recipe(images):
    ann = relu_cnn().eval()
    snn = snn_ext.convert(ann, images, "max", T, **SINGLE_SPIKE)
    assert all(c.max() <= 1 for c in spike_counts(snn, images))
    recipe = PercentileRecipe([images], timesteps=T, kappa=0.5, **SINGLE_SPIKE)
    converted = ann2snn.Converter(recipe).convert(ann)
    expected = snn_ext.convert(ann, images, "percentile", T, "spikingjelly", kappa=0.5, **SINGLE_SPIKE)
    assert converted.kappa == 0.5
    assert all(isinstance(n, SingleSpikeLIFNode) for n in converted.neurons())
    with torch.no_grad():
        torch.testing.assert_close(converted(images), expected(images))
    functional.reset_net(converted)


def test_defaults_are_unchanged(images):
    snn = snn_ext.convert(relu_cnn().eval(), images, "percentile", 3)
    assert (snn.neuron, snn.readout, snn.kappa, snn.output_neuron) == ("diet", "mean", None, None)
    assert all(type(n) is DietLeaky for n in snn.neurons())
    assert "neuron=diet, readout=mean" in repr(snn)
    assert "kappa" not in repr(snn)


def test_spike_time_readout_also_on_diet_neurons(images):
    snn = snn_ext.convert(relu_cnn().eval(), images, "percentile", T, "spikingjelly", readout="spike_time", kappa=0.0)
    *hidden, output = snn.neurons()
    assert all(type(n).__name__ == "DietLIFNode" for n in hidden)
    assert isinstance(output, SingleSpikeLIFNode)
    with torch.no_grad():  # kappa = 0: the logits are the integrated membrane, i.e. the current summed over T
        currents = snn.graph(images.expand(T, *images.shape).flatten(0, 1)).unflatten(0, (T, -1))
        torch.testing.assert_close(snn(images), currents.sum(0), rtol=1e-5, atol=1e-5)


def test_timesteps_stay_assignable(images):
    snn = snn_ext.convert(relu_cnn().eval(), images, "percentile", T, neuron="single_spike", readout="spike_time")
    snn.timesteps = 3
    assert all(m.timesteps == 3 for m in snn.modules() if isinstance(m, TimeBatchedNeuron))
    assert snn(images).shape == (images.shape[0], 4)
    with pytest.raises(ValueError, match="readout='spike_time' needs timesteps >= 2"):
        snn.timesteps = 1


def test_bad_options_are_named(images):
    ann = relu_cnn().eval()
    with pytest.raises(ValueError, match="neuron must be one of 'diet', 'single_spike', got 'ttfs'"):
        snn_ext.convert(ann, images, neuron="ttfs")
    with pytest.raises(ValueError, match="readout must be one of 'mean', 'spike_time', got 'rate'"):
        snn_ext.convert(ann, images, readout="rate")
    with pytest.raises(ValueError, match="readout='spike_time' needs timesteps >= 2"):
        snn_ext.convert(ann, images, timesteps=1, readout="spike_time")
    with pytest.raises(ValueError, match="kappa .* applies only to readout='spike_time'"):
        snn_ext.convert(ann, images, kappa=2.0)
    with pytest.raises(ValueError, match="kappa must be a number >= 0"):
        snn_ext.convert(ann, images, readout="spike_time", kappa=-1.0)
    with pytest.raises(ValueError, match="cannot calibrate fire-once neurons: use neuron='single_spike' with"):
        snn_ext.convert(ann, images, "distribution_aware", neuron="single_spike")
    with pytest.raises(ValueError, match="cannot calibrate fire-once neurons"):
        DistributionAwareRecipe([images], neuron="single_spike")
    with pytest.raises(ValueError, match="readout must be one of"):
        PercentileRecipe([images], readout="first_spike")
    with pytest.raises(ValueError, match="timesteps must be an integer >= 2"):  # the hybrid encoder's own limit
        snn_ext.convert(ann, images, timesteps=1, encoder="hybrid", neuron="single_spike")


def digits_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


def test_short_fine_tune_on_digits_reduces_the_loss():
    """Train an ANN briefly, convert it (DIET-SNN's scaling 0.3), then a few Adam steps on the spike-time
    + membrane cross-entropy lower the loss."""
    x_train, y_train, _, _ = digits()
    torch.manual_seed(0)
    ann = digits_cnn()
    optimizer = torch.optim.Adam(ann.parameters(), lr=3e-3)
    for _ in range(2):
        for batch in torch.randperm(len(y_train)).split(64):
            loss = nn.functional.cross_entropy(ann(x_train[batch]), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    calibration = list(x_train[:256].split(128))
    snn = snn_ext.convert(ann.eval(), calibration, "percentile", T, scaling_factor=0.3, **SINGLE_SPIKE)
    x, y = x_train[:256], y_train[:256]

    def loss_on_subset():
        with torch.no_grad():
            return nn.functional.cross_entropy(snn(x), y).item()

    before = loss_on_subset()
    optimizer = torch.optim.Adam(snn.parameters(), lr=1e-3)
    for step in range(15):
        batch = torch.arange(step * 64, (step + 1) * 64)
        loss = nn.functional.cross_entropy(snn(x_train[batch]), y_train[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        clamp_leak_(snn)
    after = loss_on_subset()
    assert after < 0.85 * before, (before, after)
    assert all(c.max() <= 1 for c in spike_counts(snn, x))
