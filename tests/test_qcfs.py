"""QCFS (Bu et al., ICLR 2022): the activation and the ``qcfs`` converter."""

import pytest
import torch
from spikingjelly.activation_based import ann2snn
from torch import nn

import snn_ext
from snn_ext.models import QCFS
from snn_ext.spikingjelly.recipes import QCFSRecipe


def test_qcfs_activation_levels_and_gradients():
    act = QCFS(levels=4, init=2.0)
    x = torch.tensor([-1.0, 0.1, 0.24, 0.26, 0.74, 1.0, 1.8, 5.0], requires_grad=True)
    y = act(x)
    # clip / L * clamp(floor(L x / clip + 0.5), 0, L) with clip 2, L 4: steps of 0.5, rounding at 0.25, 0.75, ...
    assert y.tolist() == [0.0, 0.0, 0.0, 0.5, 0.5, 1.0, 2.0, 2.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]  # straight through inside [0, clip]
    assert act.clip.grad is not None
    with pytest.raises(ValueError, match="levels must be an integer >= 1"):
        QCFS(levels=0)
    with pytest.raises(ValueError, match="shift must lie in"):
        QCFS(shift=1.0)


def qcfs_mlp(levels: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), QCFS(levels, init=1.5), nn.Linear(32, 10)).eval()


@pytest.mark.parametrize("target", ["snntorch", "spikingjelly"])
def test_qcfs_conversion_is_exact_for_one_hidden_layer_at_t_equal_l(target):
    """Constant (direct) input: an IF neuron started at half its threshold gives the QCFS activation after L steps."""
    ann = qcfs_mlp(4)
    images = torch.rand(128, 1, 8, 8)
    snn = snn_ext.convert(ann, images, "qcfs", 4, target)
    with torch.no_grad():
        torch.testing.assert_close(snn(images), ann(images), rtol=1e-5, atol=1e-5)
    neuron = snn.neurons()[0]
    threshold = neuron.threshold if target == "snntorch" else neuron.v_threshold
    assert threshold.item() == pytest.approx(ann[2].clip.item())


def test_qcfs_refuses_other_activations_and_runs_as_spikingjelly_recipe():
    relu = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.ReLU(), nn.Linear(10, 3)).eval()
    with pytest.raises(TypeError, match="method 'qcfs' converts QCFS activations"):
        snn_ext.convert(relu, torch.rand(4, 1, 8, 8), "qcfs", 4)
    ann, images = qcfs_mlp(4), torch.rand(16, 1, 8, 8)
    snn = ann2snn.Converter(QCFSRecipe(images, timesteps=4)).convert(ann)
    with torch.no_grad():
        torch.testing.assert_close(snn(images), snn_ext.convert(ann, images, "qcfs", 4, "spikingjelly")(images))
    assert "qcfs" in snn_ext.list_plugins("converter")
