"""snn-ext: DIET-SNN, single-spike hybrid encoding and ultra-low-latency conversion as plugins
for snnTorch and SpikingJelly.

``import snn_ext`` imports neither framework; ``snn_ext.snntorch`` and ``snn_ext.spikingjelly``
hold the framework faces, ``snn_ext.core`` the shared pure-torch maths.
"""

from importlib.metadata import PackageNotFoundError, version

from snn_ext.registry import PLUGINS, PluginNotFoundError, create, list_plugins

try:
    __version__ = version("snn-ext")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "PLUGINS",
    "PluginNotFoundError",
    "__version__",
    "convert",
    "create",
    "list_plugins",
    "to_framework",
    "validate_values",
]


def __getattr__(name: str):
    # `snn_ext.convert`, `to_framework` and `validate_values` are imported on first use, so `import snn_ext` stays light
    # (no torch, no framework).
    if name in ("convert", "to_framework"):
        from snn_ext import conversion

        return getattr(conversion, name)
    if name == "validate_values":
        from snn_ext.core.checks import validate_values

        return validate_values
    raise AttributeError(f"module 'snn_ext' has no attribute {name!r}")
