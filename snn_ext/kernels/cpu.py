"""Fused DIET / fire-once LIF on the CPU: the whole sequence in one autograd node, written in torch ops.

:data:`EAGER` runs the ops one by one; :data:`COMPILED` runs the same functions through
``torch.compile`` (Inductor's C++ backend), which fuses all ``T`` steps into one loop over the neurons:
the forward pass reads ``x`` once and writes the spikes (and potentials if asked), the backward pass
recomputes the potentials from ``x`` and writes ``dL/dx``. Nothing of size ``[T, B, ...]`` is saved besides
the input. Compilation takes seconds per new combination of ``T``, dtype and arguments present (shapes are
dynamic) and needs a C++ compiler; if it fails, :data:`COMPILED` warns once and runs eagerly.

Both run the same code with a switch ``inplace`` (see :class:`_Steps`): op by op, results are written with
in-place ops into preallocated buffers, which saves passes over memory and allocations; for Inductor, every
step's value is a tensor of its own, so that it fuses the recomputed ``[T, ...]`` intermediates away instead
of storing them (and the few ops where the two differ take the form Inductor fuses best, see :func:`_backward`).

The forward arithmetic is the reference's, op for op (``h = leak * u + x``; ``h / threshold > 1``, which
equals ``h / threshold - 1 > 0`` exactly; ``h - threshold`` where it fired), so spikes and potentials are
bit-identical to :func:`snn_ext.core.diet_lif_multistep`. Gradients equal the reference's up to the order
of floating-point sums.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from snn_ext.kernels._fused import BackwardArgs, BackwardResult, ForwardResult, Inputs, SurrogateSpec
from snn_ext.kernels._warn import warn_once

__all__ = ["COMPILED", "EAGER", "CpuOps"]


class _Steps:
    """The per-step values of a ``[T, ...]`` result or intermediate, indexed by step.

    ``inplace``: step ``t`` writes into ``out(t)``, a view of one preallocated tensor. Otherwise ``out(t)`` is
    ``None`` (a torch op's ``out=None``: a new tensor per step, which Inductor keeps in registers) and
    :meth:`result` stacks them. Unless ``wanted``, nothing is stored and :meth:`result` is ``None``.
    """

    def __init__(self, like: torch.Tensor, inplace: bool, wanted: bool = True) -> None:
        self.wanted = wanted
        self.steps = like.shape[0]
        self.buffer = torch.empty_like(like) if inplace and wanted else None
        self.values: dict[int, torch.Tensor] = {}  # not a list: older Dynamo (torch 2.11) cannot trace list[t] = v

    def out(self, t: int) -> torch.Tensor | None:
        return None if self.buffer is None else self.buffer[t]

    def put(self, t: int, value: torch.Tensor) -> torch.Tensor:
        if self.wanted:
            self.values[t] = value
        return value

    def __getitem__(self, t: int) -> torch.Tensor:
        return self.values[t]

    def result(self) -> torch.Tensor | None:
        if not self.wanted:
            return None
        return torch.stack([self.values[t] for t in range(self.steps)]) if self.buffer is None else self.buffer


def _into(out: torch.Tensor | None, value: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``value`` copied into ``out``; or, when ``out`` is ``None``, ``value`` itself (converted to ``dtype``)."""
    if out is None:
        return value if dtype is None else value.to(dtype)
    return out.copy_(value)


def _charge(u: torch.Tensor | None, x_t: torch.Tensor, leak_b: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """The pre-reset potential ``h = leak * u + x[t]`` (``x[t]`` when ``u`` is ``None``)."""
    if u is None:
        return _into(out, x_t)
    return torch.mul(u, leak_b, out=out).add_(x_t)


def _forward(inputs: Inputs, want_potentials: bool, inplace: bool) -> ForwardResult:
    """:meth:`snn_ext.kernels._fused.FusedOps.forward`; ``inplace``: see the module docstring."""
    x, u, leak, threshold, times = inputs
    leak_b, thr_b = leak.view(-1, 1), threshold.view(-1, 1)
    spikes, potentials = _Steps(x, inplace), _Steps(x, inplace, want_potentials)
    h_out, q_out = (torch.empty_like(x[0]), torch.empty_like(x[0])) if inplace else (None, None)  # scratch
    fired = None if times is None else torch.isfinite(times)
    for t in range(x.shape[0]):
        h = _charge(u, x[t], leak_b, h_out)
        fire = torch.div(h, thr_b, out=q_out) > 1.0
        if fired is not None:
            fire &= ~fired
            fired |= fire
            times = torch.where(fire, float(t), times)
        spike = spikes.put(t, _into(spikes.out(t), fire, x.dtype))
        # h - threshold * spike is exact for a 0/1 spike, as the reference's h - threshold * H(z).
        u = potentials.put(t, torch.addcmul(h, spike, thr_b, value=-1.0, out=potentials.out(t)))
    return spikes.result(), potentials.result(), u, times


def _surrogate_derivative(z: torch.Tensor, t: int, t_spike: torch.Tensor | None, spec: SurrogateSpec) -> torch.Tensor:
    """The surrogate's derivative at ``z`` (a temporary: computed in its storage where it can be) and step ``t``."""
    if spec.kind == "triangle":
        return z.abs_().neg_().add_(1.0).clamp_(min=0.0).mul_(spec.p0)
    if spec.kind == "box":
        return (z.abs_() < spec.p0).to(z.dtype).mul_(spec.p1)
    return (t - t_spike).abs_().mul_(-spec.p1).exp_().mul_(spec.p0)


def _recompute(inputs: Inputs, inplace: bool) -> tuple[_Steps, _Steps, _Steps]:
    """The forward pass again: pre-reset potentials ``h[t]``, spike indicators (0/1) and potentials ``u[t]``."""
    x, u, leak, threshold, times = inputs
    leak_b, thr_b = leak.view(-1, 1), threshold.view(-1, 1)
    hs, fires, us = _Steps(x, inplace), _Steps(x, inplace), _Steps(x, inplace)
    for t in range(x.shape[0]):
        h = hs.put(t, _charge(u, x[t], leak_b, hs.out(t)))
        if times is None:
            fire = fires.put(t, torch.gt(h / thr_b, 1.0, out=fires.out(t)))
        else:
            fire = fires.put(t, torch.eq(times, t, out=fires.out(t)))
        if inplace:  # one pass; exact for a 0/1 spike, see _forward
            u = us.put(t, torch.addcmul(h, fire, thr_b, value=-1.0, out=us.out(t)))
        else:  # Inductor writes more intermediates out of its loop with addcmul here
            u = us.put(t, torch.where(fire, h - thr_b, h))
    return hs, fires, us


def _add(acc: torch.Tensor | None, value: torch.Tensor) -> torch.Tensor:
    return value if acc is None else acc + value


def _add_product(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor, inplace: bool) -> torch.Tensor:
    """``acc + a * b``, in ``acc``'s storage when ``inplace`` (for Inductor not ``addcmul``, see :func:`_backward`)."""
    return acc.addcmul_(a, b) if inplace else acc + a * b


def _threshold_grad(
    acc_z: torch.Tensor, acc_reset: torch.Tensor, threshold: torch.Tensor, inplace: bool
) -> torch.Tensor:
    """``dL/dthreshold`` summed over ``Q`` from the sums over time of ``dL/dz * h`` and of ``dL/du`` where fired."""
    if inplace:  # two sums, then one division per channel
        return acc_z.sum(2).div_(-(threshold * threshold)).sub_(acc_reset.sum(2))
    thr_b = threshold.view(-1, 1)
    return (acc_z / -(thr_b * thr_b) - acc_reset).sum(2)  # one sum, see _backward


def _backward(inputs: Inputs, args: BackwardArgs, inplace: bool) -> BackwardResult:
    """:meth:`snn_ext.kernels._fused.FusedOps.backward`, but ``dL/dleak`` and ``dL/dthreshold`` summed over ``Q`` only.

    They come back ``[P, C]``: summing over the innermost dimension keeps Inductor's code to one loop nest
    over the neurons; the sum over ``P`` (a strided reduction, which would split it) is left to the caller.
    ``inplace``: see the module docstring. Inductor keeps that one loop nest only with the out-of-place forms
    chosen where the two modes differ (``where`` for the reset, ``+`` rather than ``addcmul`` for the sums,
    at most two sums over ``Q``): otherwise it writes ``[P, C, Q]`` accumulators out and sums them in loops
    of their own (measured up to 30% slower).
    """
    x, u0, leak, threshold, times = inputs
    t_spike, spec, grad_spikes, grad_potentials, grad_final, need_x, need_u0 = args
    leak_b, thr_b = leak.view(-1, 1), threshold.view(-1, 1)
    hs, fires, us = _recompute(inputs, inplace)
    grads_x = _Steps(x, inplace, need_x)
    acc_leak, acc_z, acc_reset = torch.zeros_like(x[0]), torch.zeros_like(x[0]), torch.zeros_like(x[0])
    carry = grad_final  # dL/du[t] from the steps after t
    for t in range(x.shape[0] - 1, -1, -1):
        du = carry if grad_potentials is None else _add(carry, grad_potentials[t])
        if grad_spikes is None:
            dh = _into(grads_x.out(t), du)
        else:
            dz = _surrogate_derivative(hs[t] / thr_b - 1.0, t, t_spike, spec).mul_(grad_spikes[t])
            if times is not None:  # a neuron that fired before step t is masked
                dz.masked_fill_(times < t, 0.0)
            acc_z = _add_product(acc_z, dz, hs[t], inplace)
            if du is None:
                dh = torch.div(dz, thr_b, out=grads_x.out(t))
            else:
                dh = torch.addcdiv(du, dz, thr_b, out=grads_x.out(t))
        grads_x.put(t, dh)
        if du is not None:
            acc_reset = _add_product(acc_reset, du, fires[t], inplace)
        if t > 0 or u0 is not None:
            acc_leak = _add_product(acc_leak, dh, us[t - 1] if t > 0 else u0, inplace)
        carry = dh * leak_b
    grad_thr = _threshold_grad(acc_z, acc_reset, threshold, inplace)
    return grads_x.result(), carry if need_u0 else None, acc_leak.sum(2), grad_thr


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

    def _run(self, fn: Callable, compiled: Callable, *args: object):
        """``fn(*args, inplace)``: through ``compiled`` (out of place) when compiling, else eagerly in place."""
        if not self.compiled or torch.compiler.is_compiling():
            return fn(*args, True)
        try:
            # One model needs a handful of graphs (T, dtype, which optional arguments are present, size-1
            # dimensions); dynamo's default limit of 8 per function would silently stop compiling.
            with torch._dynamo.config.patch(recompile_limit=64):
                return compiled(*args, False)
        except (torch._dynamo.exc.BackendCompilerFailed, torch._dynamo.exc.Unsupported) as err:
            # the C++ compiler failed, or this torch's Dynamo cannot trace the kernels
            self.compiled = False
            cause = getattr(err, "inner_exception", err)  # BackendCompilerFailed wraps the compiler's error
            reason = (str(cause).strip().splitlines() or [""])[0]
            warn_once(
                f"snn_ext.kernels: torch.compile failed on the CPU ({type(cause).__name__}: {reason}); the fused "
                "CPU neuron runs uncompiled from now on (same results, slower)",
                2,
            )
            return fn(*args, True)

    def forward(self, inputs: Inputs, want_potentials: bool) -> ForwardResult:
        """See :meth:`snn_ext.kernels._fused.FusedOps.forward`."""
        return self._run(_forward, self._compiled_forward, inputs, want_potentials)

    def backward(self, inputs: Inputs, args: BackwardArgs) -> BackwardResult:
        """See :meth:`snn_ext.kernels._fused.FusedOps.backward`."""
        grad_x, grad_u0, grad_leak, grad_thr = self._run(_backward, self._compiled_backward, inputs, args)
        return grad_x, grad_u0, grad_leak.sum(0), grad_thr.sum(0)

    def __repr__(self) -> str:
        return f"CpuOps(compiled={self.compiled})"


EAGER = CpuOps(compiled=False)
"""The fused CPU neuron, uncompiled: no start-up cost; the better choice for small tensors."""
COMPILED = CpuOps(compiled=True)
"""The fused CPU neuron through ``torch.compile``: the fastest CPU path for large tensors once compiled."""
