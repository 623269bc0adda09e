"""Training throughput (images/s) of a small spiking VGG with our neuron against snnTorch and SpikingJelly neurons.

The same network (3x3 convolutions without bias, 2x2 average pooling, a linear read-out summed over time)
is built once per neuron and trained on random CIFAR-sized images ``[B, 3, 32, 32]`` with direct input: the
first convolution runs once and its output drives the first neurons at every one of the ``T`` steps. One
training step = forward over ``[T, B, ...]``, cross-entropy, backward, SGD step. The networks take turns
step by step, so machine noise hits them alike; the table gives the median step time, images/s and the
speed-up of ours over each peer. ``--backend`` picks our kernel: ``cpu_compiled`` is what a long CPU training
run reaches (compilation happens in the warm-up steps), ``cpu_fused`` what it runs before.

Neurons: ours = ``snn_ext.spikingjelly.DietLIFNode`` in multi-step mode (trainable leak and threshold per
layer; the fused kernel of ``snn_ext.kernels``), snnTorch ``Leaky`` with its per-step Python loop (fixed
beta, and trainable beta and threshold), SpikingJelly ``ParametricLIFNode`` (trainable time constant) in
multi-step mode. The ``floor`` row replaces the neuron by a ReLU (no state, no time loop): the cost of the
rest of the step (convolutions, pooling, read-out, loss, SGD), so ``peer / floor`` bounds the speed-up that
any neuron can give this network.

    python benchmarks/training.py --backend cpu_compiled  # T=5, B=32, 10 timed steps, the steady state
    python benchmarks/training.py --iters 5 --widths 32 M 64 M
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from snn_ext import kernels


class SnnTorchSequence(nn.Module):
    """snnTorch ``Leaky`` over a sequence ``[T, B, ...]`` with its usual per-step loop."""

    def __init__(self, learn: bool) -> None:
        super().__init__()
        import snntorch as snn

        self.lif = snn.Leaky(beta=0.9, learn_beta=learn, learn_threshold=learn)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        mem = self.lif.reset_mem()
        spikes = []
        for x in x_seq:
            spk, mem = self.lif(x, mem)
            spikes.append(spk)
        return torch.stack(spikes)


def make_neuron(kind: str) -> nn.Module:
    """A module mapping ``[T, B, ...]`` currents to ``[T, B, ...]`` spikes, fresh state per call."""
    if kind == "ours":
        from snn_ext.spikingjelly import DietLIFNode

        return DietLIFNode(leak=1.0, v_threshold=1.0, step_mode="m")
    if kind == "snntorch":
        return SnnTorchSequence(learn=False)
    if kind == "snntorch_learn":
        return SnnTorchSequence(learn=True)
    if kind == "floor":
        return nn.ReLU()
    from spikingjelly.activation_based import neuron

    return neuron.ParametricLIFNode(step_mode="m")


NAMES = {
    "ours": "ours DietLIFNode (fused)",
    "snntorch": "snnTorch Leaky",
    "snntorch_learn": "snnTorch Leaky learn b,thr",
    "plif": "SJ ParametricLIFNode",
    "floor": "floor: ReLU, no neuron state",
}


class SpikingVGG(nn.Module):
    """Conv-neuron blocks (``M`` = 2x2 average pooling) on ``[B, 3, 32, 32]``, logits summed over ``T``."""

    def __init__(self, widths: list[str], neuron: str, steps: int) -> None:
        super().__init__()
        self.steps = steps
        layers, channels, size = [], 3, 32
        for w in widths:
            if w == "M":
                layers.append(nn.AvgPool2d(2))
                size //= 2
            else:
                layers += [nn.Conv2d(channels, int(w), 3, padding=1, bias=False), make_neuron(neuron)]
                channels = int(w)
        self.layers = nn.ModuleList(layers)
        self.readout = nn.Linear(channels * size * size, 10, bias=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from spikingjelly.activation_based import functional

        functional.reset_net(self)
        x = None
        for layer in self.layers:
            if x is None:  # first convolution: the same analog input at every step
                x = layer(images).expand(self.steps, -1, -1, -1, -1)
            elif isinstance(layer, (nn.Conv2d, nn.AvgPool2d)):
                x = layer(x.flatten(0, 1)).unflatten(0, (self.steps, -1))
            else:
                x = layer(x)
        return self.readout(x.flatten(2)).sum(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="time steps T")
    parser.add_argument("--iters", type=int, default=10, help="timed training steps per network")
    parser.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    parser.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "cpu_compiled", "cpu_fused", "triton", "reference"],
        help='our kernel backend; on the CPU "auto" runs cpu_fused until the layers together have run 2^31 '
        "elements (about 130 steps here), cpu_compiled after",
    )
    parser.add_argument("--widths", nargs="+", default=["32", "32", "M", "64", "64", "M", "128", "M"])
    parser.add_argument("--only", nargs="*", default=list(NAMES), choices=list(NAMES))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    images = torch.rand(args.batch, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (args.batch,), device=device)
    nets, optimizers, times, warmup = {}, {}, {}, {}
    for kind in args.only:
        torch.manual_seed(0)
        nets[kind] = SpikingVGG(args.widths, kind, args.steps).to(device)
        optimizers[kind] = torch.optim.SGD(nets[kind].parameters(), lr=0.01, momentum=0.9)
        times[kind] = []

    def train_step(kind: str) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with kernels.use_backend(args.backend):
            loss = nn.functional.cross_entropy(nets[kind](images), labels)
            optimizers[kind].zero_grad()
            loss.backward()
            optimizers[kind].step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for kind in args.only:
        warmup[kind] = sum(train_step(kind) for _ in range(args.warmup))
    for _ in range(args.iters):
        for kind in args.only:
            times[kind].append(train_step(kind))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {args.device}")
    print(
        f"spiking VGG {' '.join(args.widths)}, T={args.steps}, B={args.batch}, {args.iters} timed steps, "
        f"our backend {args.backend}"
    )
    print("| neuron | step ms median (min) | images/s | ours faster by | warm-up s |")
    print("|---|---|---|---|---|")
    ours = statistics.median(times["ours"]) if "ours" in times else None
    for kind in args.only:
        med = statistics.median(times[kind])
        ratio = f"{med / ours:.2f}x" if ours else "-"
        print(
            f"| {NAMES[kind]} | {med * 1e3:.0f} ({min(times[kind]) * 1e3:.0f}) | {args.batch / med:.1f} | "
            f"{ratio} | {warmup[kind]:.1f} |"
        )


if __name__ == "__main__":
    main()
