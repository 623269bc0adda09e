"""DIET-SNN neuron for snnTorch."""

from __future__ import annotations

import snntorch
import torch

from snn_ext import kernels
from snn_ext._format import format_param
from snn_ext.core.checks import check_leak, check_threshold
from snn_ext.core.neuron import (
    SingleSpikeState,
    SingleSpikeSurrogate,
    SpikeFn,
    clamp_leak_,
    diet_lif_step,
    single_spike_lif_step,
)
from snn_ext.core.surrogate import STDB, SpikeTimeRecord, Triangle

__all__ = ["DietLeaky", "SingleSpikeLeaky"]

_Outputs = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


class DietLeaky(snntorch.Leaky):
    """DIET-SNN leaky integrate-and-fire neuron as a drop-in ``snntorch.Leaky``.

    Dynamics (see :mod:`snn_ext.core.neuron`): ``mem = beta * mem + input_``; spike where
    ``mem / threshold - 1 > 0``; soft reset ``mem -= threshold * spike`` in the same step (no
    ``reset_delay``). ``beta`` (the leak) and ``threshold`` are trainable by default, one per layer
    or one per channel (1-d tensor ``[C]``, matched to dimension 1 of the input). ``beta`` is not
    clamped in forward: call :meth:`clamp_leak_` (or :func:`snn_ext.core.clamp_leak_` on the whole
    net) after each optimizer step to keep it <= 1, as DIET-SNN does.

    Args:
        beta: leak in ``[0, 1]``; 1.0 (DIET-SNN's initial value) means no leak.
        threshold: firing threshold > 0.
        spike_grad: surrogate applied to the *normalized* potential ``z = mem / threshold - 1``;
            default DIET's triangle ``0.3 * max(0, 1 - |z|)``. Any snnTorch surrogate
            (``snntorch.surrogate.atan()``, ``fast_sigmoid()``, ...) also works.
        init_hidden: keep ``mem`` inside the module, so it can sit in ``nn.Sequential``; then the
            call returns ``spk`` only, unless ``output=True``.
        learn_beta, learn_threshold: register ``beta`` / ``threshold`` as Parameters (default) or buffers.
        output: with ``init_hidden=True``, return ``(spk, mem)``.

    Shapes: :meth:`forward` takes one step ``[B, ...]``; :meth:`forward_sequence` a whole sequence
    ``[T, B, ...]`` as one fused kernel where one applies (:mod:`snn_ext.kernels`). Both return spikes of
    the input's shape (and dtype).
    """

    def __init__(
        self,
        beta: float | torch.Tensor = 1.0,
        threshold: float | torch.Tensor = 1.0,
        spike_grad: SpikeFn | None = None,
        init_hidden: bool = False,
        learn_beta: bool = True,
        learn_threshold: bool = True,
        output: bool = False,
    ) -> None:
        super().__init__(
            beta=check_leak(beta, "beta"),
            threshold=check_threshold(threshold, "threshold"),
            spike_grad=self._default_spike_grad() if spike_grad is None else spike_grad,
            init_hidden=init_hidden,
            learn_beta=learn_beta,
            learn_threshold=learn_threshold,
            output=output,
        )

    @staticmethod
    def _default_spike_grad() -> SpikeFn:
        return Triangle(gamma=0.3)

    def _initial_mem(self, mem: torch.Tensor | None, step_shape: torch.Size) -> torch.Tensor | None:
        if self.init_hidden and mem is not None:
            raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
        if mem is not None:
            # snnTorch's reset state, ``reset_mem()`` / ``init_leaky()`` (an empty tensor before the first step,
            # zeros of the last input's shape after), starts an input of any shape from zeros, as in snnTorch;
            # a non-zero potential of the wrong shape is an error (raised by the core).
            return None if mem.shape != step_shape and not mem.count_nonzero() else mem
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
        spk, self.mem = diet_lif_step(input_, start, self.beta, self.threshold, self.spike_grad)
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
        start = self._initial_mem(mem, input_seq.shape[1:])
        out = kernels.diet_lif_multistep(input_seq, start, self.beta, self.threshold, self.spike_grad)
        self.mem = out.final
        return self._outputs(out.spikes, out.potentials)

    def clamp_leak_(self, max_leak: float = 1.0) -> None:
        """Clamp ``beta`` to at most ``max_leak`` in place (DIET-SNN, after each optimizer step)."""
        clamp_leak_(self.beta, max_leak)

    def extra_repr(self) -> str:
        return (
            f"beta={format_param(self.beta)}, threshold={format_param(self.threshold)}, "
            f"init_hidden={self.init_hidden}, output={self.output}"
        )


class SingleSpikeLeaky(DietLeaky):
    """Fire-once DIET LIF neuron for snnTorch (single-spike hybrid encoding, Datta et al. 2021).

    The dynamics of :class:`DietLeaky`, except that a neuron that has fired stays silent until the state
    is reset (``snn_ext.snntorch.reset``, ``snntorch.utils.reset``, ``reset_mem()`` or passing a new
    ``mem``), so it fires at most once per sequence. The default ``spike_grad`` is
    :class:`~snn_ext.core.surrogate.STDB` (``alpha * exp(-beta * |t - t_spike|)``); any snnTorch
    surrogate also works (it then sees the normalized potential).

    Same arguments, shapes and return values as :class:`DietLeaky`.
    """

    _sequence: SingleSpikeState | None = None

    @staticmethod
    def _default_spike_grad() -> SingleSpikeSurrogate:
        return STDB()

    def reset_mem(self) -> torch.Tensor:
        """Zero the potential and end the running sequence (its spike times); returns the new potential."""
        self._sequence = None
        return super().reset_mem()

    def _state(self, start: torch.Tensor | None) -> SingleSpikeState | None:
        """Continue the running sequence when ``start`` is its potential; else begin a new one."""
        if start is None:
            return None
        if self._sequence is not None and start is self._sequence.u:
            return self._sequence
        return SingleSpikeState(start, SpikeTimeRecord(start), 0)

    def forward(self, input_: torch.Tensor, mem: torch.Tensor | None = None) -> _Outputs:
        """One step ``[B, ...]``; see :meth:`DietLeaky.forward`."""
        state = self._state(self._initial_mem(mem, input_.shape))
        spk, self._sequence = single_spike_lif_step(input_, state, self.beta, self.threshold, self.spike_grad)
        self.mem = self._sequence.u
        return self._outputs(spk, self.mem)

    def forward_sequence(self, input_seq: torch.Tensor, mem: torch.Tensor | None = None) -> _Outputs:
        """A whole sequence ``[T, B, ...]`` (fused for STDB, triangle and box surrogates); see
        :meth:`DietLeaky.forward_sequence`."""
        state = self._state(self._initial_mem(mem, input_seq.shape[1:]))
        out = kernels.single_spike_lif_multistep(input_seq, state, self.beta, self.threshold, self.spike_grad)
        self._sequence = out.state
        self.mem = out.state.u
        return self._outputs(out.spikes, out.potentials)
