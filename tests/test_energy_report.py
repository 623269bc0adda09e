"""snn_ext.energy.report: hand-computed counts, a converted SpikingModel, the ANN, bad arguments."""

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import snn_ext
from snn_ext.conversion.spiking_model import TimeBatchedNeuron
from snn_ext.core.energy import OpCounter
from snn_ext.energy import EnergyReport, EnergyTable, report
from snn_ext.snntorch import DietLeaky


class StepLoopNet(nn.Module):
    """conv 1->2 (3x3, 6x6 -> 4x4), IF, conv 2->3 (3x3, 4x4 -> 2x2), IF, linear 12->4; a per-step loop.

    conv1 copies the centre pixel to channel 0 and its negation to channel 1; with threshold 1 and no
    leak, a current >= 2 fires at every step and a current <= 0 never, so the spikes repeat each step.
    conv2's channel 0 sums twice the channel-0 spikes of its window, channel 1 never fires, channel 2
    sums twice the channel-1 spikes.
    """

    def __init__(self, timesteps: int | None = 4):
        super().__init__()
        if timesteps is not None:
            self.timesteps = timesteps
        self.steps = timesteps or 4
        self.conv1 = nn.Conv2d(1, 2, 3, bias=False)  # fan-in 9, fan-out 18
        self.lif1 = DietLeaky(beta=1.0, threshold=1.0)
        self.conv2 = nn.Conv2d(2, 3, 3, bias=False)  # fan-in 18, fan-out 27
        self.lif2 = DietLeaky(beta=1.0, threshold=1.0)
        self.fc = nn.Linear(12, 4, bias=False)  # fan-in 12, fan-out 4
        with torch.no_grad():
            self.conv1.weight.zero_()
            self.conv1.weight[0, 0, 1, 1], self.conv1.weight[1, 0, 1, 1] = 1.0, -1.0
            self.conv2.weight.zero_()
            self.conv2.weight[0, 0], self.conv2.weight[1], self.conv2.weight[2, 1] = 2.0, -1.0, 2.0
            self.fc.weight.zero_()
            self.fc.weight[2, 0] = 1.0  # class 2 <- conv2 channel 0 at (0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem1 = torch.zeros(x.shape[0], 2, 4, 4)
        mem2 = torch.zeros(x.shape[0], 3, 2, 2)
        out = torch.zeros(x.shape[0], 4)
        for _ in range(self.steps):
            spk1, mem1 = self.lif1(self.conv1(x), mem1)
            spk2, mem2 = self.lif2(self.conv2(spk1), mem2)
            out = out + self.fc(spk2.flatten(1))
        return out / self.steps


def hand_image() -> torch.Tensor:
    """Analog 6x6 image; conv1 (centre pixel) sees +3 at (0,0), (0,1), (3,3) and -3 at (0,3), (3,0)."""
    x = torch.full((1, 1, 6, 6), 0.7)
    x[0, 0, 1:5, 1:5] = 0.0
    for i, j in [(0, 0), (0, 1), (3, 3)]:
        x[0, 0, i + 1, j + 1] = 3.0  # channel-0 spikes, every step
    for i, j in [(0, 3), (3, 0)]:
        x[0, 0, i + 1, j + 1] = -3.0  # channel-1 spikes, every step
    return x


# By hand, per image, T = 4:
# conv1: analog at every step: 4 steps * (2*4*4 outputs) * 9 = 1152 MACs; ANN 288.
# conv2: 5 input spikes per step (32 neurons): 4 * 5 * 27 = 540 SOPs; 20/32 spikes per neuron; ANN 3*2*2*18 = 216.
#   outputs: channel 0 fires at windows holding (0,0), (0,1) or (3,3): (0,0), (0,1), (1,1); channel 2 at windows
#   holding (0,3) or (3,0): (0,1), (1,0) -> 5 spikes per step into fc.
# fc: 4 * 5 * 4 = 80 SOPs; 20/12 spikes per neuron; ANN 12*4 = 48.
HAND = {
    "conv1": ("analog", 1152, 0, 0.0, 288),
    "conv2": ("spikes", 0, 540, 20 / 32, 216),
    "fc": ("spikes", 0, 80, 20 / 12, 48),
}


@pytest.mark.parametrize("layout", ["tensor", "loader"])
def test_per_step_loop_matches_hand_counts(layout):
    net = StepLoopNet(timesteps=4).train()
    images = hand_image().repeat(3, 1, 1, 1)
    labels = torch.tensor([2, 2, 0])
    data = images if layout == "tensor" else DataLoader(TensorDataset(images, labels), batch_size=2)
    r = report(net, data)
    assert net.training  # mode restored
    assert r.images == 3
    assert r.timesteps == 4
    assert [layer.name for layer in r.layers] == list(HAND)
    for layer in r.layers:
        kind, macs, sops, spikes, ann_macs = HAND[layer.name]
        assert layer.input_kind == kind
        assert layer.macs == macs
        assert layer.sops == sops
        assert layer.spikes_per_neuron == pytest.approx(spikes)
        assert layer.ann_macs == ann_macs
        assert layer.energy_pj == pytest.approx(macs * 4.6 + sops * 0.9)
    assert r.macs == 1152
    assert r.sops == 620
    assert r.ann_macs == 552
    assert r.snn_energy_pj == pytest.approx(1152 * 4.6 + 620 * 0.9)  # 5857.2
    assert r.ann_energy_pj == pytest.approx(552 * 4.6)  # 2539.2
    assert r.reduction == pytest.approx(2539.2 / 5857.2)
    assert r.spikes_per_neuron == pytest.approx(40 / 44)  # hidden: (20 + 20) spikes / (32 + 12) neurons
    assert r.accuracy == (None if layout == "tensor" else pytest.approx(2 / 3))


def test_explicit_timesteps_table_and_outputs():
    net = StepLoopNet(timesteps=None)  # no `timesteps` attribute: T must be given
    r = report(net, [hand_image()], timesteps=4, table=EnergyTable(mac_pj=3.2, ac_pj=0.1))
    assert r.ann_macs == 552
    assert r.snn_energy_pj == pytest.approx(1152 * 3.2 + 620 * 0.1)
    assert r.ann_energy_pj == pytest.approx(552 * 3.2)
    data = r.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["table"] == {"mac_pj": 3.2, "ac_pj": 0.1}
    assert data["layers"][1] == {
        "name": "conv2",
        "input_kind": "spikes",
        "neurons": 32.0,
        "spikes_per_neuron": 0.625,
        "sops": 540.0,
        "macs": 0.0,
        "energy_pj": pytest.approx(54.0),
        "ann_macs": 216.0,
    }
    text = r.format()
    for phrase in ("MAC 3.2 pJ, AC 0.1 pJ", "direct encoding", "step 0 only with hybrid", "output layer", "conv2"):
        assert phrase in text
    assert "Horowitz" in report(net, hand_image(), timesteps=4).format()


def tiny_ann() -> nn.Sequential:
    torch.manual_seed(0)
    ann = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(64, 16), nn.ReLU()
    )
    ann.append(nn.Linear(16, 10))
    with torch.no_grad():
        for layer in (ann[0], ann[4]):
            layer.weight.mul_(3)
    return ann.eval()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.rand(32, 1, 8, 8)


@pytest.mark.parametrize("encoder", ["direct", "hybrid"])
def test_spiking_model_is_consistent_with_its_spikes_and_the_ann(images, encoder):
    ann = tiny_ann()
    snn = snn_ext.convert(ann, images, "percentile", 4, encoder=encoder)
    spikes: list[float] = [0.0, 0.0]
    neurons = [m for m in snn.graph.modules() if isinstance(m, TimeBatchedNeuron)]
    handles = [
        neuron.register_forward_hook(lambda m, i, out, k=k: spikes.__setitem__(k, spikes[k] + float(out.sum())))
        for k, neuron in enumerate(neurons)
    ]
    r = report(snn, [images[:20], images[20:]])
    for handle in handles:
        handle.remove()
    ann_report = report(ann, images)

    first, fc1, fc2 = r.layers
    assert [layer.name for layer in r.layers] == ["graph.0", "graph.4", "graph.6"]
    # the first layer: MACs at the analog steps (every step, or step 0 then input spikes)
    assert first.input_kind == {"direct": "analog", "hybrid": "mixed"}[encoder]
    assert first.macs == first.ann_macs * (4 if encoder == "direct" else 1)
    assert (first.sops > 0) == (encoder == "hybrid")
    # hidden layers: spikes only; SOPs = spikes * fan-out, spikes counted at the neurons themselves
    assert fc1.input_kind == fc2.input_kind == "spikes"
    assert fc1.neurons == 4 * 8 * 8  # average-pooled spikes count where they entered the pooling
    assert fc2.neurons == 16
    assert fc1.spikes_per_neuron == pytest.approx(spikes[0] / 32 / 256)
    assert fc2.spikes_per_neuron == pytest.approx(spikes[1] / 32 / 16)
    assert fc1.sops == pytest.approx(spikes[0] / 32 * 16)
    assert fc2.sops == pytest.approx(spikes[1] / 32 * 10)  # the output layer's input spikes
    hidden_sops = sum(layer.spikes_per_neuron * layer.neurons * fan_out for layer, fan_out in ((fc1, 16), (fc2, 10)))
    assert r.sops - first.sops == pytest.approx(hidden_sops)
    assert r.spikes_per_neuron == pytest.approx(sum(spikes) / 32 / (256 + 16))
    assert r.snn_energy_pj == pytest.approx(r.macs * 4.6 + r.sops * 0.9)
    # the iso-architecture ANN: the SNN's dense-equivalent MACs / T equal the ANN counted alone
    with torch.no_grad(), OpCounter(ann) as ops:
        ann(images)
    assert [layer.ann_macs for layer in r.layers] == [ops.layers[name].macs / 32 for name in ("0", "4", "6")]
    assert [layer.ann_macs for layer in r.layers] == [layer.macs for layer in ann_report.layers]
    assert r.ann_energy_pj == pytest.approx(ann_report.snn_energy_pj)
    assert r.reduction == pytest.approx(ann_report.snn_energy_pj / r.snn_energy_pj)


def test_ann_reports_reduction_one(images):
    ann = tiny_ann().train()
    r = report(ann, DataLoader(TensorDataset(images, torch.zeros(32, dtype=torch.long)), batch_size=8))
    assert ann.training
    assert r.timesteps == 1
    assert all(layer.input_kind == "analog" for layer in r.layers)
    assert [layer.macs for layer in r.layers] == [4 * 64 * 9, 16 * 64, 10 * 16]
    assert r.sops == 0
    assert r.spikes_per_neuron == 0.0
    assert r.reduction == 1.0
    assert r.snn_energy_pj == pytest.approx((4 * 64 * 9 + 16 * 64 + 10 * 16) * 4.6)
    assert 0.0 <= r.accuracy <= 1.0


def test_max_batches_limits_the_images(images):
    assert report(tiny_ann(), list(images.split(8)), max_batches=2).images == 16


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"data": []}, ValueError, "data is empty"),
        ({"data": torch.zeros(0, 1, 8, 8)}, ValueError, "data is empty"),
        ({"timesteps": 0}, ValueError, "timesteps must be an integer >= 1, got 0"),
        ({"timesteps": 2.5}, ValueError, "timesteps must be an integer >= 1"),
        ({"max_batches": 0}, ValueError, "max_batches must be an integer >= 1"),
        ({"data": 3}, TypeError, r"data must be a tensor \[B, \.\.\.\] or an iterable of batches"),
        ({"data": ["images"]}, TypeError, "data batches must be tensors or"),
        ({"table": (4.6, 0.9)}, TypeError, "table must be an EnergyTable"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    arguments = {"data": torch.rand(2, 1, 8, 8)} | kwargs
    with pytest.raises(error, match=match):
        report(tiny_ann(), **arguments)


def test_model_without_synaptic_layers_and_bad_logits_raise():
    with pytest.raises(ValueError, match="no Conv1d/2d/3d or Linear layer"):
        report(nn.ReLU(), torch.rand(2, 3))
    with pytest.raises(ValueError, match=r"logits \[B, classes\]"):
        report(nn.Linear(3, 2), [(torch.rand(2, 3), torch.zeros(5, dtype=torch.long))])
    with pytest.raises(ValueError, match="images must be an integer >= 1"):
        EnergyReport.from_counts({}, images=0, timesteps=1)
