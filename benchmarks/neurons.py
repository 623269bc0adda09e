"""Forward + backward time and saved memory of one LIF layer over a whole sequence, ours against the peers.

All variants run in one process on the same input ``[T, B, C, H, W]`` with the same dense output gradient
(as from a following layer), interleaved round by round so that machine noise hits them alike. Time is the
median (and minimum) over the rounds of ``spikes = f(x); spikes.backward(grad)``; "saved" is the size of the
unique storages the autograd graph saves (``torch.autograd.graph.saved_tensors_hooks``), parameters included.
Compilation happens in warm-up rounds and is reported separately.

Variants: ours (``snn_ext.kernels.diet_lif_multistep``, per-channel trainable leak and threshold; on the CPU
the compiled and the eager fused node, on CUDA the Triton kernels; and the core reference), snnTorch ``Leaky``
(its Python time loop; fixed beta, and trainable beta and threshold), SpikingJelly ``LIFNode`` (hard reset, and
soft reset) and ``ParametricLIFNode`` in multi-step mode, a plain torch loop of the DIET dynamics with a
triangle surrogate, and ``torch.compile`` of that loop. Ratios are against the variant that backend "auto"
picks for the shape.

    python benchmarks/neurons.py                     # T in {2, 5, 8} at [T, 32, 64, 32, 32], VGG16 layers at T=5
    python benchmarks/neurons.py --repeats 5 --no-vgg
    python benchmarks/neurons.py --device cuda       # adds the achieved memory bandwidth of our kernels
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator

import torch

from snn_ext import kernels
from snn_ext.core.surrogate import Triangle

# VGG16 on CIFAR (32x32 input): the output of every LIF layer, [C, H, W] or [F].
VGG16_CIFAR_LAYERS = [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2), (4096,)]
# Memory bandwidth in GB/s of some cards, by name fragment (for the "% of peak" column).
PEAK_GBPS = {"H200": 4800, "H100 SXM": 3350, "H100 PCIe": 2000, "H100": 3350, "A100-SXM4-80GB": 2039, "A100": 1555}


class Variant:
    """One LIF implementation: ``run(x)`` returns spikes ``[T, B, ...]``; ``params`` get gradients."""

    def __init__(
        self,
        name: str,
        run: Callable[[torch.Tensor], torch.Tensor],
        params: list[torch.Tensor],
        context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    ) -> None:
        self.name, self.run, self.params, self.context = name, run, params, context
        self.times: list[float] = []
        self.warmup_s = 0.0
        self.saved_mib = float("nan")


def _plain_loop(leak: torch.Tensor, threshold: torch.Tensor, surrogate: Triangle) -> Callable:
    def loop(x: torch.Tensor) -> torch.Tensor:
        view = (-1,) + (1,) * (x.dim() - 3)
        lv, tv = leak.view(view), threshold.view(view)
        u, spikes = torch.zeros_like(x[0]), []
        for xt in x:
            u = lv * u + xt
            z = u / tv - 1.0
            spikes.append(surrogate(z))
            u = u - tv * (z > 0).to(x.dtype)
        return torch.stack(spikes)

    return loop


def _snntorch_loop(lif) -> Callable:
    def loop(x: torch.Tensor) -> torch.Tensor:
        mem = lif.reset_mem()
        spikes = []
        for xt in x:
            spk, mem = lif(xt, mem)
            spikes.append(spk)
        return torch.stack(spikes)

    return loop


def _spikingjelly(node) -> Callable:
    from spikingjelly.activation_based import functional

    def run(x: torch.Tensor) -> torch.Tensor:
        functional.reset_net(node)
        return node(x)

    return run


@contextlib.contextmanager
def _triton_config(block: int, warps: int) -> Iterator[None]:
    """Our Triton kernels with ``block`` neurons per program and ``warps`` warps (forward and backward)."""
    from snn_ext.kernels import triton_ops

    saved = triton_ops._BLOCK, triton_ops._NUM_WARPS
    triton_ops._BLOCK, triton_ops._NUM_WARPS = block, warps
    try:
        yield
    finally:
        triton_ops._BLOCK, triton_ops._NUM_WARPS = saved


def build_variants(
    channels: int, device: torch.device, which: set[str], triton_configs: tuple[str, ...] = ()
) -> list[Variant]:
    """The variants for a layer of ``channels`` channels (1-D parameters of that size where per-channel)."""
    import snntorch as snn
    from spikingjelly.activation_based import neuron

    def per_channel(value: float) -> torch.Tensor:
        return torch.full((channels,), value, device=device, requires_grad=True)

    variants = []
    leak, thr = per_channel(0.9), per_channel(1.0)

    def ours(backend: str) -> Callable:
        def run(x: torch.Tensor) -> torch.Tensor:
            with kernels.use_backend(backend):
                return kernels.diet_lif_multistep(x, None, leak, thr, potentials=False).spikes

        return run

    for backend in ("triton",) if device.type == "cuda" else ("cpu_compiled", "cpu_fused"):
        variants.append(Variant(f"ours {backend}", ours(backend), [leak, thr]))
    for config in triton_configs:  # "BLOCKxWARPS"
        block, warps = (int(part) for part in config.split("x"))
        context = lambda b=block, w=warps: _triton_config(b, w)  # noqa: E731
        variants.append(Variant(f"ours triton {config}", ours("triton"), [leak, thr], context))
    variants.append(Variant("ours reference", ours("reference"), [leak, thr]))
    st_fixed = snn.Leaky(beta=0.9).to(device)
    variants.append(Variant("snnTorch Leaky", _snntorch_loop(st_fixed), []))
    st_learn = snn.Leaky(beta=0.9, learn_beta=True, learn_threshold=True).to(device)
    variants.append(Variant("snnTorch Leaky learn b,thr", _snntorch_loop(st_learn), list(st_learn.parameters())))
    lif = neuron.LIFNode(step_mode="m").to(device)
    variants.append(Variant("SJ LIFNode", _spikingjelly(lif), []))
    lif_soft = neuron.LIFNode(v_reset=None, detach_reset=True, step_mode="m").to(device)
    variants.append(Variant("SJ LIFNode soft reset", _spikingjelly(lif_soft), []))
    plif = neuron.ParametricLIFNode(step_mode="m").to(device)
    variants.append(Variant("SJ ParametricLIFNode", _spikingjelly(plif), list(plif.parameters())))
    l2, t2 = per_channel(0.9), per_channel(1.0)
    loop = _plain_loop(l2, t2, Triangle(0.3))
    variants.append(Variant("torch loop", loop, [l2, t2]))
    l3, t3 = per_channel(0.9), per_channel(1.0)
    variants.append(Variant("torch.compile(loop)", torch.compile(_plain_loop(l3, t3, Triangle(0.3))), [l3, t3]))
    return [v for v in variants if not which or any(w in v.name for w in which)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _step(variant: Variant, x: torch.Tensor, grad: torch.Tensor) -> float:
    x.grad = None
    for p in variant.params:
        p.grad = None
    _sync(x.device)
    start = time.perf_counter()
    with variant.context():
        variant.run(x).backward(grad)
    _sync(x.device)
    return time.perf_counter() - start


def _saved_mib(variant: Variant, x: torch.Tensor) -> float:
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), variant.context():
        variant.run(x)
    return sum(storages.values()) / 2**20


def measure(shape: tuple[int, ...], args: argparse.Namespace) -> list[Variant]:
    """Time and saved memory of every variant on one input shape ``[T, B, ...]``."""
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=gen) * 0.6 + 0.3).to(device).requires_grad_(True)
    grad = torch.randn(shape, generator=gen).to(device)
    variants = build_variants(shape[2], device, set(args.only), tuple(args.triton_configs))
    for variant in variants:
        start = time.perf_counter()
        for _ in range(args.warmup):
            _step(variant, x, grad)
        variant.warmup_s = time.perf_counter() - start
        variant.saved_mib = _saved_mib(variant, x)
    for _ in range(args.repeats):
        for variant in variants:
            variant.times.append(_step(variant, x, grad))
    return variants


def _fused_bytes(shape: tuple[int, ...], element: int) -> int:
    """Global-memory traffic of our Triton kernels: forward reads x, writes spikes; backward reads x, writes and
    reads the recomputed potentials, reads the spike gradient and writes dL/dx (7 sequence-sized transfers)."""
    n = 1
    for s in shape:
        n *= s
    return 7 * n * element


def _auto_choice(shape: tuple[int, ...], device: str) -> str:
    """The variant that backend "auto" runs in a long loop at this shape (compiled once it has paid off)."""
    if device == "cuda":
        return "ours triton"
    return "ours cpu_compiled" if shape[0] <= kernels.AUTO_COMPILE_MAX_STEPS else "ours cpu_fused"


def report(shape: tuple[int, ...], variants: list[Variant], args: argparse.Namespace) -> None:
    auto = _auto_choice(shape, args.device)
    ours = next((v for v in variants if v.name == auto), variants[0])
    ours_ms = statistics.median(ours.times) * 1e3
    print(f"\n[T, B, ...] = {list(shape)}, {args.device}, {args.repeats} rounds; ratios against {ours.name}")
    print("| variant | fwd+bwd ms median (min) | saved MiB | ours faster by | warm-up s |")
    print("|---|---|---|---|---|")
    for v in variants:
        med = statistics.median(v.times) * 1e3
        print(
            f"| {v.name} | {med:.1f} ({min(v.times) * 1e3:.1f}) | {v.saved_mib:.1f} | "
            f"{med / ours_ms:.2f}x | {v.warmup_s:.1f} |"
        )
    if args.device == "cuda":
        name = torch.cuda.get_device_name()
        peak = args.peak_gbps or next((v for k, v in PEAK_GBPS.items() if k in name), None)
        for v in variants:
            if v.name.startswith("ours triton"):
                gbps = _fused_bytes(shape, 4) / statistics.median(v.times) / 1e9
                share = f" = {100 * gbps / peak:.0f}% of {peak} GB/s" if peak else ""
                print(f"{v.name}: {gbps:.0f} GB/s achieved on {name}{share}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=10, help="timed rounds per shape")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first (compilation happens here)")
    parser.add_argument("--steps", type=int, nargs="+", default=[2, 5, 8], help="T values at [T, 32, 64, 32, 32]")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--no-vgg", action="store_true", help="skip the VGG16-on-CIFAR layer shapes")
    parser.add_argument("--vgg-steps", type=int, default=5, help="T for the VGG16 layer shapes")
    parser.add_argument("--only", nargs="*", default=[], help="keep the variants whose names contain one of these")
    parser.add_argument("--peak-gbps", type=float, default=None, help="the card's memory bandwidth, for the %% column")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--triton-configs",
        nargs="*",
        default=[],
        metavar="BLOCKxWARPS",
        help="CUDA: also time our Triton kernels with these neurons per program and warps, e.g. 256x4 1024x8",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {args.device}")
    shapes = [(t, args.batch, 64, 32, 32) for t in args.steps]
    if not args.no_vgg:
        shapes += [(args.vgg_steps, args.batch, *layer) for layer in VGG16_CIFAR_LAYERS if layer != (64, 32, 32)]
    for shape in shapes:
        report(shape, measure(shape, args), args)


if __name__ == "__main__":
    main()
