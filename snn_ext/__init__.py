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

__all__ = ["PLUGINS", "PluginNotFoundError", "__version__", "create", "list_plugins"]
