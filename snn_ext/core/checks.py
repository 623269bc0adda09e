"""Input checks shared by every public entry point of the core.

Each check raises an error that names the offending argument and says what is accepted, so a
bad call fails at the call site instead of producing NaN spikes many layers later. Nothing here
clamps or repairs a value.
"""

from __future__ import annotations

import torch

__all__ = [
    "channel_view",
    "check_current",
    "check_leak",
    "check_num_steps",
    "check_sequence",
    "check_threshold",
]


def check_current(x: torch.Tensor, name: str) -> None:
    """Check that ``x`` is a finite floating-point tensor with a batch dimension.

    Args:
        x: input current, ``[B, ...]`` (one step) or ``[T, B, ...]`` (a sequence).
        name: the argument's name, used in the error message.

    Raises:
        TypeError: ``x`` is not a tensor or not floating point.
        ValueError: ``x`` is a 0-d tensor or holds NaN or inf.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float16, bfloat16, float32 or float64), got {x.dtype}"
        )
    if x.dim() == 0:
        raise ValueError(f"{name} must have a batch dimension ([B, ...]), got a 0-d tensor")
    if x.numel() and not _all_finite(x):
        raise ValueError(f"{name} contains NaN or inf; spiking neurons accept finite input currents only")


def _all_finite(x: torch.Tensor) -> bool:
    # min and max are finite exactly when every element is (NaN propagates): one pass over x and no
    # temporaries, where ``isfinite(x).all()`` makes several passes and allocates x-sized tensors.
    low, high = torch.aminmax(x)
    return bool(torch.isfinite(low) & torch.isfinite(high))


def check_sequence(x_seq: torch.Tensor, name: str) -> None:
    """Check a time-first sequence ``[T, B, ...]`` with ``T >= 1``.

    Raises:
        TypeError / ValueError: as :func:`check_current`, and when ``x_seq`` has fewer than two
            dimensions or an empty time dimension.
    """
    check_current(x_seq, name)
    if x_seq.dim() < 2:
        raise ValueError(
            f"{name} must be a sequence [T, B, ...] with at least 2 dimensions, got shape {tuple(x_seq.shape)}"
        )
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


def _as_tensor(value: float | torch.Tensor, name: str) -> torch.Tensor:
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
    tensor = torch.as_tensor(value, dtype=torch.get_default_dtype()) if not isinstance(value, torch.Tensor) else value
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.get_default_dtype())
    _check_param_shape(tensor, name)
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return tensor.detach().clone()


def check_threshold(value: float | torch.Tensor, name: str = "threshold") -> torch.Tensor:
    """Validate a firing threshold and return it as a new float tensor.

    Args:
        value: a positive float (one threshold per layer) or a 1-d tensor ``[C]`` of positive
            values (one per channel).
        name: the argument's name, used in the error message.

    Returns:
        A detached copy as a floating-point tensor of shape ``[]`` or ``[C]``.

    Raises:
        ValueError: a value is <= 0, not finite, or the shape is not ``[]`` / ``[C]``.
    """
    tensor = _as_tensor(value, name)
    if bool((tensor <= 0).any()):
        raise ValueError(f"{name} must be > 0 (the potential is divided by it), got {value!r}")
    return tensor


def check_leak(value: float | torch.Tensor, name: str = "leak") -> torch.Tensor:
    """Validate a membrane leak factor and return it as a new float tensor.

    Args:
        value: a float in ``[0, 1]`` (one leak per layer; 1 means no leak) or a 1-d tensor ``[C]``
            of such values (one per channel).
        name: the argument's name, used in the error message.

    Returns:
        A detached copy as a floating-point tensor of shape ``[]`` or ``[C]``.

    Raises:
        ValueError: a value lies outside ``[0, 1]``, is not finite, or the shape is not ``[]`` / ``[C]``.
    """
    tensor = _as_tensor(value, name)
    if bool(((tensor < 0) | (tensor > 1)).any()):
        raise ValueError(f"{name} must lie in [0, 1] (1 = no leak), got {value!r}")
    return tensor


def channel_view(param: torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
    """Reshape a per-layer or per-channel parameter so that it broadcasts against ``x``.

    Args:
        param: ``[]`` (per layer) or ``[C]`` (per channel).
        x: one time step ``[B, C, ...]``; the channel dimension is dimension 1.
        name: the parameter's name, used in the error message.

    Returns:
        ``param`` itself when it is a scalar, else a view of shape ``[C, 1, ..., 1]`` with
        ``x.dim() - 2`` trailing ones.

    Raises:
        ValueError: ``param`` has more than one dimension, or ``C`` differs from ``x.shape[1]``.
    """
    if param.dim() == 0:
        return param
    _check_param_shape(param, name)
    if x.dim() < 2 or x.shape[1] != param.shape[0]:
        raise ValueError(
            f"per-channel {name} has {param.shape[0]} values but the input {tuple(x.shape)} has "
            f"{x.shape[1] if x.dim() >= 2 else 'no'} channels in dimension 1 ([B, C, ...])"
        )
    return param.reshape(param.shape[0], *([1] * (x.dim() - 2)))
