"""Framework-neutral numerical core (pure torch). Both framework faces compute through it."""

from snn_ext.core.checks import (
    broadcast_view,
    channel_view,
    check_current,
    check_leak,
    check_sequence,
    check_threshold,
    validate_values,
)
from snn_ext.core.neuron import (
    SequenceOutput,
    SpikeFn,
    clamp_leak_,
    clamp_threshold_,
    diet_lif_multistep,
    diet_lif_step,
)
from snn_ext.core.surrogate import Box, Surrogate, Triangle, heaviside

__all__ = [
    "Box",
    "SequenceOutput",
    "SpikeFn",
    "Surrogate",
    "Triangle",
    "broadcast_view",
    "channel_view",
    "check_current",
    "check_leak",
    "check_sequence",
    "check_threshold",
    "clamp_leak_",
    "clamp_threshold_",
    "diet_lif_multistep",
    "diet_lif_step",
    "heaviside",
    "validate_values",
]
