"""snnTorch's ``export_to_nir`` must not write a different network for an snn-ext neuron.

snnTorch exports any ``snntorch.Leaky`` subclass as its own Leaky: a NIR ``LIF`` that resets *to* ``v_reset = 0``
with ``tau = dt / (1 - beta)`` (infinite for DIET's ``beta = 1``). For a DIET neuron, which subtracts the threshold,
that is another network, written without a word. Importing :mod:`snn_ext.snntorch`
makes the export refuse our neurons with an error that says so. Only when ``nir`` and ``nirtorch`` are
installed: without them snnTorch cannot export at all.
"""

from __future__ import annotations

import functools
import importlib.util

from torch import nn

__all__ = ["guard_export_to_nir"]


def guard_export_to_nir(refused: tuple[type[nn.Module], ...]) -> None:
    """Make ``snntorch.export_nir.export_to_nir`` raise ``TypeError`` on a network with a module of a ``refused``
    class: checked on the whole network first, and again per module (for a reference to ``export_to_nir`` taken
    before this ran)."""
    if importlib.util.find_spec("nir") is None or importlib.util.find_spec("nirtorch") is None:
        return
    from snntorch import export_nir

    if getattr(export_nir.export_to_nir, "snn_ext_refused", None) == refused:
        return

    def refuse(module: nn.Module) -> None:
        raise TypeError(
            f"snntorch.export_to_nir cannot export {type(module).__name__} (snn-ext): it would write snnTorch's "
            "Leaky as a NIR LIF that resets to v_reset=0 with tau = dt / (1 - beta), not DIET's neuron (it "
            "subtracts the threshold, and beta=1 would become tau=inf), i.e. a different network. snn-ext does "
            "not export to NIR yet; save the state_dict instead"
        )

    export, extract = export_nir.export_to_nir, export_nir._extract_snntorch_module

    @functools.wraps(export)
    def guarded_export(module: nn.Module, *args: object, **kwargs: object):  # noqa: ANN202 - a NIR graph
        for child in module.modules():
            if isinstance(child, refused):
                refuse(child)
        return export(module, *args, **kwargs)

    @functools.wraps(extract)
    def guarded_extract(module: nn.Module):  # noqa: ANN202 - a NIR node or None
        if isinstance(module, refused):
            refuse(module)
        return extract(module)

    guarded_export.snn_ext_refused = refused
    export_nir.export_to_nir, export_nir._extract_snntorch_module = guarded_export, guarded_extract
