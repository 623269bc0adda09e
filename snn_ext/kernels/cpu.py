"""Fused DIET / fire-once LIF on the CPU: the whole sequence in one autograd node, written in torch ops.

:data:`EAGER` runs the ops one by one; :data:`COMPILED` runs the same functions through
``torch.compile`` (Inductor's C++ backend), which fuses all ``T`` steps into one loop over the neurons:
the forward pass reads ``x`` once and writes the spikes (and potentials if asked), the backward pass
recomputes the potentials from ``x`` and writes ``dL/dx``. Nothing of size ``[T, B, ...]`` is saved besides
the input. Compilation takes seconds per new combination of ``T``, dtype and arguments present (shapes are
dynamic) and needs a C++ compiler; if it fails, :data:`COMPILED` warns once and runs eagerly.

The forward arithmetic is the reference's, op for op (``h = leak * u + x``; ``h / threshold > 1``, which
equals ``h / threshold - 1 > 0`` exactly; ``h - threshold`` where it fired), so spikes and potentials are
bit-identical to :func:`snn_ext.core.diet_lif_multistep`. Gradients equal the reference's up to the order
of floating-point sums.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from snn_ext.kernels._fused import SurrogateSpec
from snn_ext.kernels._warn import warn_once

__all__ = ["COMPILED", "EAGER", "CpuOps"]


def _forward(
    x: torch.Tensor,
    u0: torch.Tensor | None,
    leak: torch.Tensor,
    threshold: torch.Tensor,
    times: torch.Tensor | None,
    want_potentials: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    leak_b, thr_b = leak.view(-1, 1), threshold.view(-1, 1)
    u = u0
    fired = None if times is None else torch.isfinite(times)
    spikes, potentials = [], []
    for t in range(x.shape[0]):
        h = x[t] if u is None else leak_b * u + x[t]
        fire = h / thr_b > 1.0
        if fired is not None:
            fire = fire & ~fired
            fired = fired | fire
            times = torch.where(fire, float(t), times)
        spikes.append(fire.to(x.dtype))
        u = torch.where(fire, h - thr_b, h)
        potentials.append(u)
    return (
        torch.stack(spikes),
        torch.stack(potentials) if want_potentials else None,
        u,
        times,
    )


def _surrogate_derivative(z: torch.Tensor, t: int, t_spike: torch.Tensor | None, spec: SurrogateSpec) -> torch.Tensor:
    if spec.kind == "triangle":
        return spec.p0 * torch.clamp(1.0 - z.abs(), min=0.0)
    if spec.kind == "box":
        return spec.p1 * (z.abs() < spec.p0).to(z.dtype)
    return spec.p0 * torch.exp(-spec.p1 * (t - t_spike).abs())


def _add(acc: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    return value if acc is None else acc + value


def _backward(
    x: torch.Tensor,
    u0: torch.Tensor | None,
    leak: torch.Tensor,
    threshold: torch.Tensor,
    times: torch.Tensor | None,
    t_spike: torch.Tensor | None,
    spec: SurrogateSpec,
    grad_spikes: torch.Tensor | None,
    grad_potentials: torch.Tensor | None,
    grad_final: torch.Tensor | None,
    need_x: bool,
    need_u0: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """``(dL/dx, dL/du0, dL/dleak, dL/dthreshold)``, the last two summed over ``Q`` only: ``[P, C]``.

    Summing over the innermost dimension keeps Inductor's code to one loop nest over the neurons; the sum
    over ``P`` (a strided reduction, which would split it) is left to the caller.
    """
    leak_b, thr_b = leak.view(-1, 1), threshold.view(-1, 1)
    steps = x.shape[0]
    # Recompute the forward pass: pre-reset potential h[t], spike indicator, potential before step t.
    hs, fires, before = [], [], []
    u = u0
    for t in range(steps):
        h = x[t] if u is None else leak_b * u + x[t]
        fire = h / thr_b > 1.0 if times is None else times == t
        hs.append(h)
        fires.append(fire)
        before.append(u)
        u = torch.where(fire, h - thr_b, h)
    carry = grad_final  # dL/du[t] from the steps after t
    acc_leak = acc_thr = None
    grads_x = []
    for t in range(steps - 1, -1, -1):
        du = carry if grad_potentials is None else _add(carry, grad_potentials[t])
        dh = du
        if grad_spikes is not None:
            z = hs[t] / thr_b - 1.0
            dz = grad_spikes[t] * _surrogate_derivative(z, t, t_spike, spec)
            if times is not None:  # a neuron that fired before step t is masked
                dz = torch.where(times >= t, dz, 0.0)
            acc_thr = _add(acc_thr, -(dz * hs[t]) / (thr_b * thr_b))
            dh = _add(dh, dz / thr_b)
        if du is not None:
            acc_thr = _add(acc_thr, -torch.where(fires[t], du, 0.0))
        if before[t] is not None:
            acc_leak = _add(acc_leak, dh * before[t])
        grads_x.append(dh)
        carry = dh * leak_b
    return (
        torch.stack(grads_x[::-1]) if need_x else None,
        carry if need_u0 else None,
        torch.zeros_like(x[0, :, :, 0]) if acc_leak is None else acc_leak.sum(2),
        acc_thr.sum(2),
    )


def _forward_eager(
    x: torch.Tensor,
    u0: torch.Tensor | None,
    leak: torch.Tensor,
    threshold: torch.Tensor,
    times: torch.Tensor | None,
    want_potentials: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
    """:func:`_forward` with in-place ops into preallocated outputs: fewer passes and allocations op by op."""
    leak_b, thr_b = leak.view(-1, 1), threshold.view(-1, 1)
    spikes = torch.empty_like(x)
    potentials = torch.empty_like(x) if want_potentials else None
    h, q = torch.empty_like(x[0]), torch.empty_like(x[0])
    u = u0
    fired = None if times is None else torch.isfinite(times)
    for t in range(x.shape[0]):
        if u is None:
            h.copy_(x[t])
        else:
            torch.mul(u, leak_b, out=h).add_(x[t])
        fire = torch.div(h, thr_b, out=q) > 1.0
        if fired is not None:
            fire &= ~fired
            fired |= fire
            times = torch.where(fire, float(t), times)
        spikes[t].copy_(fire)
        # h - threshold * spike is exact for a 0/1 spike, as the reference's h - threshold * H(z).
        u = torch.addcmul(h, spikes[t], thr_b, value=-1.0, out=None if potentials is None else potentials[t])
    return spikes, potentials, u, times


def _surrogate_derivative_(z: torch.Tensor, t: int, t_spike: torch.Tensor | None, spec: SurrogateSpec) -> torch.Tensor:
    """:func:`_surrogate_derivative`, computed in ``z``'s storage where it can be."""
    if spec.kind == "triangle":
        return z.abs_().neg_().add_(1.0).clamp_(min=0.0).mul_(spec.p0)
    if spec.kind == "box":
        return (z.abs_() < spec.p0).to(z.dtype).mul_(spec.p1)
    return (t - t_spike).abs_().mul_(-spec.p1).exp_().mul_(spec.p0)


def _backward_eager(
    x: torch.Tensor,
    u0: torch.Tensor | None,
    leak: torch.Tensor,
    threshold: torch.Tensor,
    times: torch.Tensor | None,
    t_spike: torch.Tensor | None,
    spec: SurrogateSpec,
    grad_spikes: torch.Tensor | None,
    grad_potentials: torch.Tensor | None,
    grad_final: torch.Tensor | None,
    need_x: bool,
    need_u0: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """:func:`_backward` with in-place ops into preallocated buffers."""
    leak_b, thr_b = leak.view(-1, 1), threshold.view(-1, 1)
    steps = x.shape[0]
    hs, fires, us = torch.empty_like(x), torch.empty_like(x), torch.empty_like(x)  # h[t], spike[t], u[t]
    for t in range(steps):
        if t == 0 and u0 is None:
            hs[0].copy_(x[0])
        else:
            torch.mul(u0 if t == 0 else us[t - 1], leak_b, out=hs[t]).add_(x[t])
        if times is None:
            torch.gt(hs[t] / thr_b, 1.0, out=fires[t])
        else:
            torch.eq(times, t, out=fires[t])
        torch.addcmul(hs[t], fires[t], thr_b, value=-1.0, out=us[t])
    grad_x = torch.empty_like(x) if need_x else None
    acc_leak, acc_z, acc_reset = torch.zeros_like(x[0]), torch.zeros_like(x[0]), torch.zeros_like(x[0])
    carry = grad_final  # dL/du[t] from the steps after t
    for t in range(steps - 1, -1, -1):
        du = carry if grad_potentials is None else _add(carry, grad_potentials[t])
        dh = torch.empty_like(x[0]) if grad_x is None else grad_x[t]
        if grad_spikes is None:
            dh.copy_(du)
        else:
            dz = _surrogate_derivative_(hs[t] / thr_b - 1.0, t, t_spike, spec).mul_(grad_spikes[t])
            if times is not None:  # a neuron that fired before step t is masked
                dz.masked_fill_(times < t, 0.0)
            acc_z.addcmul_(dz, hs[t])
            if du is None:
                torch.div(dz, thr_b, out=dh)
            else:
                torch.addcdiv(du, dz, thr_b, out=dh)
        if du is not None:
            acc_reset.addcmul_(du, fires[t])
        if t > 0 or u0 is not None:
            acc_leak.addcmul_(dh, us[t - 1] if t > 0 else u0)
        carry = dh * leak_b
    grad_thr = acc_z.sum(2).div_(-(threshold * threshold)).sub_(acc_reset.sum(2))
    return grad_x, carry if need_u0 else None, acc_leak.sum(2), grad_thr


class CpuOps:
    """The torch-op kernels, run eagerly or through ``torch.compile``; see the module docstring.

    Args:
        compiled: compile the kernels with ``torch.compile(dynamic=True)`` (eager inside a region that an
            outer ``torch.compile`` is tracing, and for good after a failed compilation).
    """

    def __init__(self, compiled: bool) -> None:
        self.compiled = compiled
        self._compiled_forward = torch.compile(_forward, dynamic=True, fullgraph=True)
        self._compiled_backward = torch.compile(_backward, dynamic=True, fullgraph=True)

    def _run(self, eager: Callable, compiled: Callable, *args: object):
        if not self.compiled or torch.compiler.is_compiling():
            return eager(*args)
        try:
            # One model needs a handful of graphs (T, dtype, which optional arguments are present, size-1
            # dimensions); dynamo's default limit of 8 per function would silently stop compiling.
            with torch._dynamo.config.patch(recompile_limit=64):
                return compiled(*args)
        except torch._dynamo.exc.BackendCompilerFailed as err:
            self.compiled = False
            warn_once(
                f"snn_ext.kernels: torch.compile failed on the CPU ({type(err.inner_exception).__name__}: "
                f"{err.inner_exception}); the fused CPU neuron runs uncompiled from now on (same results, slower)",
                2,
            )
            return eager(*args)

    def forward(
        self,
        x: torch.Tensor,
        u0: torch.Tensor | None,
        leak: torch.Tensor,
        threshold: torch.Tensor,
        times: torch.Tensor | None,
        want_potentials: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None]:
        """See :meth:`snn_ext.kernels._fused.FusedOps.forward`."""
        return self._run(_forward_eager, self._compiled_forward, x, u0, leak, threshold, times, want_potentials)

    def backward(
        self,
        x: torch.Tensor,
        u0: torch.Tensor | None,
        leak: torch.Tensor,
        threshold: torch.Tensor,
        times: torch.Tensor | None,
        t_spike: torch.Tensor | None,
        spec: SurrogateSpec,
        grad_spikes: torch.Tensor | None,
        grad_potentials: torch.Tensor | None,
        grad_final: torch.Tensor | None,
        need_x: bool,
        need_u0: bool,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """See :meth:`snn_ext.kernels._fused.FusedOps.backward`."""
        args = (x, u0, leak, threshold, times, t_spike, spec, grad_spikes, grad_potentials, grad_final, need_x, need_u0)
        grad_x, grad_u0, grad_leak, grad_thr = self._run(_backward_eager, self._compiled_backward, *args)
        return grad_x, grad_u0, grad_leak.sum(0), grad_thr.sum(0)

    def __repr__(self) -> str:
        return f"CpuOps(compiled={self.compiled})"


EAGER = CpuOps(compiled=False)
"""The fused CPU neuron, uncompiled: no start-up cost; the better choice for small tensors."""
COMPILED = CpuOps(compiled=True)
"""The fused CPU neuron through ``torch.compile``: the fastest CPU path for large tensors once compiled."""
