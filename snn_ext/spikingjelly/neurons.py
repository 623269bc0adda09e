"""DIET-SNN neuron for SpikingJelly (activation_based, 2.x)."""

from __future__ import annotations

import torch
from spikingjelly.activation_based.neuron import BaseNode
from torch import nn

from snn_ext import kernels
from snn_ext._assign import assign_checked, refuse_keyword
from snn_ext._format import format_param
from snn_ext.core.checks import check_leak, check_sequence, check_threshold
from snn_ext.core.neuron import (
    MIN_THRESHOLD,
    DietSTDBState,
    SingleSpikeState,
    SingleSpikeSurrogate,
    SpikeFn,
    check_since_last,
    clamp_leak_,
    clamp_threshold_,
    diet_lif_step,
    diet_stdb_multistep,
    diet_stdb_step,
    single_spike_lif_step,
)
from snn_ext.core.surrogate import STDB, SpikeTimeRecord, Triangle

__all__ = ["DietLIFNode", "SingleSpikeLIFNode"]

_Tensors = tuple[torch.Tensor, ...]

_CHECKS = {
    "leak": lambda value: check_leak(value, "leak"),
    "v_threshold": lambda value: check_threshold(value, "v_threshold"),
}


def _leak_from(leak: float | torch.Tensor | None, tau: float | None, decay_input: bool | None) -> float | torch.Tensor:
    """DIET's leak from ``leak`` or from SpikingJelly's ``tau`` with ``decay_input=False`` (``leak = 1 - 1/tau``)."""
    if decay_input not in (None, False):
        raise ValueError(
            f"decay_input={decay_input!r} is not DIET's behaviour: SpikingJelly's decay_input=True scales the input "
            "by 1/tau, DIET adds it whole (accepted: decay_input=False)"
        )
    if tau is None:
        return 1.0 if leak is None else leak
    if leak is not None:
        raise ValueError("pass leak or tau, not both (with decay_input=False, leak = 1 - 1/tau)")
    if decay_input is None:
        raise ValueError(
            "tau needs decay_input=False: SpikingJelly's default decay_input=True scales the input by 1/tau, which "
            "DIET does not; with decay_input=False, tau means leak = 1 - 1/tau"
        )
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not tau >= 1:
        raise ValueError(f"tau must be a number >= 1 (leak = 1 - 1/tau lies in [0, 1]), got {tau!r}")
    return 1.0 - 1.0 / tau


class DietLIFNode(BaseNode):
    """DIET-SNN leaky integrate-and-fire neuron as a SpikingJelly ``BaseNode``.

    Dynamics (see :mod:`snn_ext.core.neuron`): ``v = leak * v + x``; spike where
    ``v / v_threshold - 1 > 0``; soft reset ``v -= v_threshold * spike``. ``leak`` and
    ``v_threshold`` are ``nn.Parameter`` s, one per layer or one per channel (1-d ``[C]``, matched to
    the channel dimension of ``[N, C, ...]``). Freeze them with ``requires_grad_(False)``. Keep the
    leak <= 1 by calling :meth:`clamp_leak_` (or :func:`snn_ext.core.clamp_leak_` on the net) after
    each optimizer step. Assigning a number or a tensor (``node.v_threshold = 2.0``, as threshold-balancing
    scripts do) sets the parameter's value, checked like the constructor's.

    Args:
        leak: in ``[0, 1]``; 1.0 (DIET-SNN's initial value, the default) means no leak.
        v_threshold: firing threshold > 0.
        surrogate_function: applied to the normalized potential ``z = v / v_threshold - 1``;
            default DIET's triangle ``0.3 * max(0, 1 - |z|)``. SpikingJelly surrogates
            (``surrogate.ATan()``, ...) also work, and ``STDB(time="since_last")`` (the official STDB rule; the
            node then also keeps the memories ``last_spike``, each neuron's latest spike step, and ``step``;
            whole sequences run the reference).
        step_mode: ``'s'`` (input ``[N, ...]``, a 0-d tensor is one neuron) or ``'m'`` (input ``[T, N, ...]``).
        store_v_seq: keep the potential of every step in ``self.v_seq`` (``[T, N, ...]``).
        v_reset: only ``None`` (SpikingJelly's soft reset): DIET subtracts the threshold.
        detach_reset: only ``True``: DIET's reset indicator carries no gradient.
        tau, decay_input: SpikingJelly's LIF time constant, accepted with ``decay_input=False`` (then the
            update is DIET's with ``leak = 1 - 1/tau``) instead of ``leak``; ``decay_input=True`` is refused.

    Works with ``functional.reset_net``, ``set_step_mode``, ``detach_net``, ``layer.*`` in
    multi-step mode, and ``torch.save`` of a whole network. In ``'m'`` mode (without ``store_v_seq``) the
    whole sequence runs as one fused kernel where one applies (:mod:`snn_ext.kernels`).
    """

    _fires_once = False

    def __init__(
        self,
        leak: float | torch.Tensor | None = None,
        v_threshold: float | torch.Tensor = 1.0,
        surrogate_function: SpikeFn | None = None,
        step_mode: str = "s",
        store_v_seq: bool = False,
        *,
        v_reset: float | None = None,
        detach_reset: bool = True,
        tau: float | None = None,
        decay_input: bool | None = None,
    ) -> None:
        if v_reset is not None:
            raise ValueError(
                f"v_reset={v_reset!r} is not DIET's behaviour: DIET resets by subtracting the threshold, "
                "SpikingJelly's soft reset (accepted: v_reset=None)"
            )
        refuse_keyword("detach_reset", detach_reset, True, "DIET's reset indicator carries no gradient")
        leak_t = check_leak(_leak_from(leak, tau, decay_input), "leak")
        threshold_t = check_threshold(v_threshold, "v_threshold")
        # BaseNode asserts a float threshold; it is replaced by a Parameter right after.
        super().__init__(
            v_threshold=1.0,
            v_reset=None,
            surrogate_function=self._default_surrogate() if surrogate_function is None else surrogate_function,
            detach_reset=True,
            step_mode=step_mode,
            store_v_seq=store_v_seq,
        )
        self.v_threshold = nn.Parameter(threshold_t)
        self.leak = nn.Parameter(leak_t)
        if self._stdb:
            check_since_last(self.surrogate_function)
            self.register_memory("last_spike", None)
            self.register_memory("step", 0)

    @property
    def _stdb(self) -> bool:
        """Multi-spike DIET neurons with the official STDB (their states: ``v``, ``last_spike``, ``step``)."""
        return isinstance(self.surrogate_function, STDB) and not self._fires_once

    @staticmethod
    def _default_surrogate() -> SpikeFn:
        return Triangle(gamma=0.3)

    def __setattr__(self, name: str, value: object) -> None:
        check = _CHECKS.get(name)
        if check is None or "_parameters" not in self.__dict__:
            super().__setattr__(name, value)
        else:
            assign_checked(self, name, value, check, super().__setattr__)

    def materialize_states(self, inputs: _Tensors, states: tuple[object, ...], step_mode: str) -> tuple[object, ...]:
        """SpikingJelly builds the zero state from ``x_seq[0]``: report an empty sequence first."""
        if step_mode == "m" and isinstance(inputs[0], torch.Tensor) and inputs[0].shape[:1] == (0,):
            check_sequence(inputs[0], "x_seq")  # raises the core's "empty time dimension" error
        states = super().materialize_states(inputs, states, step_mode)
        if self._stdb and (states[1] is None or states[1].shape != states[0].shape):
            states = (states[0], torch.full_like(states[0], STDB.NEVER), 0)  # a new sequence: no spike yet
        return states

    def single_step_functional_forward(
        self, inputs: _Tensors, states: tuple[object, ...], **kwargs: object
    ) -> tuple[_Tensors, _Tensors]:
        """One step: ``inputs = (x,)`` with ``x`` ``[N, ...]``, ``states = (v,)`` (with STDB ``(v, last_spike,
        step)``); returns ``((spike,), states)``."""
        if self._stdb:
            spike, state = diet_stdb_step(
                inputs[0], DietSTDBState(*states), self.leak, self.v_threshold, self.surrogate_function
            )
            return (spike,), tuple(state)
        spike, v = diet_lif_step(inputs[0], states[0], self.leak, self.v_threshold, self.surrogate_function)
        return (spike,), (v,)

    def multi_step_functional_forward(
        self, inputs: _Tensors, states: tuple[object, ...], **kwargs: object
    ) -> tuple[_Tensors, _Tensors]:
        """A sequence: ``inputs = (x_seq,)`` with ``x_seq`` ``[T, N, ...]``; returns ``((spike_seq,), (v_T,))``.

        Runs :func:`snn_ext.kernels.diet_lif_multistep` (fused for the triangle and box surrogates).
        """
        if self._stdb:
            kernels.warn_no_kernel_for_diet_stdb()
            out = diet_stdb_multistep(
                inputs[0], DietSTDBState(*states), self.leak, self.v_threshold, self.surrogate_function
            )
            return (out.spikes,), tuple(out.state)
        out = kernels.diet_lif_multistep(
            inputs[0], states[0], self.leak, self.v_threshold, self.surrogate_function, potentials=False
        )
        return (out.spikes,), (out.final,)

    def clamp_leak_(self, max_leak: float = 1.0) -> torch.Tensor:
        """Clamp ``leak`` into ``[0, max_leak]`` in place (DIET-SNN, after each optimizer step); the count changed."""
        return clamp_leak_(self.leak, max_leak)

    def clamp_threshold_(self, min_threshold: float = MIN_THRESHOLD) -> torch.Tensor:
        """Keep ``v_threshold`` >= ``min_threshold`` in place (after each optimizer step); the count changed."""
        return clamp_threshold_(self.v_threshold, min_threshold)

    def extra_repr(self) -> str:
        return (
            f"leak={format_param(self.leak)}, v_threshold={format_param(self.v_threshold)}, step_mode={self.step_mode}"
        )


class SingleSpikeLIFNode(DietLIFNode):
    """Fire-once DIET LIF neuron for SpikingJelly (single-spike hybrid encoding, Datta et al. 2021).

    The dynamics of :class:`DietLIFNode`, except that a neuron that has fired stays silent until
    ``reset()`` (``functional.reset_net``), so it fires at most once per sequence. The default
    surrogate is :class:`~snn_ext.core.surrogate.STDB`. Besides ``v``, the memories are ``record``
    (the layer's spike times, read by STDB's backward pass) and ``step`` (the next step's index).

    Same arguments (keywords included) and shapes as :class:`DietLIFNode`.
    """

    _fires_once = True

    def __init__(
        self,
        leak: float | torch.Tensor | None = None,
        v_threshold: float | torch.Tensor = 1.0,
        surrogate_function: SingleSpikeSurrogate | None = None,
        step_mode: str = "s",
        store_v_seq: bool = False,
        **keywords: object,
    ) -> None:
        super().__init__(leak, v_threshold, surrogate_function, step_mode, store_v_seq, **keywords)
        self.register_memory("record", None)
        self.register_memory("step", 0)

    @staticmethod
    def _default_surrogate() -> SingleSpikeSurrogate:
        return STDB()

    def materialize_states(self, inputs: _Tensors, states: tuple[object, ...], step_mode: str) -> tuple[object, ...]:
        """Start a new spike-time record with the sequence (or when the input shape changes)."""
        v, record, step = super().materialize_states(inputs, states, step_mode)
        if record is None or record.times.shape != v.shape:
            record, step = SpikeTimeRecord(v), 0
        return v, record, step

    def single_step_functional_forward(
        self, inputs: _Tensors, states: tuple[object, ...], **kwargs: object
    ) -> tuple[_Tensors, tuple[object, ...]]:
        """One step: ``states = (v, record, step)``; returns ``((spike,), (v, record, step))``."""
        spike, state = single_spike_lif_step(
            inputs[0], SingleSpikeState(*states), self.leak, self.v_threshold, self.surrogate_function
        )
        return (spike,), tuple(state)

    def multi_step_functional_forward(
        self, inputs: _Tensors, states: tuple[object, ...], **kwargs: object
    ) -> tuple[_Tensors, tuple[object, ...]]:
        """A sequence ``[T, N, ...]``, fused for STDB, triangle and box surrogates.

        Returns ``((spike_seq,), (v, record, step))``.
        """
        out = kernels.single_spike_lif_multistep(
            inputs[0],
            SingleSpikeState(*states),
            self.leak,
            self.v_threshold,
            self.surrogate_function,
            potentials=False,
        )
        return (out.spikes,), tuple(out.state)
