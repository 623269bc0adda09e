"""The same conv net in snnTorch and in SpikingJelly gives identical spikes, potentials and gradients."""

import pytest
import torch
from spikingjelly.activation_based import functional, layer
from torch import nn

from snn_ext.snntorch import DietLeaky, reset
from snn_ext.spikingjelly import DietLIFNode

T, B = 5, 4


def _ann_layers() -> nn.ModuleList:
    torch.manual_seed(0)
    layers = nn.ModuleList([nn.Conv2d(2, 6, 3, padding=1), nn.AvgPool2d(2), nn.Conv2d(6, 8, 3, padding=1)])
    layers.append(nn.Linear(8 * 4 * 4, 3))
    return layers


def _neuron_params():
    return [
        (torch.linspace(0.7, 1.0, 6), torch.linspace(0.2, 0.6, 6)),  # per channel
        (torch.tensor(0.9), torch.tensor(0.4)),  # per layer
    ]


class SnnTorchNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.pool, self.conv2, self.fc = _ann_layers()
        (l1, v1), (l2, v2) = _neuron_params()
        # snnTorch's broadcasting: one value per channel of a [B, C, H, W] input is shape [C, 1, 1]
        self.lif1 = DietLeaky(beta=l1.view(-1, 1, 1), threshold=v1.view(-1, 1, 1))
        self.lif2 = DietLeaky(beta=l2, threshold=v2)

    def forward(self, x):  # direct input: the analog image at every step; returns the layer records
        reset(self)
        records = {"s1": [], "u1": [], "s2": [], "u2": []}
        logits = 0
        for _ in range(T):
            s1, u1 = self.lif1(self.conv1(x))
            s2, u2 = self.lif2(self.conv2(self.pool(s1)))
            logits = logits + self.fc(s2.flatten(1))
            for key, value in zip(records, (s1, u1, s2, u2), strict=True):
                records[key].append(value)
        return logits, {k: torch.stack(v) for k, v in records.items()}

    def forward_sequence(self, x):
        reset(self)
        cur = self.conv1(x).expand(T, *self.conv1(x).shape)
        s1, u1 = self.lif1.forward_sequence(cur)
        s2, u2 = self.lif2.forward_sequence(self.conv2(self.pool(s1.flatten(0, 1))).unflatten(0, (T, x.shape[0])))
        logits = self.fc(s2.flatten(2)).sum(0)
        return logits, {"s1": s1, "u1": u1, "s2": s2, "u2": u2}


def _sj_net(step_mode: str) -> nn.Sequential:
    conv1, pool, conv2, fc = _ann_layers()
    (l1, v1), (l2, v2) = _neuron_params()
    net = nn.Sequential(
        layer.Conv2d(2, 6, 3, padding=1),
        DietLIFNode(leak=l1, v_threshold=v1, store_v_seq=True),
        layer.AvgPool2d(2),
        layer.Conv2d(6, 8, 3, padding=1),
        DietLIFNode(leak=l2, v_threshold=v2, store_v_seq=True),
        layer.Flatten(),
        layer.Linear(8 * 4 * 4, 3),
    )
    net[0].load_state_dict(conv1.state_dict())
    net[3].load_state_dict(conv2.state_dict())
    net[6].load_state_dict(fc.state_dict())
    functional.set_step_mode(net, step_mode)
    return net


def _run_sj(net: nn.Sequential, x: torch.Tensor):
    functional.reset_net(net)
    records = {"s1": [], "s2": []}
    hooks = [net[i].register_forward_hook(lambda m, i, o, k=k: records[k].append(o)) for i, k in ((1, "s1"), (4, "s2"))]
    logits = net(x.expand(T, *x.shape)).sum(0) if net[0].step_mode == "m" else sum(net(x) for _ in range(T))
    for h in hooks:
        h.remove()
    out = {k: torch.cat(v) if net[0].step_mode == "m" else torch.stack(v) for k, v in records.items()}
    out["u1"], out["u2"] = net[1].v_seq, net[4].v_seq
    return logits, out


def _grads(named_params):
    return {n: p.grad.clone() for n, p in named_params}


@pytest.fixture
def x():
    torch.manual_seed(1)
    return torch.rand(B, 2, 8, 8) * 2


@pytest.mark.parametrize("sj_mode", ["s", "m"])
@pytest.mark.parametrize("st_path", ["forward", "forward_sequence"])
def test_identical_values_and_gradients(x, sj_mode, st_path):
    st = SnnTorchNet()
    sj = _sj_net(sj_mode)
    target = torch.tensor([0, 1, 2, 0])
    st_logits, st_rec = getattr(st, st_path)(x)
    sj_logits, sj_rec = _run_sj(sj, x)
    assert st_rec["s1"].sum() > 0, "the test net must spike in layer 1"
    assert st_rec["s2"].sum() > 0, "the test net must spike in layer 2"
    for key in ("s1", "s2"):
        assert torch.equal(st_rec[key], sj_rec[key]), key
    for key in ("u1", "u2"):
        torch.testing.assert_close(st_rec[key], sj_rec[key], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(st_logits, sj_logits, rtol=1e-6, atol=1e-6)

    nn.functional.cross_entropy(st_logits, target).backward()
    nn.functional.cross_entropy(sj_logits, target).backward()
    st_names = {
        "conv1.weight": "0.weight",
        "conv2.weight": "3.weight",
        "fc.weight": "6.weight",
        "lif1.beta": "1.leak",
        "lif1.threshold": "1.v_threshold",
        "lif2.beta": "4.leak",
        "lif2.threshold": "4.v_threshold",
    }
    st_grads, sj_grads = _grads(st.named_parameters()), _grads(sj.named_parameters())
    for st_name, sj_name in st_names.items():
        assert st_grads[st_name].abs().sum() > 0, st_name
        st_grad = st_grads[st_name].reshape(sj_grads[sj_name].shape)  # [C, 1, 1] and [C]
        torch.testing.assert_close(st_grad, sj_grads[sj_name], rtol=1e-5, atol=1e-6)


def test_single_step_loops_are_bit_identical(x):
    st, sj = SnnTorchNet(), _sj_net("s")
    st_logits, st_rec = st(x)
    sj_logits, sj_rec = _run_sj(sj, x)
    for key in st_rec:
        assert torch.equal(st_rec[key], sj_rec[key]), key
    assert torch.equal(st_logits, sj_logits)
