"""Surrogate spike functions on the normalized potential ``z = u / v_th - 1``.

Every surrogate is a small :class:`torch.nn.Module` (so it pickles and shows in ``repr``) whose
forward pass is the Heaviside step ``1[z > 0]`` and whose backward pass is a documented
pseudo-derivative. ``primitive(z)`` is a smooth function whose true derivative equals that
pseudo-derivative; the tests use it to check each backward pass with ``torch.autograd.gradcheck``.

DIET-SNN (Rathi & Roy, 2020) uses :class:`Triangle` with ``gamma = 0.3`` on the normalized
potential; the ultra-low-latency SNN of Datta & Beerel (2022) uses :class:`Box`. The single-spike
neurons of Datta, Kundu & Beerel (2021) use the spike-time-dependent :class:`STDB`, which also needs
the step index and the layer's :class:`SpikeTimeRecord`.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

__all__ = ["STDB", "Box", "SpikeTimeRecord", "Surrogate", "Triangle", "heaviside"]


def heaviside(z: torch.Tensor) -> torch.Tensor:
    """Spike indicator ``1[z > 0]`` in ``z``'s dtype (no gradient)."""
    return (z > 0).to(z.dtype)


class _SurrogateSpike(torch.autograd.Function):
    """Heaviside forward, ``surrogate.derivative(z)`` backward."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
        ctx.save_for_backward(z)
        ctx.surrogate = surrogate
        return heaviside(z)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None]:
        (z,) = ctx.saved_tensors
        return grad_output * ctx.surrogate.derivative(z), None


class Surrogate(nn.Module):
    """Base class: ``forward(z)`` spikes where ``z > 0`` and back-propagates ``derivative(z)``.

    Subclasses implement :meth:`derivative` and :meth:`primitive`.
    """

    def derivative(self, z: torch.Tensor) -> torch.Tensor:
        """Pseudo-derivative ``d spike / d z`` used in the backward pass, same shape as ``z``."""
        raise NotImplementedError

    def primitive(self, z: torch.Tensor) -> torch.Tensor:
        """A smooth function whose derivative is :meth:`derivative` (its antiderivative)."""
        raise NotImplementedError

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Spikes ``1[z > 0]``, shape and dtype of ``z``."""
        return _SurrogateSpike.apply(z, self)


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


class Triangle(Surrogate):
    """DIET-SNN's piecewise-linear surrogate: ``d spike / d z = gamma * max(0, 1 - |z|)``.

    Args:
        gamma: peak height of the triangle (DIET-SNN: 0.3). Must be > 0.
    """

    def __init__(self, gamma: float = 0.3) -> None:
        super().__init__()
        self.gamma = _positive(gamma, "gamma")

    def derivative(self, z: torch.Tensor) -> torch.Tensor:
        return self.gamma * torch.clamp(1.0 - z.abs(), min=0.0)

    def primitive(self, z: torch.Tensor) -> torch.Tensor:
        zc = torch.clamp(z, -1.0, 1.0)
        return self.gamma * (zc - zc * zc.abs() / 2)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"


class Box(Surrogate):
    """Rectangular surrogate: ``d spike / d z = height`` for ``|z| < width``, else 0.

    Args:
        width: half-width of the box on ``z`` (Datta & Beerel 2022: 1.0). Must be > 0.
        height: value of the pseudo-derivative inside the box (1.0). Must be > 0.
    """

    def __init__(self, width: float = 1.0, height: float = 1.0) -> None:
        super().__init__()
        self.width = _positive(width, "width")
        self.height = _positive(height, "height")

    def derivative(self, z: torch.Tensor) -> torch.Tensor:
        return self.height * (z.abs() < self.width).to(z.dtype)

    def primitive(self, z: torch.Tensor) -> torch.Tensor:
        return self.height * torch.clamp(z, -self.width, self.width)

    def extra_repr(self) -> str:
        return f"width={self.width}, height={self.height}"


class SpikeTimeRecord:
    """Spike times of one layer during the current sequence; :class:`STDB`'s backward pass reads it.

    The neuron step writes it as the sequence runs; backward runs after the whole sequence, so it
    sees every neuron's final spike time. One record per layer and per sequence (a reset starts a
    new one).

    Attributes:
        times: ``[B, ...]`` float step index of each neuron's spike, ``inf`` where it has not fired.
        steps: number of steps run so far (``T`` once the sequence is over).
    """

    __slots__ = ("steps", "times")

    def __init__(self, like: torch.Tensor) -> None:
        self.times = torch.full_like(like, float("inf"))
        self.steps = 0


class _STDBSpike(torch.autograd.Function):
    """Heaviside forward, ``alpha * exp(-beta * |t - t_spike|)`` backward (independent of z)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, t: int, record: SpikeTimeRecord, stdb: STDB) -> torch.Tensor:
        ctx.t, ctx.record, ctx.stdb = t, record, stdb
        return heaviside(z)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        return grad_output * ctx.stdb.derivative(ctx.t, ctx.record).to(grad_output.dtype), None, None, None


# Compiled graphs snapshot what backward reads; this backward must read the record as the sequence left it.
_WHY = (
    "snn_ext STDB: a single step's backward reads the layer's spike times after the whole sequence, which one "
    "step's graph cannot hold; compile whole sequences (forward_sequence, step_mode 'm') for one graph"
)
_REASON = {"reason": _WHY} if "reason" in inspect.signature(torch.compiler.disable).parameters else {}  # torch>=2.8
_stdb_spike = torch.compiler.disable(_STDBSpike.apply, **_REASON)


class STDB(nn.Module):
    """Spike-time-dependent surrogate: ``d spike / d z = alpha * exp(-beta * |t - t_spike|)``.

    Like every surrogate here it acts on the normalized potential ``z = u / v - 1``, as the official
    DIET-SNN/STDB code applies it, so the gradient per unit of potential ``u`` is that divided by ``v``.

    ``t`` is the current step (0 = the first step) and ``t_spike`` the neuron's spike time in the
    current sequence, read from the layer's :class:`SpikeTimeRecord` after the sequence has run (so
    steps before the spike get gradient too). A neuron that never fired is given ``t_spike = T``, as if
    it fired right after the window: its gradient grows towards the end of the sequence.

    This is *our* formulation for fire-once neurons, not the official one. The official STDB (Rathi et al.,
    ICLR 2020, ``nitin-rathi/hybrid-snn-conversion``) uses ``alpha * exp(-beta * (t - t_last))`` with
    ``t_last`` the neuron's last spike *before* step ``t`` (initialised to -1000, so the gradient is about 0
    until the first spike). For a neuron that fires at most once, that rule gives no spike gradient before the
    spike, so a silent neuron could never learn to fire; the single-spike paper's own variant (Datta, Kundu &
    Beerel 2021) is not public. ``time="since_last"`` gives the official rule exactly (on the spike that the
    record holds: a fire-once neuron's only spike). Multi-spike DIET neurons (``DietLeaky``, ``DietLIFNode``) take
    ``time="since_last"`` only, with each neuron's latest earlier spike (:func:`snn_ext.core.neuron.diet_stdb_step`),
    as the official code trains them. Defaults are the DIET-SNN code's.

    Args:
        alpha: gradient at the spike time, > 0 (0.3).
        beta: decay per step of distance from the spike, > 0 (0.01).
        time: ``"spike"`` (ours, above) or ``"since_last"`` (the official rule; the fused kernels run
            ``"spike"`` only, ``"since_last"`` runs the reference with a one-time ``KernelFallbackWarning``).
    """

    TIMES = ("spike", "since_last")
    NEVER = -1000.0
    """The official code's spike time before a neuron's first spike (``time="since_last"``)."""

    def __init__(self, alpha: float = 0.3, beta: float = 0.01, time: str = "spike") -> None:
        super().__init__()
        self.alpha = _positive(alpha, "alpha")
        self.beta = _positive(beta, "beta")
        if time not in self.TIMES:
            raise ValueError(f"time must be one of {', '.join(map(repr, self.TIMES))}, got {time!r}")
        self.time = time

    def derivative(self, t: int, record: SpikeTimeRecord) -> torch.Tensor:
        """``[B, ...]`` pseudo-derivative at step ``t`` given the layer's spike times."""
        if self.time == "since_last":
            return self.since(t, torch.where(record.times < t, record.times, self.NEVER))
        t_spike = torch.where(torch.isinf(record.times), float(record.steps), record.times)
        return self.alpha * torch.exp(-self.beta * (t - t_spike).abs())

    def since(self, t: int, last_spike: torch.Tensor) -> torch.Tensor:
        """The official rule at step ``t``: ``alpha * exp(-beta * (t - last_spike))``, with ``last_spike`` each
        neuron's latest spike before ``t`` (:attr:`NEVER` before the first), as multi-spike DIET neurons use it."""
        return self.alpha * torch.exp(-self.beta * (t - last_spike))

    def primitive(self, z: torch.Tensor, t: int, record: SpikeTimeRecord) -> torch.Tensor:
        """``derivative * z``: the pseudo-derivative does not depend on ``z``."""
        return self.derivative(t, record) * z

    def forward(self, z: torch.Tensor, t: int, record: SpikeTimeRecord) -> torch.Tensor:
        """Spikes ``1[z > 0]`` of step ``t``, shape of ``z``.

        The backward pass reads ``record`` when it runs, after the whole sequence: a tape that a graph compiled
        for one step cannot hold, so ``torch.compile`` runs this call outside its graph (one graph break per
        step; values and gradients stay exact). Whole sequences (``forward_sequence``, SpikingJelly's ``'m'``
        mode) form STDB spikes after their loop instead and compile without a break.
        """
        return _stdb_spike(z, t, record, self)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, beta={self.beta}" + (f", time={self.time!r}" if self.time != "spike" else "")
