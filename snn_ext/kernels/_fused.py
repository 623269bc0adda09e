"""Backend-independent part of the fused neurons: memory layout, surrogate specs and the autograd Function.

Every fused backend computes on a canonical view of the sequence, ``[T, P, C, Q]``: ``C`` is the channel
dimension (dimension 1 of a step ``[B, C, ...]``), ``Q`` the number of elements stored inside one channel
(``H*W`` for NCHW steps, 1 for channels-last or ``[B, F]`` steps) and ``P`` all the rest. Because every
operation is elementwise except the per-channel parameters, such a view exists without copying for any
sequence whose steps are stacked along ``T`` and stored densely (contiguous, channels-last, or any other
dense permutation); other inputs are copied once. Outputs keep the input's memory layout.

The Function saves only the input sequence (a tensor the caller already holds), the initial potential
and the per-channel parameters; the backward pass recomputes the potentials from them instead of storing
``[T, B, ...]`` intermediates. For fire-once neurons it also saves one spike time per neuron (``[B, ...]``).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch

from snn_ext.core.surrogate import STDB, Box, SpikeTimeRecord, Triangle

__all__ = [
    "BackwardArgs",
    "BackwardResult",
    "ForwardResult",
    "FusedOps",
    "Inputs",
    "Layout",
    "SurrogateSpec",
    "fused_lif",
    "surrogate_spec",
]


class SurrogateSpec(NamedTuple):
    """A surrogate the fused kernels implement: ``kind`` and two numbers.

    ``("triangle", gamma, 0)``: ``gamma * max(0, 1 - |z|)``; ``("box", width, height)``:
    ``height * 1[|z| < width]``; ``("stdb", alpha, beta)``: ``alpha * exp(-beta * |t - t_spike|)``.
    """

    kind: str
    p0: float
    p1: float


def surrogate_spec(fn: object, fire_once: bool) -> SurrogateSpec | None:
    """The fused-kernel description of ``fn``, or ``None`` when no kernel implements it.

    Only the exact classes :class:`~snn_ext.core.surrogate.Triangle`, :class:`~snn_ext.core.surrogate.Box`
    and, for fire-once neurons, :class:`~snn_ext.core.surrogate.STDB` with ``time="spike"`` qualify: a subclass
    may change the derivative.
    """
    if type(fn) is Triangle:
        return SurrogateSpec("triangle", fn.gamma, 0.0)
    if type(fn) is Box:
        return SurrogateSpec("box", fn.width, fn.height)
    if type(fn) is STDB and fire_once and fn.time == "spike":
        return SurrogateSpec("stdb", fn.alpha, fn.beta)
    return None


class Layout(NamedTuple):
    """Sizes of the canonical view ``[T, P, C, Q]`` of a sequence (see the module docstring)."""

    steps: int
    outer: int
    channels: int
    inner: int

    def seq(self, t: torch.Tensor) -> torch.Tensor:
        """``[T, P, C, Q]`` view of a sequence stored like the canonical input."""
        n = self.outer * self.channels * self.inner
        sizes = (self.steps, self.outer, self.channels, self.inner)
        return t.as_strided(sizes, (n, self.channels * self.inner, self.inner, 1))

    def step(self, t: torch.Tensor | None) -> torch.Tensor | None:
        """``[P, C, Q]`` view of one step stored like a step of the canonical input (``None`` passes through)."""
        if t is None:
            return None
        return t.as_strided((self.outer, self.channels, self.inner), (self.channels * self.inner, self.inner, 1))


def _is_dense(shape: tuple[int, ...], stride: tuple[int, ...]) -> bool:
    """True when the elements fill a contiguous block in some dimension order (no gaps, no overlap)."""
    expected = 1
    for size, st in sorted(((s, st) for s, st in zip(shape, stride, strict=True) if s != 1), key=lambda d: d[1]):
        if st != expected:
            return False
        expected *= size
    return True


def _same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and all(
        sa == sb for size, sa, sb in zip(a.shape, a.stride(), b.stride(), strict=True) if size != 1
    )


def _canonical(x_seq: torch.Tensor) -> tuple[torch.Tensor, Layout]:
    """``x_seq`` itself when a ``[T, P, C, Q]`` view exists, else a contiguous copy; and the view's sizes."""
    step = x_seq[0]
    n = step.numel()
    if not ((x_seq.shape[0] == 1 or x_seq.stride(0) == n) and _is_dense(tuple(step.shape), step.stride())):
        x_seq = x_seq.contiguous()
        step = x_seq[0]
    channels = step.shape[1] if step.dim() >= 2 else 1
    inner = step.stride(1) if channels > 1 else 1
    return x_seq, Layout(x_seq.shape[0], n // (channels * inner) if n else 0, channels, inner)


def _stored_like(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``t`` (shape of the dense ``like``) stored like ``like``: itself, or a copy in ``like``'s layout."""
    return t if _same_layout(t, like) else torch.empty_like(like, dtype=t.dtype).copy_(t)


def _in_layout(canonical: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """A kernel's canonical result as a tensor shaped and stored like ``like``, without copying.

    The canonical storage order is ``like``'s, so the result shares ``canonical``'s storage with ``like``'s
    strides; it is a tensor of its own (not a view), so callers may ``detach_()`` it or modify it in place.
    """
    if canonical is None:
        return None
    canonical = canonical.contiguous()
    result = torch.empty(0, dtype=canonical.dtype, device=canonical.device)
    return result.set_(canonical.untyped_storage(), canonical.storage_offset(), like.shape, like.stride())


def _per_channel(param: torch.Tensor, channels: int, like: torch.Tensor) -> torch.Tensor:
    """``[]`` or ``[C]`` parameter as a contiguous ``[C]`` tensor in ``like``'s dtype and device."""
    return param.detach().to(dtype=like.dtype, device=like.device).reshape(-1).expand(channels).contiguous()


class _ParamMeta(NamedTuple):
    scalar: bool
    dtype: torch.dtype
    device: torch.device

    @classmethod
    def of(cls, param: torch.Tensor) -> _ParamMeta:
        return cls(param.dim() == 0, param.dtype, param.device)

    def grad(self, per_channel: torch.Tensor) -> torch.Tensor:
        """The parameter's gradient from its ``[C]`` per-channel gradient."""
        return (per_channel.sum() if self.scalar else per_channel).to(dtype=self.dtype, device=self.device)


class Inputs(NamedTuple):
    """A call's inputs as canonical views (see :class:`FusedOps`); ``None`` marks an absent one."""

    x: torch.Tensor  # [T, P, C, Q] input currents
    u0: torch.Tensor | None  # [P, C, Q] initial potential; None: zeros
    leak: torch.Tensor  # [C]
    threshold: torch.Tensor  # [C]
    times: torch.Tensor | None  # [P, C, Q] local spike times, forward: before the call, backward: after it; None: DIET


class BackwardArgs(NamedTuple):
    """What :meth:`FusedOps.backward` needs besides the :class:`Inputs`."""

    t_spike: torch.Tensor | None  # [P, C, Q] local spike times for the STDB surrogate (None for the others)
    spec: SurrogateSpec
    grad_spikes: torch.Tensor | None  # [T, P, C, Q]
    grad_potentials: torch.Tensor | None  # [T, P, C, Q]
    grad_final: torch.Tensor | None  # [P, C, Q]
    need_x: bool
    need_u0: bool


ForwardResult = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]
"""``(spikes, potentials or None, final potential, local spike times or None)``."""
BackwardResult = tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor, torch.Tensor]
"""``(dL/dx or None, dL/du0 or None, dL/dleak [C], dL/dthreshold [C])``."""


class FusedOps(Protocol):
    """One backend's kernels on canonical views (``[T, P, C, Q]`` sequences, ``[P, C, Q]`` steps, ``[C]`` params).

    Results are new contiguous tensors in the canonical shapes. Fire-once neurons pass *local* spike times:
    the step index within this call (``inf`` = not fired, negative = fired in an earlier call). ``None``
    means absent: no initial potential, a DIET neuron, no gradient for that output, gradient not needed.
    """

    def forward(self, inputs: Inputs, want_potentials: bool) -> ForwardResult:
        """The outputs; the potentials only if ``want_potentials``."""

    def backward(self, inputs: Inputs, args: BackwardArgs) -> BackwardResult:
        """The gradients; ``dL/dx`` only if ``args.need_x``, ``dL/du0`` only if ``args.need_u0``."""


class _FusedLIF(torch.autograd.Function):
    """Whole-sequence DIET / fire-once LIF with a recomputing backward pass (see the module docstring)."""

    @staticmethod
    def forward(
        ctx,
        ops: FusedOps,
        x_seq: torch.Tensor,
        u0: torch.Tensor | None,
        leak: torch.Tensor,
        threshold: torch.Tensor,
        spec: SurrogateSpec,
        record: SpikeTimeRecord | None,
        first_step: int,
        want_potentials: bool,
    ) -> ForwardResult:
        """Run the fused neuron; arguments are already checked by the dispatcher.

        Args:
            ops: the backend's kernels.
            x_seq: ``[T, B, ...]`` input currents (any layout; a float dtype the backend supports, which is
                the dtype everything is computed in).
            u0: ``[B, ...]`` initial potential in ``x_seq``'s dtype, or ``None`` for zeros.
            leak, threshold: ``[]`` or ``[C]`` tensors; their gradients come back in their own dtype.
            spec: the surrogate.
            record: fire-once neurons: the layer's spike-time record (its ``times`` shaped like ``x_seq[0]``),
                read here and by the STDB backward pass; ``None`` for DIET neurons.
            first_step: index of ``x_seq[0]`` in the record's sequence (fire-once only).
            want_potentials: also return the ``[T, B, ...]`` potentials.

        Returns:
            ``(spikes, potentials or None, final, times or None)``: ``[T, B, ...]``, ``[T, B, ...]``,
            ``[B, ...]`` and, for fire-once neurons, the updated ``[B, ...]`` spike times (absolute steps).
        """
        ctx.set_materialize_grads(False)
        xc, layout = _canonical(x_seq)
        step = xc[0]
        u0c = None if u0 is None else _stored_like(u0, step)
        leak_c, thr_c = _per_channel(leak, layout.channels, xc), _per_channel(threshold, layout.channels, xc)
        times = None if record is None else _stored_like(record.times, step) - first_step
        inputs = Inputs(layout.seq(xc), layout.step(u0c), leak_c, thr_c, layout.step(times))
        spikes, potentials, final, times_out = ops.forward(inputs, want_potentials)
        ctx.save_for_backward(xc, u0c, leak_c, thr_c, times_out)
        ctx.layout, ctx.ops, ctx.spec, ctx.record, ctx.first_step = layout, ops, spec, record, first_step
        ctx.params = (_ParamMeta.of(leak), _ParamMeta.of(threshold))
        outputs = [_in_layout(spikes, xc), _in_layout(potentials, xc), _in_layout(final, step), None]
        if times_out is not None:
            outputs[3] = _in_layout(times_out + first_step, step)
            ctx.mark_non_differentiable(outputs[3])
        return tuple(outputs)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx,
        grad_spikes: torch.Tensor | None,
        grad_potentials: torch.Tensor | None,
        grad_final: torch.Tensor | None,
        _grad_times: None,
    ) -> tuple[torch.Tensor | None, ...]:
        xc, u0c, leak_c, thr_c, times = ctx.saved_tensors  # times: local spike times (fire-once)
        layout, spec, step = ctx.layout, ctx.spec, xc[0]
        t_spike = None
        if spec.kind == "stdb":  # read at backward time, as the reference STDB does
            record = ctx.record
            t_spike = torch.where(torch.isinf(record.times), float(record.steps), record.times)
            t_spike = _stored_like(t_spike, step).to(xc.dtype) - ctx.first_step
        need_x, need_u0, need_leak, need_thr = ctx.needs_input_grad[1:5]
        grad_x, grad_u0, grad_leak, grad_thr = ctx.ops.backward(
            Inputs(layout.seq(xc), layout.step(u0c), leak_c, thr_c, times),
            BackwardArgs(
                layout.step(t_spike),
                spec,
                None if grad_spikes is None else layout.seq(_stored_like(grad_spikes, xc)),
                None if grad_potentials is None else layout.seq(_stored_like(grad_potentials, xc)),
                layout.step(None if grad_final is None else _stored_like(grad_final, step)),
                need_x,
                need_u0,
            ),
        )
        leak, threshold = ctx.params
        return (
            None,
            _in_layout(grad_x, xc),
            _in_layout(grad_u0, step),
            leak.grad(grad_leak) if need_leak else None,
            threshold.grad(grad_thr) if need_thr else None,
            None,
            None,
            None,
            None,
        )


fused_lif = _FusedLIF.apply
"""``fused_lif(ops, x_seq, u0, leak, threshold, spec, record, first_step, want_potentials)``: run the fused
neuron (see :meth:`_FusedLIF.forward` for the arguments and results)."""
