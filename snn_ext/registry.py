"""Plugin registries: one per kind (``neuron``, ``encoder``, ``converter``).

An entry maps a plugin name and a framework (``"snntorch"``, ``"spikingjelly"``, or ``"core"`` for
framework-neutral objects) to a target: a callable, or a lazy ``"module:attr"`` string that is only
imported when the plugin is created, so ``import snn_ext`` imports no framework.

Third-party packages add plugins through the entry-point group ``snn_ext.plugins``. Each entry
point names a function that receives the :class:`Plugins` object and registers into it::

    # pyproject.toml of a plugin package
    [project.entry-points."snn_ext.plugins"]
    my_lif = "my_pkg.snn_plugins:register"

    # my_pkg/snn_plugins.py
    def register(plugins):
        plugins.neuron.register("my_lif", framework="snntorch", target="my_pkg.neurons:MyLeaky")

Entry points are loaded on the first lookup. Set ``SNN_EXT_DISABLE_PLUGIN_AUTOLOAD=1`` to skip them.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

__all__ = [
    "ENTRY_POINT_GROUP",
    "KINDS",
    "PLUGINS",
    "PluginNotFoundError",
    "Plugins",
    "Registry",
    "create",
    "list_plugins",
]

ENTRY_POINT_GROUP = "snn_ext.plugins"
KINDS = ("neuron", "encoder", "converter")
_DISABLE_ENV = "SNN_EXT_DISABLE_PLUGIN_AUTOLOAD"

Target = Callable[..., Any] | str


class PluginNotFoundError(LookupError):
    """An unknown plugin kind, name or framework; the message lists the known ones."""


def _resolve(target: Target) -> Callable[..., Any]:
    if not isinstance(target, str):
        return target
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


class Registry:
    """Named plugins of one kind, each available for one or more frameworks.

    Args:
        kind: what the registry holds, e.g. ``"neuron"``; used in error messages.
        before_lookup: called before every lookup (the owner uses it to load entry points lazily).
    """

    def __init__(self, kind: str, before_lookup: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, dict[str, Target]] = {}
        self._before_lookup = before_lookup

    def register(self, name: str, *, framework: str, target: Target | None = None) -> Any:
        """Register ``target`` as plugin ``name`` for ``framework``.

        Use it directly (``register("x", framework="snntorch", target="pkg.mod:Cls")``) or as a
        decorator (``@register("x", framework="core")``).

        Raises:
            ValueError: ``name`` is already registered for ``framework``, or a string target is
                not of the form ``"module:attr"``.
        """
        if target is None:

            def decorator(obj: Any) -> Any:
                self.register(name, framework=framework, target=obj)
                return obj

            return decorator
        if not name or not isinstance(name, str):
            raise ValueError(f"{self.kind} plugin name must be a non-empty string, got {name!r}")
        if isinstance(target, str) and target.count(":") != 1:
            raise ValueError(f"target must be a callable or a 'module:attr' string, got {target!r}")
        frameworks = self._entries.setdefault(name, {})
        if framework in frameworks:
            raise ValueError(f"{self.kind} plugin {name!r} is already registered for framework {framework!r}")
        frameworks[framework] = target
        return target

    def _lookup(self) -> None:
        if self._before_lookup is not None:
            self._before_lookup()

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted plugin names matching the shell-style ``pattern``."""
        self._lookup()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def frameworks(self, name: str) -> list[str]:
        """Sorted frameworks for which ``name`` is registered."""
        return sorted(self._frameworks_of(name))

    def _frameworks_of(self, name: str) -> dict[str, Target]:
        self._lookup()
        if name not in self._entries:
            known = ", ".join(sorted(self._entries)) or "none"
            raise PluginNotFoundError(f"unknown {self.kind} plugin {name!r}; known {self.kind} plugins: {known}")
        return self._entries[name]

    def get(self, name: str, framework: str | None = None) -> Callable[..., Any]:
        """The plugin's class or factory for ``framework`` (which may be omitted when there is one).

        Raises:
            PluginNotFoundError: unknown ``name`` or ``framework``; the message lists the known ones.
        """
        targets = self._frameworks_of(name)
        if framework is None:
            if len(targets) != 1:
                raise PluginNotFoundError(
                    f"{self.kind} plugin {name!r} exists for several frameworks; pass framework= one of "
                    f"{', '.join(sorted(targets))}"
                )
            (framework,) = targets
        if framework not in targets:
            raise PluginNotFoundError(
                f"{self.kind} plugin {name!r} has no {framework!r} version; available: {', '.join(sorted(targets))}"
            )
        return _resolve(targets[framework])

    def create(self, name: str, framework: str | None = None, **kwargs: Any) -> Any:
        """Build plugin ``name`` for ``framework``; ``None``-valued kwargs are dropped so defaults apply."""
        factory = self.get(name, framework)
        return factory(**{k: v for k, v in kwargs.items() if v is not None})


class Plugins:
    """The three registries plus lazy loading of third-party entry points.

    Args:
        autoload: load the ``snn_ext.plugins`` entry points on the first lookup (unless the
            environment variable ``SNN_EXT_DISABLE_PLUGIN_AUTOLOAD`` is set to a non-empty value).
    """

    def __init__(self, autoload: bool = True) -> None:
        self._pending = autoload
        self._load_error: RuntimeError | None = None
        self.neuron = Registry("neuron", self._load_entry_points)
        self.encoder = Registry("encoder", self._load_entry_points)
        self.converter = Registry("converter", self._load_entry_points)

    def __getitem__(self, kind: str) -> Registry:
        if kind not in KINDS:
            raise PluginNotFoundError(f"unknown plugin kind {kind!r}; kinds: {', '.join(KINDS)}")
        return getattr(self, kind)

    def _load_entry_points(self) -> None:
        if self._load_error is not None:  # a broken plugin keeps failing every lookup, not just the first
            raise self._load_error
        if not self._pending:
            return
        self._pending = False  # before loading, so a plugin may itself look plugins up
        if os.environ.get(_DISABLE_ENV):
            return
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "unknown distribution"
            try:
                ep.load()(self)
            except Exception as err:
                self._load_error = RuntimeError(
                    f"snn-ext plugin entry point {ep.name!r} ({ep.value}) from {dist} failed: {err}. "
                    f"Set {_DISABLE_ENV}=1 to start without third-party plugins."
                )
                self._load_error.__cause__ = err
                raise self._load_error from err

    def list(self, kind: str | None = None) -> dict[str, list[str]] | list[str]:
        """Plugin names of ``kind``, or a ``{kind: names}`` dict of all kinds when ``kind`` is None."""
        if kind is None:
            return {k: self[k].names() for k in KINDS}
        return self[kind].names()


def _builtin_plugins() -> Plugins:
    plugins = Plugins()
    plugins.neuron.register("diet_lif", framework="snntorch", target="snn_ext.snntorch:DietLeaky")
    plugins.neuron.register("diet_lif", framework="spikingjelly", target="snn_ext.spikingjelly:DietLIFNode")
    plugins.neuron.register("single_spike_lif", framework="snntorch", target="snn_ext.snntorch:SingleSpikeLeaky")
    plugins.neuron.register(
        "single_spike_lif", framework="spikingjelly", target="snn_ext.spikingjelly:SingleSpikeLIFNode"
    )
    for name, cls in (
        ("max", "Max"),
        ("percentile", "Percentile"),
        ("distribution_aware", "DistributionAware"),
        ("qcfs", "QCFS"),
    ):
        plugins.converter.register(name, framework="core", target=f"snn_ext.conversion:{cls}Conversion")
        plugins.converter.register(name, framework="spikingjelly", target=f"snn_ext.spikingjelly.recipes:{cls}Recipe")
    for name in ("direct", "hybrid"):
        plugins.encoder.register(name, framework="core", target=f"snn_ext.core.encoding:{name}")
        plugins.encoder.register(name, framework="snntorch", target=f"snn_ext.snntorch.spikegen:{name}")
        plugins.encoder.register(
            name, framework="spikingjelly", target=f"snn_ext.spikingjelly:{name.capitalize()}Encoder"
        )
    return plugins


PLUGINS = _builtin_plugins()
"""The process-wide plugins used by :func:`create` and :func:`list_plugins`."""


def list_plugins(kind: str | None = None) -> dict[str, list[str]] | list[str]:
    """Registered plugin names: ``list_plugins("neuron") -> ["diet_lif", ...]``; all kinds when ``kind`` is None."""
    return PLUGINS.list(kind)


def create(kind: str, name: str, framework: str | None = None, **kwargs: Any) -> Any:
    """Build a registered plugin, e.g. ``create("neuron", "diet_lif", framework="snntorch", beta=0.9)``.

    Args:
        kind: ``"neuron"``, ``"encoder"`` or ``"converter"``.
        name: the plugin's name (see :func:`list_plugins`).
        framework: ``"snntorch"``, ``"spikingjelly"`` or ``"core"``; may be omitted when the plugin
            exists for one framework only.
        **kwargs: passed to the plugin's constructor (``None`` values are dropped).

    Raises:
        PluginNotFoundError: unknown kind, name or framework; the message lists what is known.
    """
    return PLUGINS[kind].create(name, framework, **kwargs)
