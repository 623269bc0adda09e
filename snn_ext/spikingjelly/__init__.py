"""SpikingJelly face of snn-ext: ``BaseNode`` neurons computed by ``snn_ext.core``.

Needs ``pip install "snn-ext[spikingjelly]"``.
"""

from snn_ext._optional import require

require("spikingjelly.activation_based", "spikingjelly")

from snn_ext.spikingjelly.neurons import DietLIFNode  # noqa: E402

__all__ = ["DietLIFNode"]
