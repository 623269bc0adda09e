"""Fused multi-step neurons: the core's multi-step functions, computed by one fused kernel where one applies.

:func:`diet_lif_multistep` and :func:`single_spike_lif_multistep` take the arguments of
:func:`snn_ext.core.neuron.diet_lif_multistep` / :func:`~snn_ext.core.neuron.single_spike_lif_multistep`
and return the same values. The whole ``[T, B, ...]`` sequence runs forward and backward as one autograd
node that saves only the input, the initial potential and the parameters (plus one spike time per neuron
for fire-once neurons); the backward pass recomputes the potentials. Both faces call these functions in
their whole-sequence paths (``DietLeaky.forward_sequence``, ``DietLIFNode`` in ``'m'`` mode and the fire-once
equivalents); single steps always run the core.

Backends (pick one for a block of code with :func:`use_backend`):

* ``"auto"`` (default): CUDA tensors use ``"triton"``; CPU tensors use ``"cpu_fused"``, and ``"cpu_compiled"``
  once the calls that one compiled kernel serves (same ``T``, dtype and arguments present, any shape) have run
  :data:`AUTO_COMPILE_AFTER_ELEMENTS` elements (for ``T`` up to :data:`AUTO_COMPILE_MAX_STEPS`): compiling
  takes seconds, which small or one-off calls never win back; other devices use the reference.
* ``"reference"``: the pure-torch core, step by step.
* ``"cpu_fused"``: CPU, the fused autograd node run op by op (:data:`snn_ext.kernels.cpu.EAGER`).
* ``"cpu_compiled"``: CPU, the same node through ``torch.compile`` (:data:`snn_ext.kernels.cpu.COMPILED`).
* ``"triton"``: Triton kernels for CUDA tensors (CPU tensors too when ``TRITON_INTERPRET=1`` was set before
  Triton was imported, as the tests do).

Fused kernels implement the surrogates :class:`~snn_ext.core.surrogate.Triangle` and
:class:`~snn_ext.core.surrogate.Box` (and :class:`~snn_ext.core.surrogate.STDB` for fire-once neurons),
float32/float64 on the CPU and float16/bfloat16/float32/float64 with Triton, ``[]`` or ``[C]`` leak and
threshold; inputs of mixed dtypes compute in the dtype the reference promotes to. When a call cannot use the
chosen kernel (another surrogate, dtype or device, per-neuron parameters, a ``state_quant``; Triton missing)
it runs the reference and issues a :class:`KernelFallbackWarning` once per reason.

Inside ``torch.compile`` every backend runs the reference: the compiler traces its plain torch ops (no graph
break, no host synchronisation) and fuses them into its own kernel, forward and backward. So does a call under
a ``TorchDispatchMode`` (op counters such as SpikingJelly's ``op_counter.NeuronStateCounter`` or torch's
``FlopCounterMode``), which then sees the neuron's state reads and writes op by op. The backend choice applies
to the remaining, eager calls. Results do not depend on the backend: float32/float64 spikes
and potentials are bit-identical to the reference and gradients differ only by the rounding of reordered
sums (Triton computes float16/bfloat16 inputs in float32, so there values differ within their precision).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from snn_ext.core import neuron as core
from snn_ext.core.checks import channel_view, check_leak, check_sequence, check_threshold
from snn_ext.core.neuron import (
    SequenceOutput,
    SingleSpikeSequence,
    SingleSpikeState,
    SingleSpikeSurrogate,
    SpikeFn,
    StateQuant,
)
from snn_ext.core.surrogate import STDB, SpikeTimeRecord
from snn_ext.kernels import cpu
from snn_ext.kernels._fused import FusedOps, SurrogateSpec, fused_lif, surrogate_spec
from snn_ext.kernels._warn import KernelFallbackWarning, warn_once

__all__ = [
    "AUTO_COMPILE_AFTER_ELEMENTS",
    "AUTO_COMPILE_MAX_STEPS",
    "BACKENDS",
    "KernelFallbackWarning",
    "current_backend",
    "diet_lif_multistep",
    "single_spike_lif_multistep",
    "use_backend",
    "warn_no_kernel_for_diet_stdb",
]

BACKENDS = ("auto", "reference", "cpu_fused", "cpu_compiled", "triton")
"""Accepted names for :func:`use_backend`."""

AUTO_COMPILE_AFTER_ELEMENTS = 1 << 31
"""Backend ``"auto"`` compiles the CPU kernel for a kernel key (``T``, dtype, arguments present; the compiled
kernel takes any shape) once the sequences run with it, in all layers together, add up to this many elements.
By then the uncompiled kernel has lost about as much time as compiling costs (seconds; measured on 2 CPU
cores), so a training loop compiles after some tens to a few hundred steps (a [5, 32, 64, 32, 32] layer alone:
about 200), and from then on every layer of the network runs compiled, small ones included; small or one-off
calls (tests, notebooks, an evaluation) never wait for the compiler."""
AUTO_COMPILE_MAX_STEPS = 32
"""Backend ``"auto"`` compiles the CPU kernel only for ``T`` up to this: the compiled code unrolls the time loop,
so compiling takes longer with ``T`` (here about 15 s at T = 4, over a minute at T = 64)."""
_KEYS_KEPT = 4096  # the element counter forgets everything when it holds more kernel keys than this
_elements: Counter[Hashable] = Counter()

_DIET_SPEC = SurrogateSpec("triangle", 0.3, 0.0)  # the core's default spike_fn, Triangle(gamma=0.3)
_backend: ContextVar[str] = ContextVar("snn_ext_kernel_backend", default="auto")


@contextmanager
def use_backend(name: str) -> Iterator[None]:
    """Run the multi-step neurons of the enclosed block (both faces included) on backend ``name``.

    Args:
        name: one of :data:`BACKENDS`; see the module docstring.

    Example::

        with snn_ext.kernels.use_backend("reference"):
            spk_seq, mem_seq = lif.forward_sequence(x_seq)
    """
    if name not in BACKENDS:
        raise ValueError(f"name must be one of {BACKENDS}, got {name!r}")
    token = _backend.set(name)
    try:
        yield
    finally:
        _backend.reset(token)


def current_backend() -> str:
    """The backend name set by the innermost :func:`use_backend` (``"auto"`` outside any)."""
    return _backend.get()


def _runs_reference() -> bool:
    """Whether this call runs the reference: backend ``"reference"``, ``torch.compile``, a ``TorchDispatchMode``."""
    return torch.compiler.is_compiling() or _backend.get() == "reference" or is_in_torch_dispatch_mode()


def _checked_params(
    x_seq: torch.Tensor, leak: float | torch.Tensor, threshold: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The core's checks: the sequence, plain-number parameters, and parameter shapes against a step."""
    check_sequence(x_seq, "x_seq")
    leak_t = leak if isinstance(leak, torch.Tensor) else check_leak(leak)
    thr_t = threshold if isinstance(threshold, torch.Tensor) else check_threshold(threshold)
    channel_view(leak_t, x_seq[0], "leak")
    channel_view(thr_t, x_seq[0], "threshold")
    return leak_t, thr_t


def _triton_ops() -> tuple[FusedOps | None, bool]:
    """Triton's ops (``None`` when Triton cannot be imported) and whether they run in the interpreter."""
    try:
        from snn_ext.kernels import triton_ops
    except ImportError:
        return None, False
    return triton_ops.OPS, triton_ops.INTERPRETED


_CPU_DTYPES = (torch.float32, torch.float64)
_TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _auto_cpu(x_seq: torch.Tensor, key: Hashable) -> str:
    """``"cpu_compiled"`` once a kernel key has run enough elements (see :data:`AUTO_COMPILE_AFTER_ELEMENTS`)."""
    if x_seq.shape[0] > AUTO_COMPILE_MAX_STEPS:
        return "cpu_fused"
    if len(_elements) >= _KEYS_KEPT:
        _elements.clear()
    _elements[key] += x_seq.numel()
    return "cpu_compiled" if _elements[key] >= AUTO_COMPILE_AFTER_ELEMENTS else "cpu_fused"


def _backend_ops(
    name: str, x_seq: torch.Tensor, dtype: torch.dtype, key: Hashable
) -> tuple[FusedOps | None, str | None]:
    """The kernels of backend ``name`` for a sequence, or ``None`` and the reason they do not apply."""
    device = x_seq.device
    if name == "auto":
        if device.type == "cuda":
            name = "triton"
        elif device.type == "cpu":
            name = _auto_cpu(x_seq, key)
        else:
            return None, f"no fused kernel for {device.type} tensors"
    if name in ("cpu_fused", "cpu_compiled"):
        if device.type != "cpu":
            return None, f"backend {name!r} needs CPU tensors, got {device.type} tensors"
        if dtype not in _CPU_DTYPES:
            return None, f"backend {name!r} supports float32 and float64, got {dtype}"
        return (cpu.COMPILED if name == "cpu_compiled" else cpu.EAGER), None
    ops, interpreted = _triton_ops()
    if ops is None:
        return None, "backend 'triton' needs Triton, which cannot be imported"
    if not (device.type == "cuda" or (device.type == "cpu" and interpreted)):
        return None, f"backend 'triton' needs CUDA tensors (or TRITON_INTERPRET=1 for CPU ones), got {device.type}"
    if dtype not in _TRITON_DTYPES:
        return None, f"backend 'triton' supports float16, bfloat16, float32 and float64, got {dtype}"
    return ops, None


def _fused_inputs(
    x_seq: torch.Tensor,
    u: object,
    leak: torch.Tensor,
    threshold: torch.Tensor,
    fn: object,
    spec: SurrogateSpec | None,
    fire_once: bool,
    potentials: bool,
    state_quant: object,
) -> tuple[FusedOps, torch.Tensor, torch.Tensor | None] | None:
    """``(kernels, x_seq, u)`` for the fused path, or ``None`` for the reference (warning once if a kernel was due).

    ``x_seq`` and ``u`` come back in the dtype the reference computes in: the input's, promoted by ``u`` and
    by per-channel parameters (0-d parameters do not promote). The cast is exact, so results do not change.
    """
    promoting = [t for t in (u, leak, threshold) if isinstance(t, torch.Tensor) and t.dim() > 0]
    if (
        x_seq.numel() == 0
        or (u is not None and (not isinstance(u, torch.Tensor) or u.shape != x_seq.shape[1:]))
        or any(t.device != x_seq.device for t in promoting)
    ):
        return None  # an empty batch, or a state or device error that the reference reports
    dtype = x_seq.dtype
    for t in promoting:
        dtype = torch.promote_types(dtype, t.dtype)
    ops: FusedOps | None = None
    per_neuron = next((t for t in (leak, threshold) if t.dim() > 1), None)
    if per_neuron is not None:
        problem = f"no fused kernel for per-neuron parameters (shape {tuple(per_neuron.shape)}; fused: [] or [C])"
    elif state_quant is not None:
        problem = "no fused kernel applies a state_quant"
    elif spec is None:
        supported = "STDB (time='spike'), Triangle, Box" if fire_once else "Triangle, Box"
        name = getattr(fn, "__qualname__", type(fn).__name__)  # a function's own name, else its class's
        if isinstance(fn, STDB) and fn.time != "spike":
            name = f"STDB(time={fn.time!r})"
        problem = f"no fused kernel for the surrogate {name} (supported: {supported})"
    else:
        key = (x_seq.shape[0], dtype, u is None, spec, fire_once, potentials)  # the calls one compiled kernel serves
        ops, problem = _backend_ops(_backend.get(), x_seq, dtype, key)
    if problem is not None:
        # stacklevel 3: the code that called diet_lif_multistep / single_spike_lif_multistep
        warn_once(f"snn_ext.kernels: {problem}; running the reference implementation (same results, slower)", 3)
        return None
    return ops, x_seq.to(dtype), None if u is None else u.to(dtype)


def warn_no_kernel_for_diet_stdb() -> None:
    """Multi-spike DIET neurons with ``STDB(time="since_last")`` run the reference: say so once (the faces call it)."""
    warn_once(
        "snn_ext.kernels: no fused kernel for DIET neurons with STDB(time='since_last'); running the reference "
        "implementation (same results, slower)",
        3,
    )


def diet_lif_multistep(
    x_seq: torch.Tensor,
    u: torch.Tensor | None,
    leak: float | torch.Tensor,
    threshold: float | torch.Tensor,
    spike_fn: SpikeFn | None = None,
    state_quant: StateQuant | None = None,
    *,
    potentials: bool = True,
) -> SequenceOutput:
    """:func:`snn_ext.core.neuron.diet_lif_multistep`, fused where a kernel applies (see the module docstring).

    Args:
        x_seq: input currents ``[T, B, C, ...]`` or ``[T, B, F]`` with ``T >= 1``.
        u: initial membrane potential ``[B, ...]``; ``None`` starts from 0.
        leak, threshold: ``[]``, ``[C]`` or per neuron, as in :func:`snn_ext.core.neuron.diet_lif_step`.
        spike_fn: surrogate on ``z = u / threshold - 1``; default ``Triangle(gamma=0.3)``.
        state_quant: as in :func:`snn_ext.core.neuron.diet_lif_step` (runs the reference).
        potentials: also return the ``[T, B, ...]`` potentials; ``False`` skips writing them (the
            ``potentials`` field is then ``None``), as SpikingJelly's multi-step mode needs only spikes.

    Returns:
        :class:`~snn_ext.core.neuron.SequenceOutput` ``(spikes, potentials, final)``.
    """
    if not _runs_reference():
        leak_t, thr_t = _checked_params(x_seq, leak, threshold)
        spec = _DIET_SPEC if spike_fn is None else surrogate_spec(spike_fn, fire_once=False)
        fused = _fused_inputs(x_seq, u, leak_t, thr_t, spike_fn, spec, False, potentials, state_quant)
        if fused is not None:
            ops, x_c, u_c = fused
            spikes, potentials_seq, final, _ = fused_lif(ops, x_c, u_c, leak_t, thr_t, spec, None, 0, potentials)
            return SequenceOutput(spikes, potentials_seq, final)
    out = core.diet_lif_multistep(x_seq, u, leak, threshold, spike_fn, state_quant)
    return out if potentials else out._replace(potentials=None)


def single_spike_lif_multistep(
    x_seq: torch.Tensor,
    state: SingleSpikeState | None,
    leak: float | torch.Tensor,
    threshold: float | torch.Tensor,
    surrogate: SingleSpikeSurrogate | None = None,
    state_quant: StateQuant | None = None,
    *,
    potentials: bool = True,
) -> SingleSpikeSequence:
    """:func:`snn_ext.core.neuron.single_spike_lif_multistep`, fused where a kernel applies.

    Args:
        x_seq: input currents ``[T, B, ...]``.
        state: the previous call's state (continue the sequence) or ``None`` (start one).
        leak, threshold, state_quant: as in :func:`diet_lif_multistep`.
        surrogate: :class:`~snn_ext.core.surrogate.STDB` (default ``STDB(0.3, 0.01)``),
            :class:`~snn_ext.core.surrogate.Triangle` or :class:`~snn_ext.core.surrogate.Box` run fused;
            any other ``spike_fn(z)`` runs the reference.
        potentials: as in :func:`diet_lif_multistep`.

    Returns:
        :class:`~snn_ext.core.neuron.SingleSpikeSequence` ``(spikes, potentials, state)``; like the reference,
        the call writes the spike times into ``state.record``.
    """
    if not _runs_reference() and (state is None or isinstance(state, SingleSpikeState)):
        leak_t, thr_t = _checked_params(x_seq, leak, threshold)
        fn = STDB() if surrogate is None else surrogate
        spec = surrogate_spec(fn, fire_once=True)
        u = None if state is None else state.u
        fused = _fused_inputs(x_seq, u, leak_t, thr_t, fn, spec, True, potentials, state_quant)
        if fused is not None and (state is None or state.record.times.shape == x_seq.shape[1:]):
            ops, x_c, u_c = fused
            record = SpikeTimeRecord(x_seq[0]) if state is None else state.record
            first = 0 if state is None else state.step
            spikes, potentials_seq, final, times = fused_lif(
                ops, x_c, u_c, leak_t, thr_t, spec, record, first, potentials
            )
            record.times, record.steps = times, first + x_seq.shape[0]
            return SingleSpikeSequence(spikes, potentials_seq, SingleSpikeState(final, record, record.steps))
    out = core.single_spike_lif_multistep(x_seq, state, leak, threshold, surrogate, state_quant)
    return out if potentials else out._replace(potentials=None)
