"""SpikingJelly face of snn-ext: ``BaseNode`` neurons computed by ``snn_ext.core``.

Needs ``pip install "snn-ext[spikingjelly]"``.
"""

from snn_ext._optional import require

require("spikingjelly.activation_based", "spikingjelly")

from snn_ext.spikingjelly.encoding import DirectEncoder, HybridEncoder  # noqa: E402
from snn_ext.spikingjelly.neurons import DietLIFNode, SingleSpikeLIFNode  # noqa: E402

__all__ = ["DietLIFNode", "DirectEncoder", "HybridEncoder", "SingleSpikeLIFNode"]
