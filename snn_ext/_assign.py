"""Shared by both faces: assigning a number or a tensor to a neuron's leak or threshold (validated, and the value
lands in the parameter), and refusing a framework keyword whose value DIET does not implement."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["assign_checked", "refuse_keyword"]


def assign_checked(
    module: nn.Module,
    name: str,
    value: object,
    check: Callable[[object], torch.Tensor],
    setattr_: Callable[[str, object], None],
) -> None:
    """``module.name = value`` for a validated parameter or buffer ``name``.

    A number or a plain tensor is checked with ``check`` (which raises on a bad value and returns a float
    tensor) and sets the values of the registered parameter (or buffer) in place when the shape is unchanged,
    so optimizers keep working on it; a new shape replaces it with one of the same dtype, device and
    ``requires_grad`` (rebuild the optimizer then). A ``Parameter`` is registered as is, as torch does (code
    that rebuilds modules, like ``load_state_dict``, sets its values afterwards). A name not registered yet
    (frameworks set placeholders while a neuron is built) is set as given.
    """
    current = module._parameters.get(name, module._buffers.get(name))
    if current is None or value is None or isinstance(value, nn.Parameter):
        setattr_(name, value)
        return
    checked = check(value)
    if checked.shape == current.shape:
        with torch.no_grad():
            current.copy_(checked)
    else:
        resized = checked.to(dtype=current.dtype, device=current.device)
        setattr_(name, nn.Parameter(resized, current.requires_grad) if name in module._parameters else resized)


def refuse_keyword(name: str, value: object, accepted: object, why: str) -> None:
    """Raise ``ValueError`` (saying ``why``) unless the framework keyword ``name`` has DIET's value ``accepted``
    (of the same type; an ``int`` equal to an accepted ``float`` counts)."""
    same_type = type(value) is type(accepted) or (type(value) is int and type(accepted) is float)
    if not (same_type and value == accepted):
        raise ValueError(f"{name}={value!r} is not DIET's behaviour: {why} (accepted: {name}={accepted!r})")
