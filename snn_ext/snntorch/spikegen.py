"""Encoders in the style of ``snntorch.spikegen``: static ``[B, ...]`` in, time-first ``[T, B, ...]`` out.

Use them next to snnTorch's own ``spikegen.rate`` / ``latency``::

    from snn_ext.snntorch import spikegen
    x_seq = spikegen.hybrid(images, num_steps=5)   # analog at step 0, one spike per pixel after

Both are the core's functions (:mod:`snn_ext.core.encoding`), so they match the SpikingJelly encoders.
"""

from snn_ext.core.encoding import direct, hybrid, linear_spike_step

__all__ = ["direct", "hybrid", "linear_spike_step"]
