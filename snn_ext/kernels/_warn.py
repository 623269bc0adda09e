"""One-time warnings of the kernel dispatcher."""

from __future__ import annotations

import warnings

__all__ = ["KernelFallbackWarning", "warn_once"]


class KernelFallbackWarning(UserWarning):
    """A fused kernel was requested or expected but a slower path with the same results runs instead."""


_issued: set[str] = set()


def warn_once(message: str, stacklevel: int) -> None:
    """Issue ``message`` as a :class:`KernelFallbackWarning` the first time this process sees it.

    ``stacklevel`` counts from the caller of :func:`warn_once`, as in :func:`warnings.warn`.
    """
    if message not in _issued:
        _issued.add(message)
        warnings.warn(message, KernelFallbackWarning, stacklevel=stacklevel + 1)
