"""Triton kernels of the fused DIET / fire-once LIF for CUDA tensors (CPU tensors under ``TRITON_INTERPRET=1``).

One program handles ``BLOCK`` neurons for all ``T`` steps, so the forward pass reads ``x`` once and writes the
spikes (and the potentials if asked) once. The backward pass first recomputes the pre-reset potentials
``h[t]`` into the ``dL/dx`` buffer (float32 scratch, copied to the input dtype, for half-precision inputs),
then walks back in time reading each ``h[t]`` once and overwriting it with ``dL/dx[t]``. Leak and threshold
gradients are summed per neuron in the kernel and per channel by torch.

Arithmetic runs in float32 (float64 for float64 inputs). Kernels are launched with
``enable_fp_fusion=False`` and the float32 division is ``div_rn`` (IEEE round-to-nearest, not Triton's
default approximate division), so float32/float64 spikes and potentials match the torch reference bit for
bit; float16/bfloat16 inputs are computed in float32, which rounds less often than the reference's
per-operation float16/bfloat16 arithmetic (the tests compare them with a tolerance).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from snn_ext.kernels._fused import BackwardArgs, BackwardResult, ForwardResult, Inputs

__all__ = ["INTERPRETED", "OPS", "TritonOps"]

_BLOCK = 1024  # neurons per program; with _NUM_WARPS = 4, 8 per thread (benchmarks/neurons.py --triton-configs)
_NUM_WARPS = 4
_KINDS = {"triangle": 0, "box": 1, "stdb": 2}


@triton.jit
def _divide(h, threshold, FP32: tl.constexpr):
    """``h / threshold`` rounded to nearest, as torch does (Triton's float32 ``/`` is approximate)."""
    return tl.math.div_rn(h, threshold) if FP32 else h / threshold


@triton.jit
def _load(ptr, offs, mask, like, PRESENT: tl.constexpr):
    """``ptr[offs]`` in ``like``'s dtype, or zeros when the tensor is absent."""
    return tl.load(ptr + offs, mask=mask, other=0.0).to(like.dtype) if PRESENT else tl.zeros_like(like)


@triton.jit
def _channel_params(leak_ptr, thr_ptr, offs, mask, channels, inner, FP32: tl.constexpr):
    """Leak and threshold of each neuron's channel, in the compute dtype."""
    ch = (offs // inner) % channels
    leak = tl.load(leak_ptr + ch, mask=mask, other=0.0)
    thr = tl.load(thr_ptr + ch, mask=mask, other=1.0)
    if FP32:
        leak = leak.to(tl.float32)
        thr = thr.to(tl.float32)
    return leak, thr


@triton.jit
def _fires(h, thr, times, step, FIRE_ONCE: tl.constexpr, FP32: tl.constexpr):
    """Spike indicator of step ``step`` (fire-once: recorded in ``times``; DIET: ``h / thr > 1``)."""
    return times == step if FIRE_ONCE else _divide(h, thr, FP32) > 1.0


@triton.jit
def _surrogate(z, t, t_spike, p0, p1, KIND: tl.constexpr):
    """Pseudo-derivative of the spike at normalized potential ``z`` and step ``t``."""
    if KIND == 0:  # Triangle: p0 * max(0, 1 - |z|)
        d = p0 * tl.maximum(1.0 - tl.abs(z), 0.0)
    elif KIND == 1:  # Box: p1 where |z| < p0
        d = tl.where(tl.abs(z) < p0, p1, 0.0 * p1)
    else:  # STDB: p0 * exp(-p1 * |t - t_spike|)
        d = p0 * tl.exp(-p1 * tl.abs(t - t_spike))
    return d


_RUNTIME_INTS = ["steps", "channels", "inner"]  # no recompilation per value (n stays specialized for alignment)


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def _lif_forward_kernel(
    x_ptr,
    u0_ptr,
    leak_ptr,
    thr_ptr,
    times_ptr,
    spikes_ptr,
    pot_ptr,
    final_ptr,
    times_out_ptr,
    steps,
    n,
    channels,
    inner,
    HAS_U0: tl.constexpr,
    FIRE_ONCE: tl.constexpr,
    STORE_POT: tl.constexpr,
    FP32: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    leak, thr = _channel_params(leak_ptr, thr_ptr, offs, mask, channels, inner, FP32)
    u = _load(u0_ptr, offs, mask, leak, HAS_U0)
    times = _load(times_ptr, offs, mask, leak, FIRE_ONCE)  # local spike times, inf = not fired
    fired = tl.abs(times) < float("inf")
    step = tl.zeros_like(leak)  # the step index t as a vector
    o = offs
    for _ in range(steps):
        h = leak * u + tl.load(x_ptr + o, mask=mask, other=0.0).to(leak.dtype)
        fire = _divide(h, thr, FP32) > 1.0
        if FIRE_ONCE:
            fire = fire & ~fired
            fired = fired | fire
            times = tl.where(fire, step, times)
        tl.store(spikes_ptr + o, fire.to(spikes_ptr.dtype.element_ty), mask=mask)
        u = tl.where(fire, h - thr, h)
        if STORE_POT:
            tl.store(pot_ptr + o, u.to(pot_ptr.dtype.element_ty), mask=mask)
        o += n
        step += 1.0
    tl.store(final_ptr + offs, u.to(final_ptr.dtype.element_ty), mask=mask)
    if FIRE_ONCE:
        tl.store(times_out_ptr + offs, times.to(times_out_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def _lif_backward_kernel(
    x_ptr,
    u0_ptr,
    leak_ptr,
    thr_ptr,
    times_ptr,
    t_spike_ptr,
    sur_ptr,
    gs_ptr,
    gp_ptr,
    gf_ptr,
    h_ptr,
    gu0_ptr,
    acc_leak_ptr,
    acc_thr_ptr,
    steps,
    n,
    channels,
    inner,
    HAS_U0: tl.constexpr,
    FIRE_ONCE: tl.constexpr,
    KIND: tl.constexpr,
    HAS_GS: tl.constexpr,
    HAS_GP: tl.constexpr,
    HAS_GF: tl.constexpr,
    STORE_GU0: tl.constexpr,
    FP32: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    leak, thr = _channel_params(leak_ptr, thr_ptr, offs, mask, channels, inner, FP32)
    p0 = tl.load(sur_ptr).to(leak.dtype)
    p1 = tl.load(sur_ptr + 1).to(leak.dtype)
    u0 = _load(u0_ptr, offs, mask, leak, HAS_U0)
    times = _load(times_ptr, offs, mask, leak, FIRE_ONCE)
    t_spike = _load(t_spike_ptr, offs, mask, leak, KIND == 2)
    # Pass 1: recompute the pre-reset potentials h[t] into h_ptr.
    u = u0
    step = tl.zeros_like(leak)
    o = offs
    for _ in range(steps):
        h = leak * u + tl.load(x_ptr + o, mask=mask, other=0.0).to(leak.dtype)
        tl.store(h_ptr + o, h.to(h_ptr.dtype.element_ty), mask=mask)
        u = tl.where(_fires(h, thr, times, step, FIRE_ONCE, FP32), h - thr, h)
        o += n
        step += 1.0
    # Pass 2: back in time; h_ptr[t] is read once and overwritten with dL/dx[t].
    carry = _load(gf_ptr, offs, mask, leak, HAS_GF)  # dL/du[t] from the steps after t
    acc_leak = tl.zeros_like(leak)
    acc_thr = tl.zeros_like(leak)
    o -= n
    h = tl.load(h_ptr + o, mask=mask, other=0.0).to(leak.dtype)
    for i in range(steps):
        step -= 1.0
        has_prev = steps - 1 - i > 0
        h_prev = tl.load(h_ptr + o - n, mask=mask & has_prev, other=0.0).to(leak.dtype)
        fire_prev = _fires(h_prev, thr, times, step - 1.0, FIRE_ONCE, FP32)
        u_prev = tl.where(has_prev, tl.where(fire_prev, h_prev - thr, h_prev), u0)
        du = carry + _load(gp_ptr, o, mask, leak, HAS_GP)
        dz = _load(gs_ptr, o, mask, leak, HAS_GS) * _surrogate(_divide(h, thr, FP32) - 1.0, step, t_spike, p0, p1, KIND)
        dz = tl.where(times >= step, dz, 0.0) if FIRE_ONCE else dz  # masked once the neuron has fired
        acc_thr -= dz * h / (thr * thr) + tl.where(_fires(h, thr, times, step, FIRE_ONCE, FP32), du, 0.0)
        dh = du + dz / thr
        acc_leak += dh * u_prev
        tl.store(h_ptr + o, dh.to(h_ptr.dtype.element_ty), mask=mask)
        carry = dh * leak
        h = h_prev
        o -= n
    if STORE_GU0:
        tl.store(gu0_ptr + offs, carry.to(gu0_ptr.dtype.element_ty), mask=mask)
    tl.store(acc_leak_ptr + offs, acc_leak, mask=mask)
    tl.store(acc_thr_ptr + offs, acc_thr, mask=mask)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _or_x(t: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """A kernel's pointer argument: ``t``, or ``x`` as a placeholder the kernel does not read when ``t`` is absent."""
    return x if t is None else t


def _launch(kernel: triton.JITFunction, inputs: Inputs, *outputs: torch.Tensor | None, **flags: object) -> None:
    """Run ``kernel`` on all neurons: pointers to the inputs and ``outputs`` (``None``: unused), sizes, flags."""
    x, u0, leak, threshold, times = inputs
    steps, outer, channels, inner = x.shape
    n = outer * channels * inner
    kernel[(triton.cdiv(n, _BLOCK),)](
        x,
        _or_x(u0, x),
        leak,
        threshold,
        _or_x(times, x),
        *(_or_x(t, x) for t in outputs),
        steps,
        n,
        channels,
        inner,
        HAS_U0=u0 is not None,
        FIRE_ONCE=times is not None,
        FP32=_compute_dtype(x) == torch.float32,
        BLOCK=_BLOCK,
        num_warps=_NUM_WARPS,
        enable_fp_fusion=False,
        **flags,
    )


class TritonOps:
    """:class:`~snn_ext.kernels._fused.FusedOps` implemented by the two Triton kernels above."""

    def forward(self, inputs: Inputs, want_potentials: bool) -> ForwardResult:
        """See :meth:`snn_ext.kernels._fused.FusedOps.forward`."""
        x, times = inputs.x, inputs.times
        spikes = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        potentials = torch.empty_like(spikes) if want_potentials else None
        final = torch.empty(x.shape[1:], dtype=x.dtype, device=x.device)
        times_out = None if times is None else torch.empty(times.shape, dtype=times.dtype, device=x.device)
        _launch(_lif_forward_kernel, inputs, spikes, potentials, final, times_out, STORE_POT=want_potentials)
        return spikes, potentials, final, times_out

    def backward(self, inputs: Inputs, args: BackwardArgs) -> BackwardResult:
        """See :meth:`snn_ext.kernels._fused.FusedOps.backward`."""
        x = inputs.x
        dtype = _compute_dtype(x)
        # The recomputed potentials, then dL/dx, in the compute dtype (a copy follows for half inputs).
        scratch = torch.empty(x.shape, dtype=dtype, device=x.device)
        grad_u0 = torch.empty(x.shape[1:], dtype=x.dtype, device=x.device) if args.need_u0 else None
        acc_leak = torch.empty(x.shape[1:], dtype=dtype, device=x.device)
        acc_thr = torch.empty_like(acc_leak)
        sur = torch.tensor([args.spec.p0, args.spec.p1], dtype=dtype, device=x.device)
        _launch(
            _lif_backward_kernel,
            inputs,
            args.t_spike,
            sur,
            args.grad_spikes,
            args.grad_potentials,
            args.grad_final,
            scratch,
            grad_u0,
            acc_leak,
            acc_thr,
            KIND=_KINDS[args.spec.kind],
            HAS_GS=args.grad_spikes is not None,
            HAS_GP=args.grad_potentials is not None,
            HAS_GF=args.grad_final is not None,
            STORE_GU0=args.need_u0,
        )
        grad_x = scratch.to(x.dtype) if args.need_x else None
        return grad_x, grad_u0, acc_leak.sum((0, 2)), acc_thr.sum((0, 2))


OPS = TritonOps()
"""The Triton backend's kernels."""
INTERPRETED = not isinstance(_lif_forward_kernel, triton.runtime.JITFunction)
"""True when Triton runs its interpreter (``TRITON_INTERPRET=1`` at import): the kernels then take CPU tensors."""
