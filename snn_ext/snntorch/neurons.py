"""DIET-SNN neuron for snnTorch."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import snntorch
import torch

from snn_ext import kernels
from snn_ext._assign import assign_checked, refuse_keyword
from snn_ext._format import format_param
from snn_ext.core.checks import broadcast_view, check_leak, check_threshold
from snn_ext.core.neuron import (
    MIN_THRESHOLD,
    DietSTDBState,
    SingleSpikeState,
    SingleSpikeSurrogate,
    SpikeFn,
    StateQuant,
    check_since_last,
    clamp_leak_,
    clamp_threshold_,
    diet_lif_step,
    diet_stdb_multistep,
    diet_stdb_step,
    single_spike_lif_step,
)
from snn_ext.core.surrogate import STDB, SpikeTimeRecord, Triangle, heaviside

__all__ = ["DietLeaky", "SingleSpikeLeaky"]

_Outputs = torch.Tensor | tuple[torch.Tensor, torch.Tensor]
_State = TypeVar("_State", DietSTDBState, SingleSpikeState)

_CHECKS = {
    "beta": lambda value: check_leak(value, "beta", any_shape=True),
    "threshold": lambda value: check_threshold(value, "threshold", any_shape=True),
}
_FIXED = {  # snnTorch options that DIET has one value of: (the value, what DIET does)
    "inhibition": (False, "DIET neurons fire independently of each other"),
    "reset_mechanism": ("subtract", "DIET resets by subtracting the threshold"),
    "graded_spikes_factor": (1.0, "DIET's spikes are 0 or 1"),
    "learn_graded_spikes_factor": (False, "DIET's spikes are 0 or 1"),
    "reset_delay": (False, "DIET subtracts the threshold in the step that fires"),
}


class DietLeaky(snntorch.Leaky):
    """DIET-SNN leaky integrate-and-fire neuron as a drop-in ``snntorch.Leaky``.

    Dynamics (see :mod:`snn_ext.core.neuron`): ``mem = beta * mem + input_``; spike where
    ``mem / threshold - 1 > 0``; soft reset ``mem -= threshold * spike`` in the same step (no
    ``reset_delay``). ``beta`` (the leak) and ``threshold`` are trainable by default. Their shapes follow
    snnTorch's broadcasting exactly (:func:`snn_ext.core.broadcast_view`): a number per layer, ``[N]`` along the input's
    last dimension (per feature of ``[B, N]``), ``[C, 1, 1]`` per channel and ``[C, H, W]`` per neuron of a
    ``[B, C, H, W]`` input. Per-layer and per-channel values run in the fused kernels; per-neuron values run the
    reference (a one-time ``KernelFallbackWarning``). ``beta`` is not clamped in forward: call
    :meth:`clamp_leak_` (or :func:`snn_ext.core.clamp_leak_` on the whole net) after each optimizer step to
    keep it <= 1, as DIET-SNN does. Assigning a number or a tensor (``lif.threshold = 2.0``) sets the
    parameter's value, checked like the constructor's.

    Args:
        beta: leak in ``[0, 1]``; 1.0 (DIET-SNN's initial value) means no leak.
        threshold: firing threshold > 0.
        spike_grad: surrogate applied to the *normalized* potential ``z = mem / threshold - 1``;
            default DIET's triangle ``0.3 * max(0, 1 - |z|)``. Any snnTorch surrogate
            (``snntorch.surrogate.atan()``, ``fast_sigmoid()``, ...) also works, and
            ``STDB(time="since_last")`` (the official STDB rule; the neuron then also keeps each neuron's latest
            spike time, reset with ``mem``; whole sequences run the reference).
        surrogate_disable: spikes without a surrogate gradient (the Heaviside step), as in snnTorch.
        init_hidden: keep ``mem`` inside the module, so it can sit in ``nn.Sequential``; then the
            call returns ``spk`` only, unless ``output=True``.
        inhibition: only ``False``: DIET neurons fire independently.
        learn_beta, learn_threshold: register ``beta`` / ``threshold`` as Parameters (default) or buffers.
        reset_mechanism: only ``"subtract"``: DIET resets by subtracting the threshold.
        state_quant: a function applied to ``mem`` after integration, before firing (snnTorch's
            ``state_quant``, e.g. ``snntorch.functional.quant.state_quant``); ``False`` for none.
            Whole sequences with it run the reference.
        output: with ``init_hidden=True``, return ``(spk, mem)``.
        graded_spikes_factor: only ``1.0``: DIET's spikes are binary (converted networks fold the spike
            amplitude into the next layer's weights).
        learn_graded_spikes_factor: only ``False``.
        reset_delay: only ``False``: DIET resets in the step that fires.

    Shapes: :meth:`forward` takes one step ``[B, ...]`` (a 0-d tensor is one neuron); :meth:`forward_sequence`
    a whole sequence ``[T, B, ...]`` as one fused kernel where one applies (:mod:`snn_ext.kernels`). Both return
    spikes of the input's shape (and dtype).
    """

    _reset_state: torch.Tensor | None = None
    _stdb: DietSTDBState | None = None
    _fires_once = False

    def __init__(
        self,
        beta: float | torch.Tensor = 1.0,
        threshold: float | torch.Tensor = 1.0,
        spike_grad: SpikeFn | None = None,
        surrogate_disable: bool = False,
        init_hidden: bool = False,
        inhibition: bool = False,
        learn_beta: bool = True,
        learn_threshold: bool = True,
        reset_mechanism: str = "subtract",
        state_quant: StateQuant | bool = False,
        output: bool = False,
        graded_spikes_factor: float = 1.0,
        learn_graded_spikes_factor: bool = False,
        reset_delay: bool = False,
    ) -> None:
        given = {
            "inhibition": inhibition,
            "reset_mechanism": reset_mechanism,
            "graded_spikes_factor": graded_spikes_factor,
            "learn_graded_spikes_factor": learn_graded_spikes_factor,
            "reset_delay": reset_delay,
        }
        for name, value in given.items():
            refuse_keyword(name, value, *_FIXED[name])
        if not isinstance(surrogate_disable, bool):
            raise TypeError(f"surrogate_disable must be True or False, got {surrogate_disable!r}")
        if state_quant is not False and not callable(state_quant):
            raise TypeError(f"state_quant must be False or a function of the potential, got {state_quant!r}")
        if surrogate_disable:
            spike_grad = heaviside
        if isinstance(spike_grad, STDB) and not self._fires_once:
            check_since_last(spike_grad)
        super().__init__(
            beta=check_leak(beta, "beta", any_shape=True),
            threshold=check_threshold(threshold, "threshold", any_shape=True),
            spike_grad=self._default_spike_grad() if spike_grad is None else spike_grad,
            init_hidden=init_hidden,
            learn_beta=learn_beta,
            learn_threshold=learn_threshold,
            state_quant=state_quant,
            output=output,
            reset_delay=False,
        )
        self.surrogate_disable = surrogate_disable

    @staticmethod
    def _default_spike_grad() -> SpikeFn:
        return Triangle(gamma=0.3)

    def __setattr__(self, name: str, value: object) -> None:
        check = _CHECKS.get(name)
        if name in _FIXED:  # assigned after construction: the same rule as the keyword
            one = isinstance(value, torch.Tensor) and value.numel() == 1
            refuse_keyword(name, value.item() if one else value, *_FIXED[name])
        if check is None or "_parameters" not in self.__dict__:
            super().__setattr__(name, value)
        else:
            assign_checked(self, name, value, check, super().__setattr__)

    def _params(self, step: torch.Size) -> tuple[torch.Tensor, torch.Tensor]:
        """``beta`` and ``threshold`` as the core takes them for input steps of shape ``step``."""
        return broadcast_view(self.beta, step, "beta"), broadcast_view(self.threshold, step, "threshold")

    @property
    def _quant(self) -> StateQuant | None:
        return self.state_quant or None

    def reset_mem(self) -> torch.Tensor:
        """Zero the potential (snnTorch's reset) and return it; passed back as ``mem``, it starts any input shape."""
        self._stdb = None
        self._reset_state = super().reset_mem()
        return self._reset_state

    def _stdb_state(self, start: torch.Tensor | None) -> DietSTDBState | None:
        """With STDB: continue the running sequence when ``start`` is its potential (or it detached)."""
        return _continued(self._stdb, start, lambda u: DietSTDBState(u, torch.full_like(u, STDB.NEVER), 0))

    def _initial_mem(self, mem: torch.Tensor | None, step_shape: torch.Size) -> torch.Tensor | None:
        if self.init_hidden and mem is not None:
            raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
        if mem is not None:
            # snnTorch's reset state (``reset_mem()`` / ``init_leaky()``: an empty tensor before the first step,
            # zeros of the last input's shape after) starts an input of any shape from zeros, as in snnTorch; any
            # other potential of the wrong shape is an error (raised by the core). Told apart by identity, so no
            # value is read.
            if mem.shape != step_shape and (mem.numel() == 0 or mem is self._reset_state):
                return None
            return mem
        # Like snnTorch 1.0: continue from the stored state unless the input shape changed.
        return self.mem if self.mem.shape == step_shape else None

    def _outputs(self, spk: torch.Tensor, mem: torch.Tensor) -> _Outputs:
        if self.init_hidden and not self.output:
            return spk
        return spk, mem

    def forward(self, input_: torch.Tensor, mem: torch.Tensor | None = None) -> _Outputs:
        """One time step.

        Args:
            input_: input current ``[B, ...]``.
            mem: membrane potential from the previous step (shape of ``input_``); ``None`` continues
                from the stored state (zeros after a reset or a change of input shape).

        Returns:
            ``(spk, mem)``, or ``spk`` alone when ``init_hidden=True`` and ``output=False``.
        """
        start = self._initial_mem(mem, input_.shape)
        if isinstance(self.spike_grad, STDB):
            state = self._stdb_state(start)
            spk, self._stdb = diet_stdb_step(input_, state, *self._params(input_.shape), self.spike_grad, self._quant)
            self.mem = self._stdb.u
        else:
            spk, self.mem = diet_lif_step(input_, start, *self._params(input_.shape), self.spike_grad, self._quant)
        return self._outputs(spk, self.mem)

    def forward_sequence(self, input_seq: torch.Tensor, mem: torch.Tensor | None = None) -> _Outputs:
        """A whole sequence in one call; equal to calling :meth:`forward` on each step.

        Runs :func:`snn_ext.kernels.diet_lif_multistep`: one fused forward/backward kernel for the
        default triangle or a :class:`~snn_ext.core.surrogate.Box` surrogate, the core reference otherwise.

        Args:
            input_seq: input currents ``[T, B, ...]``.
            mem: initial membrane potential ``[B, ...]``; ``None`` continues from the stored state.

        Returns:
            ``(spk_seq, mem_seq)``, both ``[T, B, ...]``, or ``spk_seq`` alone when
            ``init_hidden=True`` and ``output=False``. The stored state becomes ``mem_seq[-1]``.
        """
        step = input_seq.shape[1:]
        start = self._initial_mem(mem, step)
        if isinstance(self.spike_grad, STDB):
            kernels.warn_no_kernel_for_diet_stdb()
            state = self._stdb_state(start)
            out = diet_stdb_multistep(input_seq, state, *self._params(step), self.spike_grad, self._quant)
            self._stdb, self.mem = out.state, out.state.u
            return self._outputs(out.spikes, out.potentials)
        out = kernels.diet_lif_multistep(input_seq, start, *self._params(step), self.spike_grad, self._quant)
        self.mem = out.final
        return self._outputs(out.spikes, out.potentials)

    def clamp_leak_(self, max_leak: float = 1.0) -> torch.Tensor:
        """Clamp ``beta`` into ``[0, max_leak]`` in place (DIET-SNN, after each optimizer step); the count changed."""
        return clamp_leak_(self.beta, max_leak)

    def clamp_threshold_(self, min_threshold: float = MIN_THRESHOLD) -> torch.Tensor:
        """Keep ``threshold`` >= ``min_threshold`` in place (after each optimizer step); the count changed."""
        return clamp_threshold_(self.threshold, min_threshold)

    def extra_repr(self) -> str:
        return (
            f"beta={format_param(self.beta)}, threshold={format_param(self.threshold)}, "
            f"init_hidden={self.init_hidden}, output={self.output}"
        )


def _continued(
    running: _State | None, start: torch.Tensor | None, new: Callable[[torch.Tensor], _State]
) -> _State | None:
    """``running`` when ``start`` is its potential or that potential detached, ``None`` without a ``start``, else
    ``new(start)``: a new sequence."""
    if start is None:
        return None
    if running is not None and _same_tensor_data(start, running.u):
        return running
    return new(start)


def _same_tensor_data(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``a`` is ``b``, or a view of the same elements (``b.detach()``); compares metadata only, no values."""
    if a is b:
        return True
    return (
        a.shape == b.shape
        and a.stride() == b.stride()
        and a.storage_offset() == b.storage_offset()
        and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    )


class SingleSpikeLeaky(DietLeaky):
    """Fire-once DIET LIF neuron for snnTorch (single-spike hybrid encoding, Datta et al. 2021).

    The dynamics of :class:`DietLeaky`, except that a neuron that has fired stays silent until the state
    is reset (``snn_ext.snntorch.reset``, ``snntorch.utils.reset``, ``reset_mem()`` or passing a new
    ``mem``), so it fires at most once per sequence. Passing back the returned ``mem`` detached
    (``mem.detach()``, snnTorch's truncated-BPTT idiom) continues the same sequence. The default ``spike_grad`` is
    :class:`~snn_ext.core.surrogate.STDB` (``alpha * exp(-beta * |t - t_spike|)``); any snnTorch
    surrogate also works (it then sees the normalized potential).

    Same arguments, shapes and return values as :class:`DietLeaky`.
    """

    _sequence: SingleSpikeState | None = None
    _fires_once = True

    @staticmethod
    def _default_spike_grad() -> SingleSpikeSurrogate:
        return STDB()

    def reset_mem(self) -> torch.Tensor:
        """Zero the potential and end the running sequence (its spike times); returns the new potential."""
        self._sequence = None
        return super().reset_mem()

    def _state(self, start: torch.Tensor | None) -> SingleSpikeState | None:
        """Continue the running sequence when ``start`` is its potential, or that potential detached
        (``mem.detach()``, truncated BPTT: the same storage); else begin a new one."""
        return _continued(self._sequence, start, lambda u: SingleSpikeState(u, SpikeTimeRecord(u), 0))

    def forward(self, input_: torch.Tensor, mem: torch.Tensor | None = None) -> _Outputs:
        """One step ``[B, ...]``; see :meth:`DietLeaky.forward`."""
        state = self._state(self._initial_mem(mem, input_.shape))
        beta, threshold = self._params(input_.shape)
        spk, self._sequence = single_spike_lif_step(input_, state, beta, threshold, self.spike_grad, self._quant)
        self.mem = self._sequence.u
        return self._outputs(spk, self.mem)

    def forward_sequence(self, input_seq: torch.Tensor, mem: torch.Tensor | None = None) -> _Outputs:
        """A whole sequence ``[T, B, ...]`` (fused for STDB, triangle and box surrogates); see
        :meth:`DietLeaky.forward_sequence`."""
        step = input_seq.shape[1:]
        state = self._state(self._initial_mem(mem, step))
        out = kernels.single_spike_lif_multistep(input_seq, state, *self._params(step), self.spike_grad, self._quant)
        self._sequence = out.state
        self.mem = out.state.u
        return self._outputs(out.spikes, out.potentials)
