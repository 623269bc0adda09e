"""Lightning side of snn-ext: DataModules, LightningModules and the small recipe networks.

Needs the ``lightning`` extra: ``pip install "snn-ext[lightning]"``.
"""

from snn_ext._optional import require

require("lightning", "lightning")

from snn_ext.lightning.callbacks import SpikeMonitor  # noqa: E402
from snn_ext.lightning.cifar import CIFARDataModule  # noqa: E402
from snn_ext.lightning.converted import ConvertedSNN  # noqa: E402
from snn_ext.lightning.data import DigitsDataModule  # noqa: E402
from snn_ext.lightning.imagenet import ImageNetDataModule  # noqa: E402
from snn_ext.lightning.modules import ANNModule, SNNModule  # noqa: E402
from snn_ext.lightning.nets import SingleSpikeMLP  # noqa: E402

__all__ = [
    "ANNModule",
    "CIFARDataModule",
    "ConvertedSNN",
    "DigitsDataModule",
    "ImageNetDataModule",
    "SNNModule",
    "SingleSpikeMLP",
    "SpikeMonitor",
]
