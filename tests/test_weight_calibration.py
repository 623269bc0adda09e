"""Weight calibration of ``distribution_aware``: the least-squares correction, the patches it regresses on, and
what it does to a converted network (same parameters as the skeleton, smaller error, named skips)."""

import warnings

import pytest
import torch
from torch import nn

import snn_ext
from snn_ext.conversion import DistributionAwareConversion, skeleton
from snn_ext.conversion.graph import prepare
from snn_ext.conversion.methods import _patches
from snn_ext.core.calibration import LinearCorrection


@pytest.mark.parametrize("bias", [True, False])
def test_linear_correction_recovers_a_linear_map(bias):
    torch.manual_seed(0)
    weight, offset = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    correction = LinearCorrection(5, 3, bias=bias, ridges=(1e-9,), samples=700)
    for _ in range(3):  # streamed in batches, each subsampled to 700 rows
        x = torch.randn(1000, 5, dtype=torch.float64)
        correction.update(x, x @ weight.T + (offset if bias else 0.0))
    delta_w, delta_b = correction.solve()
    assert correction.ridge == 1e-9
    torch.testing.assert_close(delta_w, weight)
    if bias:
        torch.testing.assert_close(delta_b, offset)
    else:
        assert delta_b is None


def test_linear_correction_does_not_overfit_few_rows():
    """Residuals unrelated to the features, as many rows as features: held-out rows choose no change at all,
    where the best-fitting correction would only memorise noise."""
    torch.manual_seed(0)
    correction = LinearCorrection(40, 3, bias=True)
    correction.update(torch.randn(60, 40), torch.randn(60, 3))
    delta_w, delta_b = correction.solve()
    assert correction.ridge is None
    assert not delta_w.any()
    assert not delta_b.any()
    informative = LinearCorrection(40, 3, bias=True)  # the same rows with a real linear relation: corrected
    x = torch.randn(600, 40)
    informative.update(x, x @ torch.randn(40, 3) + 0.1 * torch.randn(600, 3))
    assert informative.ridge is None
    informative.solve()
    assert informative.ridge is not None


def test_linear_correction_errors():
    with pytest.raises(ValueError, match="ridges must be a non-empty tuple of values > 0"):
        LinearCorrection(4, 2, bias=True, ridges=(0.0,))
    with pytest.raises(ValueError, match=r"holdout must lie in \(0, 1\)"):
        LinearCorrection(4, 2, bias=True, holdout=1.0)
    correction = LinearCorrection(4, 2, bias=False)
    with pytest.raises(ValueError, match=r"expected features \[N, 4\] and residuals \[N, 2\]"):
        correction.update(torch.randn(10, 3), torch.randn(10, 2))
    with pytest.raises(ValueError, match="need rows to fit and rows held out"):
        correction.solve()


@pytest.mark.parametrize(
    "layer",
    [
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Conv2d(3, 4, (3, 2), stride=2, dilation=(1, 2), padding=(2, 0)),
        nn.Conv2d(3, 4, 4, padding="same"),
        nn.Conv2d(3, 4, 3, padding="valid"),
        nn.Conv1d(3, 4, 3, stride=2, padding=1),
        nn.Conv1d(3, 4, 4, padding="same"),
        nn.Linear(3, 4),
    ],
    ids=repr,
)
def test_patches_reproduce_the_layer(layer):
    """Rows times the flattened weight give the layer's output: the regression is on the right features."""
    torch.manual_seed(0)
    shape = {nn.Conv2d: (2, 3, 7, 8), nn.Conv1d: (2, 3, 9), nn.Linear: (2, 5, 3)}[type(layer)]
    x = torch.randn(shape)
    layer.register_parameter("bias", None)
    expected = layer(x)
    rows = _patches(layer, x) @ layer.weight.flatten(1).T
    if not isinstance(layer, nn.Linear):
        expected = expected.flatten(2).transpose(1, 2)
    torch.testing.assert_close(rows, expected.reshape(-1, 4))


class Residual(nn.Module):
    """Conv stem, a residual block (BatchNorm before the addition), global average pooling, linear."""

    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(1, 8, 3, padding=1, bias=bias)
        self.act0 = nn.ReLU()
        self.conv1, self.bn1, self.act1 = nn.Conv2d(8, 8, 3, padding=1, bias=bias), nn.BatchNorm2d(8), nn.ReLU()
        self.conv2, self.bn2, self.act2 = nn.Conv2d(8, 8, 3, padding=1, bias=bias), nn.BatchNorm2d(8), nn.ReLU()
        self.pool, self.flatten, self.fc = nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10, bias=bias)

    def forward(self, x):
        y = self.act0(self.conv0(x))
        y = self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(y))))) + y)
        return self.fc(self.flatten(self.pool(y)))


def residual_ann(bias: bool = True) -> nn.Module:
    torch.manual_seed(0)
    ann = Residual(bias)
    with torch.no_grad():  # BatchNorm statistics of random images, so folding changes the weights
        ann.train()(torch.rand(64, 1, 8, 8))
    return ann.eval()


def logit_error(snn, ann, x) -> float:
    with torch.no_grad():
        reference = ann(x)
        return ((snn(x) - reference).norm() / reference.norm()).item()


@pytest.mark.parametrize("timesteps", [1, 2])
def test_calibration_lowers_the_logit_error_of_a_residual_net(timesteps):
    ann = residual_ann()
    images, test = torch.rand(256, 1, 8, 8), torch.rand(128, 1, 8, 8)
    errors = {}
    for flag in (False, True):
        snn = snn_ext.convert(ann, images, "distribution_aware", timesteps, calibrate_weights=flag)
        errors[flag] = logit_error(snn, ann, test)
    assert errors[True] < 0.7 * errors[False], errors


@pytest.mark.parametrize("bias", [True, False])
def test_calibrated_model_has_the_skeletons_parameters(bias):
    """A layer without a bias keeps none: the checkpoint of a calibrated conversion loads into skeleton()."""
    ann = residual_ann(bias)
    images = torch.rand(64, 1, 8, 8)
    snn = snn_ext.convert(ann, images, "distribution_aware", 2)
    plain = snn_ext.convert(ann, images, "distribution_aware", 2, calibrate_weights=False)
    restored = skeleton(ann, 2)
    restored.load_state_dict(snn.state_dict())
    assert snn.state_dict().keys() == plain.state_dict().keys() == restored.state_dict().keys()
    torch.testing.assert_close(restored(images), snn(images), rtol=0, atol=0)
    changed = [key for key, value in snn.state_dict().items() if not torch.equal(value, plain.state_dict()[key])]
    assert {"graph.conv2.weight", "graph.fc.weight"} <= set(changed)
    assert ("graph.fc.bias" in changed) == bias


def test_uncalibrated_weights_are_the_anns():
    """calibrate_weights=False keeps the BN-folded ANN's biases and the first layer's weights (amplitudes only
    scale the weights of layers that take spikes)."""
    ann = residual_ann()
    snn = snn_ext.convert(ann, torch.rand(64, 1, 8, 8), "distribution_aware", 2, calibrate_weights=False)
    folded = prepare(ann).graph
    torch.testing.assert_close(snn.graph.conv0.weight, folded.conv0.weight, rtol=0, atol=0)
    for name in ("conv0", "conv1", "conv2", "fc"):
        bias = snn.graph.get_submodule(name).bias
        torch.testing.assert_close(bias, folded.get_submodule(name).bias, rtol=0, atol=0)
    with pytest.raises(TypeError, match="calibrate_weights must be True or False"):
        DistributionAwareConversion(calibrate_weights="yes")


def test_layers_it_cannot_correct_are_named_once():
    torch.manual_seed(0)
    ann = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.AvgPool2d(2),  # pooling between the conv and its activation
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, groups=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64, 10),
    ).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        snn_ext.convert(ann, torch.rand(32, 1, 8, 8), "distribution_aware", 2, per_channel=False)
    messages = [str(w.message) for w in caught if "weight calibration" in str(w.message)]
    assert len(messages) == 1, messages
    assert "activation '1'" not in messages[0]
    assert "activation '2' (not fed by a conv/linear layer" in messages[0]
    assert "'3' (grouped convolution" in messages[0]


def test_three_d_convolutions_are_named_as_skipped():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv3d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(128, 10)).eval()
    with pytest.warns(UserWarning, match=r"left these layers as in the ANN: '0' \(3-d convolution\)$"):
        snn_ext.convert(ann, torch.rand(16, 1, 4, 4, 4), "distribution_aware", 2)
