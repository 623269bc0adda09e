"""ConvertedSNN: validation at construction, conversion on build, ANN checkpoints in both formats."""

import pytest
import torch
from torch import nn

from snn_ext.conversion import SpikingModel
from snn_ext.lightning import ConvertedSNN


def ann() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"target": "brian2"}, ValueError, "target must be one of snntorch, spikingjelly, got 'brian2'"),
        ({"encoder": "rate"}, ValueError, "encoder must be one of direct, hybrid"),
        ({"neuron": "ttfs"}, ValueError, "neuron must be one of"),
        ({"calibration_batches": 0}, ValueError, "calibration_batches must be an integer >= 1"),
        ({"calibration_batches": 2.5}, ValueError, "calibration_batches must be an integer >= 1"),
        ({"timesteps": 0}, ValueError, "timesteps must be an integer >= 1"),
        ({"timesteps": 2.5}, ValueError, "timesteps must be an integer >= 1"),
        ({"encoder": "hybrid", "timesteps": 1}, ValueError, "timesteps must be an integer >= 2"),
        ({"options": {"percentil": 99.0}}, TypeError, "accepted: percentile, scaling_factor"),
        ({"checkpoint": "missing/last.ckpt"}, FileNotFoundError, "--stage ann"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, error, match):
    with pytest.raises(error, match=match):
        ConvertedSNN(ann(), **kwargs)


def test_build_converts_and_forwards_timesteps():
    net = ConvertedSNN(ann(), method="max", timesteps=3)
    with pytest.raises(RuntimeError, match="build"):
        net(torch.rand(2, 1, 4, 4))
    assert not net.built
    assert list(net.parameters()) == []  # the ANN is not a submodule
    net.build([(torch.rand(8, 1, 4, 4), torch.zeros(8))])
    assert isinstance(net.snn, SpikingModel)
    assert net(torch.rand(2, 1, 4, 4)).shape == (2, 4)
    net.timesteps = 5
    assert net.snn.timesteps == 5
    with pytest.raises(ValueError, match="timesteps must be an integer >= 1"):
        net.timesteps = 0


@pytest.mark.parametrize("lightning_format", [True, False])
def test_checkpoint_weights_are_loaded(tmp_path, lightning_format):
    trained = ann()
    with torch.no_grad():
        trained[1].weight.add_(1.0)
    state = trained.state_dict()
    if lightning_format:  # what ANNModule's checkpoints hold
        state = {"state_dict": {f"net.{key}": value for key, value in state.items()}}
    torch.save(state, tmp_path / "ann.ckpt")
    net = ConvertedSNN(ann(), checkpoint=str(tmp_path / "ann.ckpt"), method="max", timesteps=2)
    net.build([torch.rand(8, 1, 4, 4)])
    assert torch.equal(net.ann[1].weight, trained[1].weight)
