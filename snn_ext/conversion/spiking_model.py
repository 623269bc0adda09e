"""The converted network: images in, logits out, spiking neurons of the chosen framework inside."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import torch
from torch import fx, nn

from snn_ext._format import format_param
from snn_ext.core.checks import broadcast_view, channel_view, check_num_steps
from snn_ext.core.encoding import direct, hybrid
from snn_ext.core.loss import spike_time_membrane_logits

__all__ = [
    "ENCODERS",
    "NEURONS",
    "READOUTS",
    "TARGETS",
    "SequenceDropout",
    "SpikingModel",
    "TimeBatchedNeuron",
    "adopt_channel_shapes",
    "check_neuron_options",
    "check_target",
    "check_timesteps",
    "make_neuron",
    "to_framework",
]

TARGETS = ("snntorch", "spikingjelly")
ENCODERS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {"direct": direct, "hybrid": hybrid}
NEURONS = ("diet", "single_spike")
"""``"diet"``: integrate-and-fire DIET neurons (rate code). ``"single_spike"``: fire-once DIET neurons with
the STDB surrogate (single-spike hybrid encoding, Datta, Kundu & Beerel 2021)."""
READOUTS = ("mean", "spike_time")
"""``"mean"``: logits = the output layer's current averaged over ``T``. ``"spike_time"``: the output layer
is a fire-once neuron too and logits = ``integrated membrane - kappa * first spike time``."""


class TimeBatchedNeuron(nn.Module):
    """Runs a framework neuron in multi-step mode inside a graph whose tensors merge time into the batch.

    Input and output ``[T * B, ...]`` (step-major); each call is one whole sequence, so the neuron's
    state is reset first: the potential to ``initial_fraction * threshold`` and, for the fire-once
    neurons, the spike-time record and the step counter (a new sequence in which nobody has fired).
    ``neuron`` is a :class:`~snn_ext.snntorch.DietLeaky` / :class:`~snn_ext.snntorch.SingleSpikeLeaky`
    or a :class:`~snn_ext.spikingjelly.DietLIFNode` / :class:`~snn_ext.spikingjelly.SingleSpikeLIFNode`
    (the multi-step paths of both frameworks). After a call, :attr:`potential` is the final potential, until
    :meth:`reset` (which :class:`SpikingModel` calls on every neuron at the end of each of its calls).
    ``initial_fraction`` is a buffer (``[]`` per layer or ``[C]`` per channel: channels are dimension 1 of each
    step ``[B, C, ...]``), so it is part of the ``state_dict`` (and of checkpoints). Per-channel thresholds have
    each framework's shape: ``[C]`` in SpikingJelly, snnTorch's broadcasting shape ``[C, 1, ..., 1]`` in
    snnTorch. Loading a ``state_dict`` with per-channel values into per-layer ``[]`` ones (a
    :func:`~snn_ext.conversion.skeleton` of a per-channel conversion) gives them the stored shape, and a
    ``state_dict`` of the other framework's neuron is translated (its keys, shapes and snnTorch's extra
    buffers), so a checkpoint trained with one target loads into the other's model.
    ``step_dims``: the number of dimensions of the layer's steps (4 for ``[B, C, H, W]``), known once the layer
    was converted or has run (``None`` before); snnTorch's per-channel shape needs it.
    """

    initial_fraction: torch.Tensor

    def __init__(
        self,
        neuron: nn.Module,
        timesteps: int,
        initial_fraction: float | torch.Tensor = 0.0,
        step_dims: int | None = None,
    ) -> None:
        super().__init__()
        self.neuron = neuron
        self.timesteps = timesteps
        self.step_dims = step_dims
        self.register_buffer("initial_fraction", torch.as_tensor(initial_fraction, dtype=torch.get_default_dtype()))

    @property
    def target(self) -> str:
        """``"snntorch"`` or ``"spikingjelly"``: the framework of :attr:`neuron`."""
        return "snntorch" if hasattr(self.neuron, "forward_sequence") else "spikingjelly"

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        self._translate_face(state_dict, prefix + "neuron.")
        adopt_channel_shapes(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _translate_face(self, state_dict: dict[str, torch.Tensor], prefix: str) -> None:
        """Rename (and reshape) a ``state_dict`` of the other framework's neuron to this one's, in place."""
        mine, other = _FACE_KEYS[self.target], _FACE_KEYS[_OTHER[self.target]]
        if prefix + other[1] not in state_dict or prefix + mine[1] in state_dict:
            return
        for theirs, ours in zip(other, mine, strict=True):
            value, current = state_dict.pop(prefix + theirs), getattr(self.neuron, ours)
            state_dict[prefix + ours] = _face_shape(value, current, self.target, self.step_dims)
        for name in _SNNTORCH_BUFFERS:
            if self.target == "snntorch":
                state_dict[prefix + name] = getattr(self.neuron, name).detach().clone()
            else:
                state_dict.pop(prefix + name, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_seq = x.unflatten(0, (self.timesteps, -1))
        self.step_dims = x_seq.dim() - 1
        if self.target == "snntorch":
            # A new potential tensor also starts a new fire-once sequence (fresh record, step 0).
            threshold = broadcast_view(self.neuron.threshold, x_seq.shape[1:], "threshold")
            self.neuron.mem = self._start(x_seq, threshold)
            spikes = self.neuron.forward_sequence(x_seq)
        else:  # SpikingJelly face, step_mode 'm'; reset() also clears the fire-once record and step
            self.neuron.reset()
            self.neuron.v = self._start(x_seq, self.neuron.v_threshold)
            spikes = self.neuron(x_seq)
        return spikes.flatten(0, 1)

    @property
    def threshold(self) -> torch.Tensor:
        """The neuron's (trainable) threshold."""
        return self.neuron.threshold if self.target == "snntorch" else self.neuron.v_threshold

    @property
    def potential(self) -> torch.Tensor:
        """``[B, ...]`` membrane potential after the last step of the last call (after its reset)."""
        return self.neuron.mem if self.target == "snntorch" else self.neuron.v

    def reset(self) -> None:
        """Reset the neuron (through its framework's reset), dropping the last call's state and autograd graph.

        An snnTorch neuron is left with an empty potential, as a new one: snnTorch keeps every neuron it ever
        created in a class-level list, so a batch-sized state would outlive the model.
        """
        if self.target == "snntorch":
            self.neuron.mem = self.neuron.mem.new_zeros(0)
            self.neuron.reset_mem()  # zeros like the empty potential (no allocation); also ends a fire-once sequence
        else:
            self.neuron.reset()

    def _start(self, x_seq: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
        """``initial_fraction * threshold`` as a step; ``threshold`` ``[]``, ``[C]`` or per neuron (the core's)."""
        step = x_seq[0]
        fraction = channel_view(self.initial_fraction, step, "initial_fraction")
        return torch.zeros_like(step) + fraction * channel_view(threshold, step, "threshold")

    def extra_repr(self) -> str:
        return f"timesteps={self.timesteps}, initial_fraction={format_param(self.initial_fraction)}"


_FACE_KEYS = {"snntorch": ("beta", "threshold"), "spikingjelly": ("leak", "v_threshold")}
"""Each framework's names of a neuron's leak and threshold."""
_OTHER = {"snntorch": "spikingjelly", "spikingjelly": "snntorch"}
_SNNTORCH_BUFFERS = ("graded_spikes_factor", "reset_mechanism_val")
"""Buffers an snnTorch neuron carries that SpikingJelly's has no counterpart of (fixed for DIET neurons)."""


def _face_shape(value: torch.Tensor, current: torch.Tensor, target: str, step_dims: int | None) -> torch.Tensor:
    """A leak or threshold of either framework in the shape ``target``'s neuron gives it (``current``: that
    neuron's own parameter; ``step_dims``: the layer's number of dimensions, if known): ``[C]`` for SpikingJelly,
    ``[C, 1, ..., 1]`` for snnTorch."""
    if value.dim() == 0:
        return value
    if any(size != 1 for size in value.shape[1:]):
        raise ValueError(
            f"a per-neuron parameter of shape {tuple(value.shape)} has no per-channel equivalent in "
            f"{target}'s face (per layer [] or per channel [C] there)"
        )
    channels = value.shape[0]
    if target == "spikingjelly":
        return value.reshape(channels)
    if current.numel() == channels and current.dim() >= 1:
        return value.reshape(current.shape)
    if step_dims is None:
        raise ValueError(
            "a per-channel parameter for snnTorch needs the layer's number of dimensions, not known yet: pass "
            "sample= (one input) to to_framework, or load into a model that was converted (ConvertedSNN converts "
            "before it loads) or has run once"
        )
    return value.reshape(channels, *([1] * (step_dims - 2)))


def adopt_channel_shapes(module: nn.Module, state_dict: dict[str, torch.Tensor], prefix: str) -> None:
    """Give ``module``'s 0-d parameters and buffers (its own and its descendants') the shape (``[C]``,
    ``[C, 1, 1]``, ...) of the same key in ``state_dict`` (keys start with ``prefix``), keeping dtype, device
    and ``requires_grad``; nothing else changes, so ``load_state_dict`` still reports every other mismatch."""
    tensors = [(name, t, True) for name, t in module.named_parameters()]
    tensors += [(name, t, False) for name, t in module.named_buffers()]
    for name, tensor, is_parameter in tensors:
        stored = state_dict.get(prefix + name)
        if not isinstance(stored, torch.Tensor) or tensor.dim() != 0 or stored.dim() == 0:
            continue
        owner_name, _, attribute = name.rpartition(".")
        owner = module.get_submodule(owner_name)
        resized = tensor.detach().new_empty(stored.shape)
        if is_parameter:
            setattr(owner, attribute, nn.Parameter(resized, requires_grad=tensor.requires_grad))
        else:
            owner.register_buffer(attribute, resized)


class SequenceDropout(nn.Module):
    """Dropout with one mask per sample, drawn once per sequence and reused at every time step (DIET-SNN).

    Input and output ``[T * B, ...]`` (step-major). In training mode each sample's mask ``[B, ...]`` zeroes
    elements with probability ``p`` and scales the rest by ``1 / (1 - p)``, identically at all ``T`` steps
    (``channelwise``: one draw per channel, as ``nn.Dropout1d/2d``); in eval mode it is the identity. The
    converter puts one wherever the ANN had a ``Dropout``, with the ANN's ``p``.
    """

    def __init__(self, p: float, timesteps: int = 1, channelwise: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"p must be in [0, 1), got {p}")
        self.p, self.timesteps, self.channelwise = p, timesteps, channelwise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        x_seq = x.unflatten(0, (self.timesteps, -1))
        shape = x_seq.shape[1:3] + (1,) * (x_seq.dim() - 3) if self.channelwise else x_seq.shape[1:]
        mask = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p) / (1.0 - self.p)
        return (x_seq * mask).flatten(0, 1)

    def extra_repr(self) -> str:
        return f"p={self.p}, timesteps={self.timesteps}, channelwise={self.channelwise}"


def make_neuron(
    target: str,
    threshold: float | torch.Tensor,
    timesteps: int,
    initial_fraction: float | torch.Tensor = 0.0,
    neuron: str = "diet",
    step_dims: int | None = None,
) -> TimeBatchedNeuron:
    """An integrate-and-fire neuron (leak 1, trainable leak and threshold) of ``target``.

    ``threshold`` and ``initial_fraction``: per layer (a float) or per channel (``[C]``, dimension 1 of the
    layer's steps, which have ``step_dims`` dimensions: 4 for ``[B, C, H, W]``; needed with a per-channel
    threshold). snnTorch neurons get a per-channel threshold in snnTorch's broadcasting shape ``[C, 1, ..., 1]``.

    ``neuron="diet"``: :class:`~snn_ext.snntorch.DietLeaky` / :class:`~snn_ext.spikingjelly.DietLIFNode`
    (triangle surrogate); ``"single_spike"``: :class:`~snn_ext.snntorch.SingleSpikeLeaky` /
    :class:`~snn_ext.spikingjelly.SingleSpikeLIFNode` (fire once per sequence, STDB surrogate).
    """
    _check_choice(neuron, NEURONS, "neuron")
    check_target(target)
    cls = _neuron_class(target, neuron == "single_spike")
    if target == "snntorch":
        if isinstance(threshold, torch.Tensor) and threshold.dim() == 1:
            if step_dims is None:
                raise ValueError("a per-channel threshold needs step_dims, the number of dimensions of a step")
            threshold = threshold.reshape(-1, *([1] * (step_dims - 2)))
        module = cls(beta=1.0, threshold=threshold, init_hidden=True)
    else:
        module = cls(leak=1.0, v_threshold=threshold, step_mode="m")
    return TimeBatchedNeuron(module, timesteps, initial_fraction, step_dims)


def _neuron_class(target: str, fire_once: bool) -> type[nn.Module]:
    if target == "snntorch":
        from snn_ext.snntorch import DietLeaky, SingleSpikeLeaky

        return SingleSpikeLeaky if fire_once else DietLeaky
    from snn_ext.spikingjelly import DietLIFNode, SingleSpikeLIFNode

    return SingleSpikeLIFNode if fire_once else DietLIFNode


def _in_framework(old: nn.Module, source: str, target: str, step_dims: int | None) -> nn.Module:
    """``source``'s neuron ``old`` as ``target``'s: same kind, surrogate, values, dtype, device, trainability."""
    surrogate = old.spike_grad if source == "snntorch" else old.surrogate_function
    values = [getattr(old, name) for name in _FACE_KEYS[source]]
    cls = _neuron_class(target, old._fires_once)
    if target == "snntorch":
        new = cls(beta=1.0, threshold=1.0, spike_grad=surrogate, init_hidden=True)
    else:
        new = cls(leak=1.0, v_threshold=1.0, surrogate_function=surrogate, step_mode="m")
    new.to(device=values[0].device)
    for name, value in zip(_FACE_KEYS[target], values, strict=True):
        shaped = _face_shape(value.detach().clone(), getattr(new, name), target, step_dims)
        setattr(new, name, nn.Parameter(shaped, requires_grad=value.requires_grad))
    return new.train(old.training)


def to_framework(model: nn.Module, target: str, sample: torch.Tensor | None = None) -> nn.Module:
    """A copy of ``model`` whose snn-ext neurons are ``target``'s (``"snntorch"`` or ``"spikingjelly"``); ``model`` is
    not changed.

    Every neuron keeps its kind (DIET or fire-once), surrogate, leak and threshold (values, dtype, device and
    ``requires_grad``; per-channel values take the framework's shape: ``[C, 1, ..., 1]`` in snnTorch, ``[C]`` in
    SpikingJelly), so the copy computes the same numbers and gradients.

    * A :class:`SpikingModel` (what ``snn_ext.convert`` returns) keeps its initial potentials and its interface.
    * Any other module built from our neurons, called one step at a time: snnTorch neurons with ``init_hidden=True``
      (the ``nn.Sequential`` idiom) become SpikingJelly nodes in single-step mode ``'s'`` and back. Reset the copy
      with its framework's reset (``functional.reset_net`` / ``snn_ext.snntorch.reset``). SpikingJelly
      per-channel values need the layer's shape for snnTorch: pass ``sample``, one input step of ``model``.

    To move a checkpoint of a :class:`SpikingModel` instead, load it into the other target's model:
    ``load_state_dict`` translates the neurons' keys.

    Raises:
        TypeError: ``model`` holds no snn-ext neuron.
        ValueError: an unknown ``target``; what one framework's neuron does and the other's cannot (a per-neuron
            parameter, ``state_quant``, snnTorch neurons without ``init_hidden`` or with ``output=True``,
            SpikingJelly nodes in ``'m'`` mode or with ``store_v_seq``); a per-channel threshold for snnTorch
            whose layer shape is not known (run the model once, or pass ``sample``).
    """
    check_target(target)
    result = copy.deepcopy(model, _detached_states(model))
    if isinstance(result, SpikingModel):
        if result.target != target:
            for layer in result.modules():
                if isinstance(layer, TimeBatchedNeuron):
                    layer.neuron = _in_framework(layer.neuron, layer.target, target, layer.step_dims)
            result.target = target
        return result
    source = _OTHER[target]
    neurons = {name: m for name, m in result.named_modules() if _is_face_neuron(m, source)}
    if not neurons and not any(_is_face_neuron(m, target) for m in result.modules()):
        raise TypeError(f"{type(model).__name__} holds no snn-ext neuron (DietLeaky, DietLIFNode, ...) to move")
    for name, neuron in neurons.items():
        _check_movable(name, neuron, source)
    dims = _step_dims(result, neurons, sample) if target == "snntorch" else {}
    for name, neuron in neurons.items():
        moved = _in_framework(neuron, source, target, dims.get(name))
        if target == "spikingjelly":
            moved.step_mode = "s"
        else:
            moved.init_hidden, moved.output = True, False
        parent, _, attribute = name.rpartition(".")
        setattr(result.get_submodule(parent) if parent else result, attribute, moved)
    return result


def _detached_states(model: nn.Module) -> dict[int, torch.Tensor]:
    """A ``copy.deepcopy`` memo that copies the neurons' states (potentials with autograd history, which torch
    cannot deep-copy) as detached tensors: the copy's neurons start new sequences anyway."""
    memo: dict[int, torch.Tensor] = {}
    for module in model.modules():
        values = [*vars(module).values(), *module._buffers.values(), *getattr(module, "_memories", {}).values()]
        for value in values:
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, torch.Tensor) and item.grad_fn is not None:
                    memo[id(item)] = item.detach()
    return memo


def _is_face_neuron(module: nn.Module, target: str) -> bool:
    return type(module).__module__ == f"snn_ext.{target}.neurons"


def _check_movable(name: str, neuron: nn.Module, source: str) -> None:
    if source == "snntorch":
        if not neuron.init_hidden or neuron.output:
            raise ValueError(
                f"neuron {name!r} is called with an explicit mem (init_hidden=False) or returns it (output=True); "
                "SpikingJelly's nodes keep their state and return spikes only: build it with init_hidden=True"
            )
        if neuron.state_quant:
            raise ValueError(f"neuron {name!r} has a state_quant, which SpikingJelly's face has no counterpart of")
    elif neuron.step_mode != "s" or neuron.store_v_seq:
        raise ValueError(
            f"neuron {name!r} runs in step mode {neuron.step_mode!r} (store_v_seq={neuron.store_v_seq}); snnTorch's "
            "neurons take one step per call: functional.set_step_mode(net, 's') first (store_v_seq off)"
        )


def _step_dims(model: nn.Module, neurons: dict[str, nn.Module], sample: torch.Tensor | None) -> dict[str, int]:
    """The number of dimensions of each neuron's input, from one call of ``model`` on ``sample`` (if given)."""
    if sample is None:
        return {}
    dims: dict[str, int] = {}
    hooks = [
        neuron.register_forward_pre_hook(lambda m, args, n=name: dims.__setitem__(n, args[0].dim()))
        for name, neuron in neurons.items()
    ]
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for hook in hooks:
            hook.remove()
        for neuron in neurons.values():
            neuron.reset()
    return dims


def check_target(target: str, name: str = "target") -> None:
    """Raise ``ValueError`` unless ``target`` is one of :data:`TARGETS` (``name``: the argument, for the message)."""
    if target not in TARGETS:
        raise ValueError(f"{name} must be one of {', '.join(TARGETS)}, got {target!r}")


def check_timesteps(timesteps: int, encoder: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """Raise ``ValueError`` unless ``timesteps`` is an integer >= 1 (>= 2 with the hybrid ``encoder``)."""
    check_num_steps(timesteps, 2 if encoder is hybrid else 1, "timesteps")


def _check_choice(value: object, choices: tuple[str, ...], name: str) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def check_neuron_options(neuron: str, readout: str, kappa: float | None, timesteps: int) -> float | None:
    """Check ``neuron``, ``readout``, ``kappa`` and ``timesteps`` together; return ``kappa`` (1.0 by default
    for ``readout="spike_time"``, ``None`` for ``"mean"``).

    Raises:
        ValueError: an unknown ``neuron`` or ``readout``; ``kappa`` with ``readout="mean"`` or not a number
            >= 0; ``readout="spike_time"`` with ``timesteps < 2``.
    """
    _check_choice(neuron, NEURONS, "neuron")
    _check_choice(readout, READOUTS, "readout")
    if readout == "mean":
        if kappa is not None:
            raise ValueError("kappa weighs the output spike time: it applies only to readout='spike_time'")
        return None
    kappa = 1.0 if kappa is None else kappa
    if isinstance(kappa, bool) or not isinstance(kappa, (int, float)) or not kappa >= 0:
        raise ValueError(f"kappa must be a number >= 0, got {kappa!r}")
    _check_spike_time_steps(timesteps)
    return float(kappa)


def _check_spike_time_steps(timesteps: int) -> None:
    if isinstance(timesteps, int) and not isinstance(timesteps, bool) and timesteps < 2:
        raise ValueError(
            f"readout='spike_time' needs timesteps >= 2 (a spike time over a single step carries no "
            f"information), got {timesteps!r}"
        )


def resolve_encoder(encoder: str | Callable[[torch.Tensor, int], torch.Tensor]):
    if callable(encoder):
        return encoder
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {', '.join(ENCODERS)} or a callable (x, T) -> [T, B, ...]")
    return ENCODERS[encoder]


class SpikingModel(nn.Module):
    """A converted SNN: ``forward(images [B, ...]) -> logits [B, classes]``.

    The encoder turns the images into ``[T, B, ...]``; the graph runs with time merged into the batch
    (``[T * B, ...]``, so every conv/linear layer runs once per call); the spiking neurons run each whole
    sequence. Neuron states are reset at every call. Trainable end to end (weights, leaks, thresholds),
    e.g. for DIET-SNN or single-spike fine-tuning.

    Read-out of the output layer's current ``I [T, B, C]``:

    * ``"mean"`` (no ``output_neuron``): the output layer does not spike; logits ``= I.mean(0)``
      (DIET-SNN sums over ``T`` instead, which only scales the logits).
    * ``"spike_time"`` (an ``output_neuron``, fire-once): the output layer spikes at most once; with its
      spikes ``s [T, B, C]``, its final potential ``u_T`` and threshold ``theta``, the integrated membrane is
      ``m = u_T + theta * s.sum(0)`` (the potential without the reset; ``I.sum(0)`` at leak 1) and the
      logits are :func:`~snn_ext.core.loss.spike_time_membrane_logits` ``(s, m, kappa) = m - kappa *
      t_first``, so plain cross-entropy on them is our spike-time + membrane loss for the single-spike
      hybrid method (Datta, Kundu & Beerel 2021; their exact loss is unverified).

    Attributes:
        timesteps: ``T``; assignable (``>= 2`` with the hybrid encoder or the spike-time read-out).
        encoder: the callable ``(images, T) -> [T, B, ...]``.
        target: ``"snntorch"`` or ``"spikingjelly"``: the framework of the neurons inside.
        neuron: ``"diet"`` or ``"single_spike"``: the kind of the hidden neurons.
        readout: ``"mean"`` or ``"spike_time"``.
        kappa: weight of one step of output spike time against one unit of membrane (``None`` for ``"mean"``).
        graph: the ``torch.fx.GraphModule`` with the neurons.
        output_neuron: the fire-once :class:`TimeBatchedNeuron` of the spike-time read-out, else ``None``.
        method: the converter that made it (``"percentile"``, ...), ``None`` when unknown (a
            :func:`~snn_ext.conversion.skeleton`, which takes the method of the ``state_dict`` loaded into it).
        micro_batch: images run through the graph at once (each for all ``T`` steps); ``None`` (default) runs the
            whole batch. Activations take memory in proportion to ``T * micro_batch`` instead of ``T * B``, so
            large ``T`` evaluates in bounded memory; the logits are the same (each image's computation does not
            depend on the others), only the number of passes changes. Assignable.

    What the model is (``timesteps``, ``encoder``, ``target``, ``neuron``, ``readout``, ``kappa``, ``method``) is
    saved with its ``state_dict`` (the ``_extra_state`` key), and loading refuses a ``state_dict`` of a model that
    differs in any of them but the target, naming both values: the weights of a T=4 DIET SNN do not silently run
    at T=5 or with fire-once neurons. Change ``timesteps`` after loading to evaluate at another ``T`` on purpose.
    A ``state_dict`` of the other target loads (the neurons translate it); :func:`to_framework` converts a model.
    """

    def __init__(
        self,
        graph: fx.GraphModule,
        timesteps: int,
        encoder: str | Callable[[torch.Tensor, int], torch.Tensor] = "direct",
        target: str = "snntorch",
        neuron: str = "diet",
        output_neuron: TimeBatchedNeuron | None = None,
        kappa: float = 1.0,
        micro_batch: int | None = None,
        method: str | None = None,
    ) -> None:
        super().__init__()
        self.method = method
        _check_choice(neuron, NEURONS, "neuron")
        self.graph = graph
        self.encoder = resolve_encoder(encoder)
        self.target = target
        self.neuron = neuron
        self.output_neuron = output_neuron
        self.kappa = check_neuron_options(neuron, self.readout, kappa if output_neuron is not None else None, timesteps)
        self.timesteps = timesteps
        self.micro_batch = micro_batch
        self.train(graph.training)  # the mode of the graph it wraps (a converted graph comes in eval mode)

    @property
    def micro_batch(self) -> int | None:
        return self._micro_batch

    @micro_batch.setter
    def micro_batch(self, value: int | None) -> None:
        if value is not None:
            check_num_steps(value, 1, "micro_batch")
        self._micro_batch = value

    @property
    def readout(self) -> str:
        return "mean" if self.output_neuron is None else "spike_time"

    @property
    def timesteps(self) -> int:
        return self._timesteps

    @timesteps.setter
    def timesteps(self, value: int) -> None:
        check_timesteps(value, self.encoder)
        if self.output_neuron is not None:
            _check_spike_time_steps(value)
        self._timesteps = value
        for module in self.modules():
            if isinstance(module, (TimeBatchedNeuron, SequenceDropout)):
                module.timesteps = value

    def description(self) -> dict[str, object]:
        """What this model is, as saved with its ``state_dict`` and checked when one is loaded."""
        encoder = next((name for name, fn in ENCODERS.items() if fn is self.encoder), None)
        return {
            "timesteps": self.timesteps,
            "encoder": encoder or getattr(self.encoder, "__qualname__", type(self.encoder).__name__),
            "target": self.target,
            "neuron": self.neuron,
            "readout": self.readout,
            "kappa": self.kappa,
            "method": self.method,
        }

    def get_extra_state(self) -> torch.Tensor:
        """:meth:`description` as UTF-8 JSON bytes in a ``uint8`` tensor, so every ``state_dict`` value stays a tensor
        (``safetensors`` and code that copies every value keep working)."""
        return torch.tensor(list(json.dumps(self.description()).encode()), dtype=torch.uint8)

    def set_extra_state(self, state: object) -> None:
        """Check a loaded description against this model's (a model of unknown ``method`` takes the stored one)."""
        try:
            state = json.loads(bytes(state.tolist()).decode())
        except (AttributeError, TypeError, ValueError) as err:
            raise ValueError("the state_dict's _extra_state is not a SpikingModel's description") from err
        mine = self.description()
        if self.method is None:
            self.method = mine["method"] = state.get("method")
        for key, stored in state.items():  # the target is not compared: the neurons translate the other's keys
            if key in mine and key != "target" and stored is not None and stored != mine[key]:
                raise ValueError(
                    f"the state_dict is of an SNN with {key}={stored!r} but this model has {key}={mine[key]!r}; "
                    f"build the model with {key}={stored!r} to load it"
                )

    def neurons(self) -> list[nn.Module]:
        """The framework neurons, in graph order (the spike-time read-out's output neuron last)."""
        return [m.neuron for m in self.modules() if isinstance(m, TimeBatchedNeuron)]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, ...]`` -> logits ``[B, classes]``; every neuron is reset afterwards, so the model keeps no
        state, and no autograd graph, between calls (it can be deep-copied at any time). With
        :attr:`micro_batch`, the images go through the graph ``micro_batch`` at a time."""
        if self.micro_batch is None or images.shape[0] <= self.micro_batch:
            return self._logits(images)
        return torch.cat([self._logits(part) for part in images.split(self.micro_batch)])

    def _logits(self, images: torch.Tensor) -> torch.Tensor:
        try:
            x_seq = self.encoder(images, self.timesteps)
            out = self.graph(x_seq.flatten(0, 1))
            if self.output_neuron is None:
                return _time_mean(out.unflatten(0, (self.timesteps, images.shape[0])))
            spikes = self.output_neuron(out).unflatten(0, (self.timesteps, images.shape[0]))
            integrated = self.output_neuron.potential + self.output_neuron.threshold * spikes.sum(0)
            return spike_time_membrane_logits(spikes, integrated, self.kappa)
        finally:
            for module in self.modules():
                if isinstance(module, TimeBatchedNeuron):
                    module.reset()

    def extra_repr(self) -> str:
        text = (
            f"timesteps={self.timesteps}, encoder={self.encoder.__name__}, target={self.target}, "
            f"neuron={self.neuron}, readout={self.readout}"
        )
        text += f", kappa={self.kappa}" if self.output_neuron is not None else ""
        return text + (f", micro_batch={self.micro_batch}" if self.micro_batch is not None else "")


def _time_mean(x_seq: torch.Tensor) -> torch.Tensor:
    """Mean over the steps of ``[T, B, ...]``, added step by step: the rounding does not depend on ``B`` (a
    reduction kernel's does), so micro-batches give the same logits bit for bit."""
    total = x_seq[0]
    for step in x_seq[1:]:
        total = total + step
    return total / x_seq.shape[0]
