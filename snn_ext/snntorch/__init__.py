"""snnTorch face of snn-ext: neurons that keep snnTorch's idioms and compute with ``snn_ext.core``.

Needs ``pip install "snn-ext[snntorch]"``.
"""

from snn_ext._optional import require

require("snntorch", "snntorch")

from snn_ext.snntorch import spikegen  # noqa: E402
from snn_ext.snntorch._nir import guard_export_to_nir  # noqa: E402
from snn_ext.snntorch.neurons import DietLeaky, SingleSpikeLeaky  # noqa: E402
from snn_ext.snntorch.utils import reset  # noqa: E402

guard_export_to_nir((DietLeaky,))

__all__ = ["DietLeaky", "SingleSpikeLeaky", "reset", "spikegen"]
