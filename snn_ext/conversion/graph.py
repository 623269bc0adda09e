"""torch.fx graph preparation for conversion: trace, fold BatchNorm, check layers, fold spike amplitudes."""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from snn_ext._format import format_param
from snn_ext.conversion.spiking_model import SequenceDropout, adopt_channel_shapes
from snn_ext.models.activations import QCFS, ClippedReLU

__all__ = [
    "ACTIVATIONS",
    "SUPPORTED",
    "PreparedANN",
    "Scale",
    "fold_amplitudes",
    "prepare",
    "prepare_graph",
    "trace",
]

ACTIVATIONS = (nn.ReLU, ClippedReLU, QCFS)
"""Activation modules that become spiking neurons."""
_SYNAPTIC = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_TRANSPARENT_MODULES = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.Flatten,
    SequenceDropout,
)
_DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_TRANSPARENT_FUNCTIONS = (torch.flatten,)
_TRANSPARENT_METHODS = ("flatten", "view", "reshape")
_ADD = (operator.add, torch.add)
SUPPORTED = (
    "modules: Conv1d/2d/3d, Linear, ReLU, snn_ext.models.ClippedReLU and QCFS, AvgPool1d/2d, AdaptiveAvgPool2d, "
    "MaxPool1d/2d, Flatten, Dropout/Dropout1d/Dropout2d (mask fixed across time steps), Identity, "
    "BatchNorm directly after a conv/linear layer (folded); "
    "functions: torch.flatten, + / torch.add (residual connections); "
    "tensor methods: flatten, view, reshape, size; x.shape and its items"
)


class Scale(nn.Module):
    """Multiplies by a constant spike amplitude where it cannot be folded into weights (e.g. a residual add).

    ``factor`` is a buffer, so it is part of the ``state_dict`` (and of checkpoints): ``[]`` per layer or ``[C]``
    per channel of dimension 1 (of ``[N, C, ...]``, or of ``[N, C * S]`` after a flatten: each channel's factor
    on its ``S`` consecutive features).
    """

    factor: torch.Tensor

    def __init__(self, factor: float | torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("factor", torch.as_tensor(factor, dtype=torch.get_default_dtype()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * _channel_factor(self.factor, x.dim(), x.shape[1])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        adopt_channel_shapes(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"factor={format_param(self.factor)}"


def _channel_factor(factor: torch.Tensor, dim: int, features: int) -> torch.Tensor:
    """``factor`` (``[]`` or ``[C]``) shaped to broadcast against dimension 1 of a ``dim``-d tensor with
    ``features`` entries there: ``C`` channels, or ``C * S`` features of flattened channels."""
    if factor.dim() == 0:
        return factor
    channels = factor.shape[0]
    if features % channels:
        raise ValueError(f"{channels} per-channel amplitudes do not divide the {features} features of dimension 1")
    return factor.repeat_interleave(features // channels).reshape(features, *([1] * (dim - 2)))


@dataclass
class PreparedANN:
    """A traced, BN-folded copy of the ANN and its activation layers in execution order."""

    graph: fx.GraphModule
    sites: list[str]
    """Targets (module paths) of the activations to replace, in execution order."""


class _Tracer(fx.Tracer):
    """torch.fx's tracer, keeping activations (also our ClippedReLU and QCFS) as single modules."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, ACTIVATIONS) or super().is_leaf_module(m, module_qualified_name)


def trace(ann: nn.Module) -> fx.GraphModule:
    """Trace ``ann`` (not copied) with torch.fx; activations stay modules.

    Raises:
        TypeError: the model cannot be traced (data-dependent control flow, unsupported Python).
    """
    try:
        return fx.GraphModule(ann, _Tracer().trace(ann), type(ann).__name__)
    except Exception as err:
        raise TypeError(
            f"could not trace {type(ann).__name__} with torch.fx ({type(err).__name__}: {err}). Conversion needs a "
            "model without data-dependent control flow, built from supported layers: " + SUPPORTED
        ) from err


def _fold_batch_norms(gm: fx.GraphModule) -> None:
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules.get(node.target), _BATCH_NORMS):
            continue
        source = node.args[0]
        layer = modules.get(source.target) if isinstance(source, fx.Node) and source.op == "call_module" else None
        if not isinstance(layer, _SYNAPTIC) or len(source.users) != 1:
            raise TypeError(
                f"BatchNorm layer {node.target!r} does not directly follow a conv/linear layer, so it cannot be "
                "folded. Supported " + SUPPORTED
            )
        bn = modules[node.target]
        if bn.running_mean is None or bn.running_var is None:
            raise TypeError(
                f"BatchNorm layer {node.target!r} keeps no running statistics (track_running_stats=False), so it "
                "cannot be folded into the layer before it; train the ANN with track_running_stats=True"
            )
        fused = fuse_linear_bn_eval(layer, bn) if isinstance(layer, nn.Linear) else fuse_conv_bn_eval(layer, bn)
        parent, _, name = source.target.rpartition(".")
        setattr(gm.get_submodule(parent) if parent else gm, name, fused)
        node.replace_all_uses_with(source)
        gm.graph.erase_node(node)


def _replace_dropouts_and_identities(gm: fx.GraphModule) -> None:
    """Remove ``Identity``; turn each ``Dropout`` into a :class:`SequenceDropout` (mask fixed across T)."""
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        module = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(module, nn.Identity):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
        elif isinstance(module, _DROPOUTS):
            if not 0.0 <= module.p < 1.0:
                raise ValueError(f"dropout layer {node.target!r} has p={module.p}; a converted SNN needs 0 <= p < 1")
            parent, _, name = node.target.rpartition(".")
            dropout = SequenceDropout(module.p, channelwise=not isinstance(module, nn.Dropout))
            dropout.train(module.training)
            setattr(gm.get_submodule(parent) if parent else gm, name, dropout)


def _is_shape(node: fx.Node) -> bool:
    """A size, not a tensor: ``x.shape``, ``x.size()``, their items and products (``x.shape[1] * x.shape[2]``), as in
    ``x.view(x.shape[0], -1)``."""
    if node.op == "call_method":
        return node.target == "size"
    if node.op != "call_function":
        return False
    if node.target is getattr:
        return len(node.args) == 2 and node.args[1] == "shape"
    if node.target is operator.getitem:
        return isinstance(node.args[0], fx.Node) and _is_shape(node.args[0])
    if node.target in (operator.mul, operator.floordiv):
        return all(isinstance(a, int) or isinstance(a, fx.Node) and _is_shape(a) for a in node.args)
    return False


def _check_supported(gm: fx.GraphModule) -> None:
    modules = dict(gm.named_modules())
    allowed = _SYNAPTIC + ACTIVATIONS + _TRANSPARENT_MODULES
    called: set[str] = set()
    for node in gm.graph.nodes:
        if node.op == "call_module":
            module = modules[node.target]
            if not isinstance(module, allowed):
                raise TypeError(
                    f"layer {node.target!r} ({type(module).__name__}) is not supported. Supported {SUPPORTED}"
                )
            if node.target in called:
                raise TypeError(f"layer {node.target!r} is called more than once; give each call its own module")
            called.add(node.target)
        elif node.op == "call_function" and node.target not in _TRANSPARENT_FUNCTIONS + _ADD and not _is_shape(node):
            raise TypeError(f"operation {node.name!r} ({node.target}) is not supported. Supported {SUPPORTED}")
        elif node.op == "call_method" and node.target not in (*_TRANSPARENT_METHODS, "size"):
            raise TypeError(f"tensor method {node.target!r} in {node.name!r} is not supported. Supported {SUPPORTED}")


def prepare_graph(gm: fx.GraphModule) -> PreparedANN:
    """Fold BatchNorm, drop Identity, make Dropout a SequenceDropout, check the layers, list the activations.

    Works in place on ``gm``.
    """
    _fold_batch_norms(gm)
    _replace_dropouts_and_identities(gm)
    _check_supported(gm)
    gm.graph.lint()
    gm.delete_all_unused_submodules()
    gm.recompile()
    modules = dict(gm.named_modules())
    sites = [n.target for n in gm.graph.nodes if n.op == "call_module" and isinstance(modules[n.target], ACTIVATIONS)]
    if not sites:
        raise TypeError("the model has no ReLU, ClippedReLU or QCFS activation to convert into spiking neurons")
    return PreparedANN(gm, sites)


def prepare(ann: nn.Module) -> PreparedANN:
    """Trace a deep copy of ``ann`` in eval mode and prepare it; ``ann`` itself is never modified."""
    return prepare_graph(trace(copy.deepcopy(ann).eval()))


def _is_transparent(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], _TRANSPARENT_MODULES)
    if node.op == "call_function":
        return node.target in _TRANSPARENT_FUNCTIONS
    return node.op == "call_method" and node.target in _TRANSPARENT_METHODS


def fold_amplitudes(gm: fx.GraphModule, amplitudes: dict[str, float | torch.Tensor]) -> None:
    """Make every neuron's spikes count ``amplitude`` ANN units (in place); per layer or per channel ``[C]``.

    From each neuron, follow its outputs through pooling/flatten/view: a conv/linear layer reached this
    way gets its weight multiplied by the amplitude along its input dimension (its input stays binary);
    any other consumer (a residual add, the model output) gets a :class:`Scale` on that edge.
    """
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or node.target not in amplitudes:
            continue
        factor = amplitudes[node.target]
        stack = [node]
        while stack:
            producer = stack.pop()
            for user in list(producer.users):
                if _is_transparent(user, modules):
                    stack.append(user)
                elif user.op == "call_module" and isinstance(modules[user.target], _SYNAPTIC):
                    weight = modules[user.target].weight
                    if getattr(modules[user.target], "groups", 1) != 1 and torch.as_tensor(factor).dim():
                        raise TypeError(
                            f"layer {user.target!r} is a grouped convolution; per-channel spike amplitudes cannot be "
                            "folded into it: convert with per_channel=False"
                        )
                    with torch.no_grad():
                        factor_t = torch.as_tensor(factor, dtype=weight.dtype)
                        weight.mul_(_channel_factor(factor_t, weight.dim(), weight.shape[1]))
                else:
                    name = f"{node.target.replace('.', '_')}_scale_{len(modules)}"
                    gm.add_submodule(name, Scale(factor))
                    modules[name] = gm.get_submodule(name)
                    with gm.graph.inserting_after(producer):
                        scaled = gm.graph.call_module(name, (producer,))
                    user.replace_input_with(producer, scaled)
    gm.graph.lint()
    gm.recompile()
