"""DIET-SNN leaky integrate-and-fire neuron: the reference every face and kernel must match.

Dynamics of one layer (Rathi & Roy 2020, as in the official DIET-SNN code), per time step ``t``::

    u[t] = leak * u[t-1] + x[t]          # leak multiplies the old potential, then input is added
    z[t] = u[t] / threshold - 1          # normalized potential
    s[t] = 1 if z[t] > 0 else 0          # spike; backward uses spike_fn's pseudo-derivative on z
    u[t] = u[t] - threshold * 1[z[t] > 0]   # soft reset with a hard (non-differentiable) indicator

``leak`` and ``threshold`` are per-layer scalars ``[]``, per-channel vectors ``[C]`` (dimension 1 of a
step ``[B, C, ...]``) or per-neuron tensors with a step's number of dimensions that broadcast to it
(``[1, C, H, W]``; the snnTorch face maps snnTorch's broadcasting rule onto these three). The threshold
still receives gradient through ``z`` and through the reset term. Units: ``x``, ``u`` and
``threshold`` are in the same (arbitrary) potential unit; ``leak`` is dimensionless.

Fire-once (single-spike) variant, Datta, Kundu & Beerel (2021): the same dynamics, but a neuron that
has fired is silent for the rest of the sequence (its output and its reset are masked), so every
neuron fires at most once per sample. Its default surrogate is the spike-time-dependent
:class:`~snn_ext.core.surrogate.STDB`, which reads the layer's spike times from the state's
:class:`~snn_ext.core.surrogate.SpikeTimeRecord`.

How snnTorch's own ``Leaky`` differs: with its default ``reset_delay=True`` it subtracts the
*previous* step's spike after the decay (``u[t] = beta*u[t-1] + x[t] - thr*s[t-1]``), so the reset
lands one step later, its surrogate sees ``u - thr`` rather than ``u / thr - 1``, and beta is
clamped to ``[0, 1]`` inside every forward call. SpikingJelly's ``LIFNode`` decays towards the
input (``h = u + (x - u) / tau``). DIET keeps the leak <= 1 by :func:`clamp_leak_` after each
optimizer step instead of clamping in forward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from snn_ext.core.checks import channel_view, check_current, check_leak, check_sequence, check_threshold
from snn_ext.core.surrogate import STDB, SpikeTimeRecord, Triangle, heaviside

__all__ = [
    "MIN_THRESHOLD",
    "DietSTDBSequence",
    "DietSTDBState",
    "SequenceOutput",
    "SingleSpikeSequence",
    "SingleSpikeState",
    "SpikeFn",
    "StateQuant",
    "check_since_last",
    "clamp_leak_",
    "clamp_threshold_",
    "diet_lif_multistep",
    "diet_lif_step",
    "diet_stdb_multistep",
    "diet_stdb_step",
    "single_spike_lif_multistep",
    "single_spike_lif_step",
]

SpikeFn = Callable[[torch.Tensor], torch.Tensor]
"""Maps the normalized potential ``z`` to spikes (Heaviside forward, surrogate backward)."""
StateQuant = Callable[[torch.Tensor], torch.Tensor]
"""Applied to the potential after integration, before firing (snnTorch's ``state_quant``), e.g. a quantizer
from ``snntorch.functional.quant``."""

_DIET_TRIANGLE = Triangle(gamma=0.3)


class SequenceOutput(NamedTuple):
    """Result of a multi-step neuron call."""

    spikes: torch.Tensor
    """``[T, B, ...]`` spikes in ``{0, 1}``."""
    potentials: torch.Tensor
    """``[T, B, ...]`` membrane potential after each step's reset."""
    final: torch.Tensor
    """``[B, ...]`` potential after the last step, to carry into the next call (a tensor of its own,
    not a view of ``potentials``, so frameworks may ``detach_()`` it in place)."""


def _prepare(
    x: torch.Tensor, u: torch.Tensor | None, leak: torch.Tensor, threshold: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Broadcastable views of leak/threshold and a zero or checked initial potential for step ``x``."""
    # Plain numbers are checked here; tensors are trainable state, checked when a module is built.
    leak_t = leak if isinstance(leak, torch.Tensor) else check_leak(leak)
    thr_t = threshold if isinstance(threshold, torch.Tensor) else check_threshold(threshold)
    leak_b = channel_view(leak_t, x, "leak")
    thr_b = channel_view(thr_t, x, "threshold")
    if u is None:
        u = torch.zeros_like(x)
    elif not isinstance(u, torch.Tensor) or u.shape != x.shape:
        shape = tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__
        raise ValueError(f"u (membrane potential) must be None or a tensor of shape {tuple(x.shape)}, got {shape}")
    return u, leak_b, thr_b


def _refuse_stdb(spike_fn: object) -> None:
    if isinstance(spike_fn, STDB):
        raise TypeError(
            "STDB needs the neurons' spike times: DIET neurons train with it through diet_stdb_step / "
            "diet_stdb_multistep (the faces do this for STDB(time='since_last')), fire-once ones through "
            "single_spike_lif_step / single_spike_lif_multistep"
        )


def _integrate(x: torch.Tensor, u: torch.Tensor, leak: torch.Tensor, state_quant: StateQuant | None) -> torch.Tensor:
    u = leak * u + x
    return u if state_quant is None else state_quant(u)


def _step(
    x: torch.Tensor,
    u: torch.Tensor,
    leak: torch.Tensor,
    threshold: torch.Tensor,
    spike_fn: SpikeFn,
    state_quant: StateQuant | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    u = _integrate(x, u, leak, state_quant)
    z = u / threshold - 1.0
    spike = spike_fn(z)
    return spike, u - threshold * heaviside(z)


def diet_lif_step(
    x: torch.Tensor,
    u: torch.Tensor | None,
    leak: float | torch.Tensor,
    threshold: float | torch.Tensor,
    spike_fn: SpikeFn | None = None,
    state_quant: StateQuant | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advance a layer of DIET LIF neurons by one time step.

    Args:
        x: input current ``[B, C, ...]`` or ``[B, F]`` (a 0-d tensor is a single neuron).
        u: membrane potential after the previous step, shape of ``x``; ``None`` starts from 0.
        leak: ``[]``, ``[C]`` or per neuron (see the module docstring), in ``[0, 1]`` (1 = integrate-and-fire).
        threshold: ``[]``, ``[C]`` or per neuron, > 0.
        spike_fn: surrogate spike function of the normalized potential ``z``; default
            :class:`~snn_ext.core.surrogate.Triangle` with ``gamma = 0.3``. Any callable with
            Heaviside forward works, e.g. ``snntorch.surrogate.atan()`` or a SpikingJelly surrogate
            module (they then see ``z`` instead of ``u - threshold``).
        state_quant: applied to the potential after integration, before firing (:data:`StateQuant`).

    Returns:
        ``(spike, u)``: spikes in ``{0, 1}`` and the potential after the soft reset, both shaped like ``x``.
    """
    check_current(x, "x")
    _refuse_stdb(spike_fn)
    u, leak_b, thr_b = _prepare(x, u, leak, threshold)
    return _step(x, u, leak_b, thr_b, spike_fn or _DIET_TRIANGLE, state_quant)


def diet_lif_multistep(
    x_seq: torch.Tensor,
    u: torch.Tensor | None,
    leak: float | torch.Tensor,
    threshold: float | torch.Tensor,
    spike_fn: SpikeFn | None = None,
    state_quant: StateQuant | None = None,
) -> SequenceOutput:
    """Run DIET LIF neurons over a whole sequence; equal to a loop of :func:`diet_lif_step`.

    Args:
        x_seq: input currents ``[T, B, C, ...]`` or ``[T, B, F]`` with ``T >= 1``.
        u: initial membrane potential ``[B, ...]`` (shape of ``x_seq[0]``); ``None`` starts from 0.
        leak, threshold, spike_fn, state_quant: as in :func:`diet_lif_step`.

    Returns:
        :class:`SequenceOutput` ``(spikes, potentials, final)``.
    """
    check_sequence(x_seq, "x_seq")
    _refuse_stdb(spike_fn)
    u, leak_b, thr_b = _prepare(x_seq[0], u, leak, threshold)
    spike_fn = spike_fn or _DIET_TRIANGLE
    spikes, potentials = [], []
    for x in x_seq:
        spike, u = _step(x, u, leak_b, thr_b, spike_fn, state_quant)
        spikes.append(spike)
        potentials.append(u)
    return SequenceOutput(torch.stack(spikes), torch.stack(potentials), u)


class SingleSpikeState(NamedTuple):
    """State of a fire-once layer between steps."""

    u: torch.Tensor
    """``[B, ...]`` membrane potential."""
    record: SpikeTimeRecord
    """Spike times so far (``inf`` = not fired yet); shared by all steps of one sequence."""
    step: int
    """Index of the next step (0 at the start of a sequence)."""


class SingleSpikeSequence(NamedTuple):
    """Result of a multi-step fire-once call."""

    spikes: torch.Tensor
    """``[T, B, ...]`` spikes; at most one 1 per neuron along ``T``."""
    potentials: torch.Tensor
    """``[T, B, ...]`` membrane potential after each step."""
    state: SingleSpikeState
    """State after the last step, to carry into the next call."""


SingleSpikeSurrogate = STDB | SpikeFn


def _start_single_spike(x: torch.Tensor, state: SingleSpikeState | None, leak, threshold):
    u, leak_b, thr_b = _prepare(x, None if state is None else state.u, leak, threshold)
    if state is None:
        state = SingleSpikeState(u, SpikeTimeRecord(x), 0)
    return state, leak_b, thr_b


def _single_spike_update(
    x: torch.Tensor,
    state: SingleSpikeState,
    leak: torch.Tensor,
    threshold: torch.Tensor,
    state_quant: StateQuant | None,
) -> tuple[torch.Tensor, torch.Tensor, SingleSpikeState]:
    """One step's ``z``, the mask of neurons that may still fire, and the new state (record updated)."""
    t, record = state.step, state.record
    u = _integrate(x, state.u, leak, state_quant)
    z = u / threshold - 1.0
    may_fire = torch.isinf(record.times).to(u.dtype)
    fired_now = heaviside(z) * may_fire
    record.times = torch.where(fired_now > 0, float(t), record.times)
    record.steps = t + 1
    return z, may_fire, SingleSpikeState(u - threshold * fired_now, record, t + 1)


def _single_spike_step(
    x: torch.Tensor,
    state: SingleSpikeState,
    leak: torch.Tensor,
    threshold: torch.Tensor,
    surrogate: SingleSpikeSurrogate,
    state_quant: StateQuant | None,
) -> tuple[torch.Tensor, SingleSpikeState]:
    t, record = state.step, state.record
    z, may_fire, state = _single_spike_update(x, state, leak, threshold, state_quant)
    spike = surrogate(z, t, record) if isinstance(surrogate, STDB) else surrogate(z)
    return spike * may_fire, state


def single_spike_lif_step(
    x: torch.Tensor,
    state: SingleSpikeState | None,
    leak: float | torch.Tensor,
    threshold: float | torch.Tensor,
    surrogate: SingleSpikeSurrogate | None = None,
    state_quant: StateQuant | None = None,
) -> tuple[torch.Tensor, SingleSpikeState]:
    """One step of fire-once DIET LIF neurons.

    Args:
        x: input current ``[B, C, ...]`` or ``[B, F]`` (a 0-d tensor is a single neuron).
        state: the previous step's state; ``None`` starts a new sequence (``u = 0``, nobody fired).
        leak, threshold, state_quant: as in :func:`diet_lif_step`.
        surrogate: :class:`~snn_ext.core.surrogate.STDB` (default ``STDB(0.3, 0.01)``) or any
            ``spike_fn(z)`` such as :class:`~snn_ext.core.surrogate.Triangle`.

    Returns:
        ``(spike, state)``: spikes shaped like ``x`` (0 for neurons that fired earlier) and the new state.
        The step also writes this step's spikes into ``state.record`` (the record is a tape read by the
        STDB backward pass, so do not reuse one state for two different continuations).
    """
    check_current(x, "x")
    state, leak_b, thr_b = _start_single_spike(x, state, leak, threshold)
    return _single_spike_step(x, state, leak_b, thr_b, surrogate or STDB(), state_quant)


def single_spike_lif_multistep(
    x_seq: torch.Tensor,
    state: SingleSpikeState | None,
    leak: float | torch.Tensor,
    threshold: float | torch.Tensor,
    surrogate: SingleSpikeSurrogate | None = None,
    state_quant: StateQuant | None = None,
) -> SingleSpikeSequence:
    """Fire-once DIET LIF over a sequence ``[T, B, ...]``; equal to a loop of :func:`single_spike_lif_step`.

    Under ``torch.compile`` with :class:`~snn_ext.core.surrogate.STDB`, the spikes are formed after the loop, once
    the call's spike times are known: ``heaviside(z) + (z - z.detach()) * STDB.derivative`` has the Heaviside
    values and STDB's gradient, the numbers of the single steps' tape (which backward reads after the sequence)
    but a plain graph that the compiler traces whole. The two agree for a sequence run in one call; when one
    sequence is split over several compiled calls, an earlier call's gradient sees the spike times known when it
    ran (eager calls read the final ones).

    Returns:
        :class:`SingleSpikeSequence` ``(spikes, potentials, state)``.
    """
    check_sequence(x_seq, "x_seq")
    state, leak_b, thr_b = _start_single_spike(x_seq[0], state, leak, threshold)
    surrogate = surrogate or STDB()
    if not (isinstance(surrogate, STDB) and torch.compiler.is_compiling()):
        spikes, potentials = [], []
        for x in x_seq:
            spike, state = _single_spike_step(x, state, leak_b, thr_b, surrogate, state_quant)
            spikes.append(spike)
            potentials.append(state.u)
        return SingleSpikeSequence(torch.stack(spikes), torch.stack(potentials), state)
    first, record = state.step, state.record
    zs, masks, potentials = [], [], []
    for x in x_seq:
        z, may_fire, state = _single_spike_update(x, state, leak_b, thr_b, state_quant)
        zs.append(z)
        masks.append(may_fire)
        potentials.append(state.u)
    spikes = [
        (heaviside(z) + (z - z.detach()) * surrogate.derivative(first + i, record).to(z.dtype)) * may_fire
        for i, (z, may_fire) in enumerate(zip(zs, masks, strict=True))
    ]
    return SingleSpikeSequence(torch.stack(spikes), torch.stack(potentials), state)


class DietSTDBState(NamedTuple):
    """State of a layer of multi-spike DIET neurons trained with ``STDB(time="since_last")``, between steps."""

    u: torch.Tensor
    """``[B, ...]`` membrane potential."""
    last_spike: torch.Tensor
    """``[B, ...]`` step of each neuron's latest spike (``STDB.NEVER`` before its first)."""
    step: int
    """Index of the next step (0 at the start of a sequence)."""


class DietSTDBSequence(NamedTuple):
    """Result of :func:`diet_stdb_multistep`."""

    spikes: torch.Tensor
    """``[T, B, ...]`` spikes."""
    potentials: torch.Tensor
    """``[T, B, ...]`` membrane potential after each step's reset."""
    state: DietSTDBState
    """State after the last step, to carry into the next call."""


def check_since_last(stdb: STDB) -> None:
    """Raise ``ValueError`` unless ``stdb`` is ``STDB(time="since_last")``, the rule multi-spike DIET neurons take."""
    if not isinstance(stdb, STDB) or stdb.time != "since_last":
        raise ValueError(
            f"multi-spike DIET neurons train with STDB(time='since_last') (the official rule: time since each "
            f"neuron's latest earlier spike), got {stdb!r}; STDB(time='spike') reads a fire-once neuron's only spike"
        )


def _diet_stdb_step(
    x: torch.Tensor, state: DietSTDBState, leak: torch.Tensor, threshold: torch.Tensor, stdb: STDB, quant
) -> tuple[torch.Tensor, DietSTDBState]:
    t = state.step
    u = _integrate(x, state.u, leak, quant)
    z = u / threshold - 1.0
    fired = heaviside(z)
    # The official code's order: the pseudo-derivative uses the spikes before this step (a causal rule, so the
    # gradient is known now: Heaviside values, STDB's gradient, no tape).
    spike = fired + (z - z.detach()) * stdb.since(t, state.last_spike).to(z.dtype)
    last_spike = torch.where(fired > 0, float(t), state.last_spike)
    return spike, DietSTDBState(u - threshold * fired, last_spike, t + 1)


def _start_diet_stdb(x: torch.Tensor, state: DietSTDBState | None, leak, threshold, stdb: STDB):
    check_since_last(stdb)
    u, leak_b, thr_b = _prepare(x, None if state is None else state.u, leak, threshold)
    if state is None:
        state = DietSTDBState(u, torch.full_like(u, STDB.NEVER), 0)
    elif not isinstance(state, DietSTDBState) or state.last_spike.shape != x.shape:
        raise ValueError(f"state must be None or a DietSTDBState of steps shaped {tuple(x.shape)}")
    return state, leak_b, thr_b


def diet_stdb_step(
    x: torch.Tensor,
    state: DietSTDBState | None,
    leak: float | torch.Tensor,
    threshold: float | torch.Tensor,
    stdb: STDB,
    state_quant: StateQuant | None = None,
) -> tuple[torch.Tensor, DietSTDBState]:
    """One step of DIET LIF neurons (they may fire every step) with the official STDB surrogate.

    The dynamics of :func:`diet_lif_step`; the spikes' pseudo-derivative on ``z`` at step ``t`` is
    ``alpha * exp(-beta * (t - t_last))`` with ``t_last`` the neuron's latest spike *before* ``t``
    (``STDB.NEVER = -1000`` before its first), as ``nitin-rathi/hybrid-snn-conversion`` computes it.

    Args:
        x: input current ``[B, ...]``.
        state: the previous step's state; ``None`` starts a sequence (``u = 0``, no spike yet).
        leak, threshold, state_quant: as in :func:`diet_lif_step`.
        stdb: ``STDB(time="since_last")``.

    Returns:
        ``(spike, state)``.
    """
    check_current(x, "x")
    state, leak_b, thr_b = _start_diet_stdb(x, state, leak, threshold, stdb)
    return _diet_stdb_step(x, state, leak_b, thr_b, stdb, state_quant)


def diet_stdb_multistep(
    x_seq: torch.Tensor,
    state: DietSTDBState | None,
    leak: float | torch.Tensor,
    threshold: float | torch.Tensor,
    stdb: STDB,
    state_quant: StateQuant | None = None,
) -> DietSTDBSequence:
    """:func:`diet_stdb_step` over a sequence ``[T, B, ...]`` (equal to a loop of it)."""
    check_sequence(x_seq, "x_seq")
    state, leak_b, thr_b = _start_diet_stdb(x_seq[0], state, leak, threshold, stdb)
    spikes, potentials = [], []
    for x in x_seq:
        spike, state = _diet_stdb_step(x, state, leak_b, thr_b, stdb, state_quant)
        spikes.append(spike)
        potentials.append(state.u)
    return DietSTDBSequence(torch.stack(spikes), torch.stack(potentials), state)


MIN_THRESHOLD = 1e-4
"""Default floor of :func:`clamp_threshold_`: thresholds stay positive (the potential is divided by them)."""


def _count_clamp_(t: torch.Tensor, low: float, high: float | None) -> torch.Tensor:
    """Clamp ``t`` into ``[low, high]`` in place; the number of values that were outside (0-d int64)."""
    with torch.no_grad():
        outside = (t < low).sum() if high is None else ((t < low) | (t > high)).sum()
        t.clamp_(min=low, max=high)
    return outside


def _each_neuron(target: torch.Tensor | nn.Module, method: str, bound: float) -> torch.Tensor:
    """Call ``method(bound)`` of every submodule that defines it (the snn-ext neurons); the counts' sum."""
    if not isinstance(target, nn.Module):
        raise TypeError(f"target must be a tensor or an nn.Module, got {type(target).__name__}")
    counts = [getattr(m, method)(bound) for m in target.modules() if callable(getattr(type(m), method, None))]
    return sum(counts, torch.zeros((), dtype=torch.int64, device=counts[0].device if counts else None))


def clamp_leak_(target: torch.Tensor | nn.Module, max_leak: float = 1.0) -> torch.Tensor:
    """Keep leaks in ``[0, max_leak]`` in place (DIET-SNN: ``leak <- min(leak, 1)``; and never below 0).

    Call it after every optimizer step, as the DIET-SNN training loop does (its official code clamps the upper
    bound only; a leak below 0 would flip the sign of the potential at every step).

    Args:
        target: a leak tensor/Parameter, or a module: every submodule that defines a
            ``clamp_leak_(max_leak)`` method (all snn-ext neurons of both frameworks) is clamped.
        max_leak: upper bound, 1.0 in DIET-SNN.

    Returns:
        The number of values that were out of range (a 0-d int64 tensor; reading it on the host is a sync).
    """
    if isinstance(target, torch.Tensor):
        return _count_clamp_(target, 0.0, max_leak)
    return _each_neuron(target, "clamp_leak_", max_leak)


def clamp_threshold_(target: torch.Tensor | nn.Module, min_threshold: float = MIN_THRESHOLD) -> torch.Tensor:
    """Keep thresholds at or above ``min_threshold`` (> 0) in place; call it after every optimizer step.

    Args:
        target: a threshold tensor/Parameter, or a module: every submodule that defines a
            ``clamp_threshold_(min_threshold)`` method (all snn-ext neurons of both frameworks) is clamped.
        min_threshold: the floor, in the potential's unit.

    Returns:
        The number of values that were below the floor (a 0-d int64 tensor).
    """
    if not min_threshold > 0:
        raise ValueError(f"min_threshold must be > 0 (thresholds divide the potential), got {min_threshold!r}")
    if isinstance(target, torch.Tensor):
        return _count_clamp_(target, min_threshold, None)
    return _each_neuron(target, "clamp_threshold_", min_threshold)
