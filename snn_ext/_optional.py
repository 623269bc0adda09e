"""Import an optional framework with an error that says which extra installs it."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise an ImportError naming the ``pip install "snn-ext[extra]"`` command."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"this part of snn-ext needs the '{module}' package, which is not installed. "
            f'Install it with: pip install "snn-ext[{extra}]"'
        ) from err
