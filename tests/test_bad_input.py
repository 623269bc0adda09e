"""Bad input fails at the call with an error naming the argument; nothing is clamped silently."""

import pytest
import torch

from snn_ext.core import check_current, diet_lif_multistep, diet_lif_step, validate_values
from snn_ext.snntorch import DietLeaky
from snn_ext.spikingjelly import DietLIFNode


@pytest.mark.parametrize("value", [0.0, -1.0, torch.tensor([0.5, 0.0]), float("nan")])
def test_threshold_must_be_positive(value):
    with pytest.raises(ValueError, match="threshold"):
        DietLeaky(threshold=value)
    with pytest.raises(ValueError, match="v_threshold"):
        DietLIFNode(v_threshold=value)
    with pytest.raises(ValueError, match="threshold"):
        diet_lif_step(torch.ones(1, 2), None, 1.0, value if not isinstance(value, torch.Tensor) else float(value[1]))


@pytest.mark.parametrize("value", [-0.1, 1.5, torch.tensor([0.5, 1.2])])
def test_leak_must_lie_in_unit_interval(value):
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\]"):
        DietLeaky(beta=value)
    with pytest.raises(ValueError, match=r"leak must lie in \[0, 1\]"):
        DietLIFNode(leak=value)


def test_parameters_must_be_scalar_or_per_channel():
    # SpikingJelly face: [] or [C]; the snnTorch face takes any shape that broadcasts (checked at the call)
    with pytest.raises(ValueError, match=r"beta of shape \(2, 3\) does not broadcast against the input step \(2, 4\)"):
        DietLeaky(beta=torch.full((2, 3), 0.5))(torch.ones(2, 4))
    with pytest.raises(ValueError, match="beta must not be empty"):
        DietLeaky(beta=torch.ones(0))
    with pytest.raises(ValueError, match="v_threshold must be a scalar"):
        DietLIFNode(v_threshold=torch.ones(3, 1, 1))
    with pytest.raises(TypeError, match="leak must be a float or a tensor"):
        DietLIFNode(leak="0.5")


def test_per_channel_parameter_of_wrong_length():
    x = torch.rand(2, 4, 5, 5)
    with pytest.raises(ValueError, match=r"per-channel threshold has 3 values .* 4 channels"):
        diet_lif_step(x, None, 1.0, torch.ones(3))
    with pytest.raises(ValueError, match=r"per-channel leak has 3 values"):
        DietLIFNode(leak=torch.ones(3))(x)
    # snnTorch's rule: a 1-d parameter lines up with the last dimension; the message says how to go per channel
    with pytest.raises(ValueError, match=r"threshold of shape \(4,\) .* shape \[C, 1, 1\]"):
        DietLeaky(threshold=torch.ones(4))(x)
    with pytest.raises(ValueError, match=r"threshold of shape \(3,\)"):
        DietLeaky(threshold=torch.ones(3)).forward_sequence(x.unsqueeze(0))


def test_empty_time_dimension():
    with pytest.raises(ValueError, match="empty time dimension"):
        DietLeaky().forward_sequence(torch.empty(0, 2, 3))
    with pytest.raises(ValueError, match="empty time dimension"):
        DietLIFNode(step_mode="m")(torch.empty(0, 2, 3))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input(bad):
    x = torch.rand(5, 2, 3)
    x[2, 1, 0] = bad
    with validate_values():
        with pytest.raises(ValueError, match="NaN or inf"):
            DietLeaky().forward_sequence(x)
        with pytest.raises(ValueError, match="NaN or inf"):
            DietLeaky()(x[2])
        with pytest.raises(ValueError, match="NaN or inf"):
            DietLIFNode(step_mode="m")(x)
        with pytest.raises(ValueError, match="NaN or inf"):
            DietLIFNode()(x[2])
    assert not validate_values.enabled()  # the context restores the default
    # off by default: the values are not read (no host synchronisation), NaN propagates as in the frameworks
    assert DietLIFNode(step_mode="m")(x).shape == x.shape


def test_validate_values_switch():
    with pytest.raises(TypeError, match="mode must be True or False"):
        validate_values(1)
    validate_values(True)
    try:
        with pytest.raises(ValueError, match="x contains NaN"):
            diet_lif_step(torch.tensor([float("nan")]), None, 1.0, 1.0)
        with validate_values(False):
            diet_lif_step(torch.tensor([float("nan")]), None, 1.0, 1.0)
        assert validate_values.enabled()
    finally:
        validate_values(False)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.uint8])
def test_non_float_input(dtype):
    x = torch.ones(2, 3, dtype=dtype)
    with pytest.raises(TypeError, match="must be a floating-point tensor"):
        DietLeaky()(x)
    with pytest.raises(TypeError, match="must be a floating-point tensor"):
        DietLIFNode()(x)


def test_wrong_ranks_and_types():
    with pytest.raises(ValueError, match=r"x_seq must be a sequence \[T, B, ...\] with a time dimension"):
        diet_lif_multistep(torch.tensor(1.0), None, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"per-channel threshold has 2 values but the input \(\) has no channels"):
        diet_lif_step(torch.tensor(1.0), None, 1.0, torch.ones(2))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        check_current([1.0, 2.0], "x")


def test_membrane_of_wrong_shape():
    with pytest.raises(ValueError, match=r"u \(membrane potential\) must be None or a tensor of shape \(2, 3\)"):
        diet_lif_step(torch.ones(2, 3), torch.zeros(3, 2), 1.0, 1.0)
    with pytest.raises(ValueError, match="membrane potential"):  # zeros of another shape: snnTorch's reset state
        DietLeaky()(torch.ones(2, 3), torch.full((2, 4), 0.5))


def test_valid_values_are_not_altered():
    lif = DietLeaky(beta=1.0, threshold=1e-3)
    assert lif.beta.item() == 1.0
    assert lif.threshold.item() == pytest.approx(1e-3)
    node = DietLIFNode(leak=0.0)
    assert node.leak.item() == 0.0
