"""Input checks shared by every public entry point of the core.

Each check raises an error that names the offending argument and says what is accepted, so a
bad call fails at the call site instead of producing NaN spikes many layers later. Nothing here
clamps or repairs a value.

Argument checks (types, dtypes, shapes, parameter ranges when a module is built or a parameter is
assigned) always run; they read no tensor value. The check for NaN and inf in the *data* (input
currents) has to read a value on the host, which is a host-device synchronisation per layer and step
on CUDA and a graph break under ``torch.compile``, so it runs only inside :class:`validate_values`
(off by default, like ``torch.autograd.set_detect_anomaly``).
"""

from __future__ import annotations

import torch

__all__ = [
    "broadcast_view",
    "channel_view",
    "validate_values",
    "check_current",
    "check_leak",
    "check_num_steps",
    "check_sequence",
    "check_threshold",
]


class validate_values:
    """Check the input currents of every neuron and encoder call for NaN and inf (off by default).

    With validation on, a non-finite value raises ``ValueError`` naming the argument at the call that
    received it, instead of spreading NaN spikes through the layers after it. Each check reads one value
    on the host: on CUDA that is a synchronisation per layer and step, and under ``torch.compile`` a graph
    break, so leave it off in training loops and switch it on to find where a NaN comes from. Works as a
    function (``validate_values(True)`` switches it on for the process) and as a context manager (restores
    the previous mode on exit), like ``torch.autograd.set_detect_anomaly``::

        with snn_ext.validate_values():
            out = net(x_seq)  # raises ValueError at the first neuron that receives NaN or inf

    Args:
        mode: ``True`` to check, ``False`` not to.
    """

    def __init__(self, mode: bool = True) -> None:
        if not isinstance(mode, bool):
            raise TypeError(f"mode must be True or False, got {mode!r}")
        global _VALIDATE
        self._previous = _VALIDATE
        _VALIDATE = mode

    def __enter__(self) -> validate_values:
        return self

    def __exit__(self, *exc_info: object) -> None:
        global _VALIDATE
        _VALIDATE = self._previous

    @staticmethod
    def enabled() -> bool:
        """Whether values are being checked."""
        return _VALIDATE


_VALIDATE = False


def check_current(x: torch.Tensor, name: str, finite: bool = False) -> None:
    """Check that ``x`` is a floating-point tensor (and, under :class:`validate_values`, finite).

    Args:
        x: input current: one step ``[B, ...]`` (a 0-d tensor is one neuron) or a sequence ``[T, B, ...]``.
        name: the argument's name, used in the error message.
        finite: check the values whatever the mode (for callers that read ``x`` on the host anyway).

    Raises:
        TypeError: ``x`` is not a tensor or not floating point.
        ValueError: ``x`` holds NaN or inf (checked under :class:`validate_values` or with ``finite``).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), got {x.dtype}"
        )
    if (finite or _VALIDATE) and x.numel() and not _all_finite(x):
        raise ValueError(f"{name} contains NaN or inf; spiking neurons accept finite input currents only")


def _all_finite(x: torch.Tensor) -> bool:
    # min and max are finite exactly when every element is (NaN propagates): one pass over x and no
    # temporaries, where ``isfinite(x).all()`` makes several passes and allocates x-sized tensors.
    low, high = torch.aminmax(x)
    return bool(torch.isfinite(low) & torch.isfinite(high))


def check_sequence(x_seq: torch.Tensor, name: str) -> None:
    """Check a time-first sequence ``[T, ...]`` (steps of any shape, usually ``[B, ...]``) with ``T >= 1``.

    Raises:
        TypeError / ValueError: as :func:`check_current`, and when ``x_seq`` is 0-d or has an empty time
            dimension.
    """
    check_current(x_seq, name)
    if x_seq.dim() == 0:
        raise ValueError(f"{name} must be a sequence [T, B, ...] with a time dimension, got a 0-d tensor")
    if x_seq.shape[0] == 0:
        raise ValueError(f"{name} has an empty time dimension (T=0); pass at least one time step")


def check_num_steps(num_steps: int, minimum: int, name: str = "num_steps") -> None:
    """Check that ``num_steps`` is an integer >= ``minimum`` (bool is rejected)."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {num_steps!r}")


def _check_param_shape(value: torch.Tensor, name: str) -> None:
    if value.dim() > 1:
        raise ValueError(
            f"{name} must be a scalar (one value per layer) or a 1-d tensor (one value per channel), "
            f"got shape {tuple(value.shape)}"
        )
    if value.dim() == 1 and value.numel() == 0:
        raise ValueError(f"{name} must not be empty")


def _as_tensor(value: float | torch.Tensor, name: str, any_shape: bool) -> torch.Tensor:
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
    tensor = torch.as_tensor(value, dtype=torch.get_default_dtype()) if not isinstance(value, torch.Tensor) else value
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.get_default_dtype())
    if not any_shape:
        _check_param_shape(tensor, name)
    elif tensor.numel() == 0:
        raise ValueError(f"{name} must not be empty")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return tensor.detach().clone()


def check_threshold(value: float | torch.Tensor, name: str = "threshold", any_shape: bool = False) -> torch.Tensor:
    """Validate a firing threshold and return it as a new float tensor.

    Args:
        value: a positive float (one threshold per layer) or a 1-d tensor ``[C]`` of positive
            values (one per channel).
        name: the argument's name, used in the error message.
        any_shape: accept a tensor of any (non-empty) shape, for snnTorch's broadcasting rule.

    Returns:
        A detached copy as a floating-point tensor of shape ``[]`` or ``[C]`` (any shape with ``any_shape``).

    Raises:
        ValueError: a value is <= 0, not finite, or the shape is not ``[]`` / ``[C]``.
    """
    tensor = _as_tensor(value, name, any_shape)
    if bool((tensor <= 0).any()):
        raise ValueError(f"{name} must be > 0 (the potential is divided by it), got {value!r}")
    return tensor


def check_leak(value: float | torch.Tensor, name: str = "leak", any_shape: bool = False) -> torch.Tensor:
    """Validate a membrane leak factor and return it as a new float tensor.

    Args:
        value: a float in ``[0, 1]`` (one leak per layer; 1 means no leak) or a 1-d tensor ``[C]``
            of such values (one per channel).
        name: the argument's name, used in the error message.
        any_shape: accept a tensor of any (non-empty) shape, for snnTorch's broadcasting rule.

    Returns:
        A detached copy as a floating-point tensor of shape ``[]`` or ``[C]`` (any shape with ``any_shape``).

    Raises:
        ValueError: a value lies outside ``[0, 1]``, is not finite, or the shape is not ``[]`` / ``[C]``.
    """
    tensor = _as_tensor(value, name, any_shape)
    if bool(((tensor < 0) | (tensor > 1)).any()):
        raise ValueError(f"{name} must lie in [0, 1] (1 = no leak), got {value!r}")
    return tensor


def channel_view(param: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
    """Reshape a per-layer, per-channel or per-neuron parameter so that it broadcasts against ``x``.

    Args:
        param: ``[]`` (per layer), ``[C]`` (per channel) or, with as many dimensions as ``x``, a tensor
            that broadcasts to ``x``'s shape (per neuron, e.g. ``[1, C, H, W]``).
        x: one time step ``[B, C, ...]``; the channel dimension is dimension 1.
        name: the parameter's name, used in the error message.

    Returns:
        ``param`` itself when it is a scalar or per neuron, else a view of shape ``[C, 1, ..., 1]`` with
        ``x.dim() - 2`` trailing ones.

    Raises:
        ValueError: ``param`` has another number of dimensions, ``C`` differs from ``x.shape[1]``, or a
            per-neuron ``param`` does not broadcast to ``x``'s shape.
    """
    if param.dim() == 0:
        return param
    if param.dim() == x.dim() and param.dim() >= 2:
        if any(p not in (1, n) for p, n in zip(param.shape, x.shape, strict=True)):
            raise ValueError(
                f"per-neuron {name} of shape {tuple(param.shape)} does not broadcast to the input {tuple(x.shape)}"
            )
        return param
    _check_param_shape(param, name)
    if x.dim() < 2 or x.shape[1] != param.shape[0]:
        raise ValueError(
            f"per-channel {name} has {param.shape[0]} values but the input {tuple(x.shape)} has "
            f"{x.shape[1] if x.dim() >= 2 else 'no'} channels in dimension 1 ([B, C, ...])"
        )
    return param.reshape(param.shape[0], *([1] * (x.dim() - 2)))


def broadcast_view(param: torch.Tensor, step: torch.Size, name: str) -> torch.Tensor:
    """``param`` in the core's forms, read by torch's broadcasting rule (the snnTorch face's, as in snnTorch).

    A 1-d ``[N]`` parameter applies along the input's **last** dimension, ``[C, 1, 1]`` per channel of a
    ``[B, C, H, W]`` input and ``[C, H, W]`` per neuron: exactly the numbers ``snntorch.Leaky`` computes with.

    Args:
        param: the parameter, any shape that broadcasts against a step without enlarging it.
        step: the shape of one input step ``[B, ...]``.
        name: the parameter's name, for the error message.

    Returns:
        ``[]`` (one value for the layer), ``[C]`` (one per channel of dimension 1: the fused kernels' case) or
        a per-neuron view with the step's number of dimensions; each a view of ``param`` (gradients flow).

    Raises:
        ValueError: ``param`` does not broadcast against the step, or would enlarge it.
    """
    if param.dim() == 0:
        return param
    padded = (1,) * (len(step) - param.dim()) + tuple(param.shape)
    if len(padded) != len(step) or any(p not in (1, n) for p, n in zip(padded, step, strict=True)):
        hint = ""
        if len(step) > 2:
            hint = f"; one value per channel of a [B, C, ...] input: shape [C{', 1' * (len(step) - 2)}]"
        raise ValueError(
            f"{name} of shape {tuple(param.shape)} does not broadcast against the input step {tuple(step)} (a "
            f"parameter lines up with the input's last dimensions, as in snnTorch{hint})"
        )
    if all(p == 1 for p in padded):
        return param.reshape(())
    if len(step) >= 2 and padded[1] == step[1] and all(p == 1 for k, p in enumerate(padded) if k != 1):
        return param.reshape(step[1])
    return param.reshape(padded)
