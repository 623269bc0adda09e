"""Tests for the plugin registries in ``snn_ext.registry`` and the global ``snn_ext`` API."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import snn_ext
from snn_ext.registry import _DISABLE_ENV, ENTRY_POINT_GROUP, KINDS, PluginNotFoundError, Plugins, Registry

# --------------------------------------------------------------------------------------------
# Registry on fresh instances
# --------------------------------------------------------------------------------------------


class _Thing:
    def __init__(self, size: int = 3, flag: bool = False) -> None:
        self.size = size
        self.flag = flag


def test_register_callable_and_get_returns_it():
    reg = Registry("neuron")
    returned = reg.register("thing", framework="core", target=_Thing)
    assert returned is _Thing
    assert reg.get("thing", "core") is _Thing
    assert reg.get("thing") is _Thing
    obj = reg.create("thing", size=5)
    assert isinstance(obj, _Thing)
    assert obj.size == 5


def test_register_lazy_string_resolves_only_on_get(monkeypatch):
    reg = Registry("neuron")
    module_name = "snn_ext_test_lazy_module_not_yet_existing"
    monkeypatch.delitem(sys.modules, module_name, raising=False)
    # Registering must not import: the module does not exist yet.
    reg.register("lazy", framework="core", target=f"{module_name}:Thing")
    assert reg.names() == ["lazy"]
    with pytest.raises(ModuleNotFoundError):
        reg.get("lazy")

    # Once the module exists, the same entry resolves to the attribute present at lookup time.
    module = types.ModuleType(module_name)
    module.Thing = _Thing
    monkeypatch.setitem(sys.modules, module_name, module)
    assert reg.get("lazy") is _Thing
    assert isinstance(reg.create("lazy", framework="core", size=7), _Thing)


def test_register_lazy_stdlib_target():
    reg = Registry("encoder")
    assert reg.register("odict", framework="core", target="collections:OrderedDict") == "collections:OrderedDict"
    assert reg.get("odict") is collections.OrderedDict
    created = reg.create("odict", framework="core")
    assert isinstance(created, collections.OrderedDict)
    assert created == collections.OrderedDict()


def test_register_as_decorator_returns_object_unchanged():
    reg = Registry("converter")

    @reg.register("decorated", framework="core")
    class Decorated:
        pass

    @reg.register("decorated_fn", framework="snntorch")
    def factory(x: int = 1) -> int:
        return x * 10

    assert isinstance(Decorated, type)
    assert Decorated.__name__ == "Decorated"
    assert reg.get("decorated") is Decorated
    assert reg.get("decorated_fn") is factory
    assert factory(2) == 20
    assert reg.create("decorated_fn", x=4) == 40


def test_duplicate_name_and_framework_raises():
    reg = Registry("neuron")
    reg.register("lif", framework="snntorch", target=_Thing)
    with pytest.raises(ValueError, match="already registered") as excinfo:
        reg.register("lif", framework="snntorch", target=dict)
    assert "'lif'" in str(excinfo.value)
    assert "'snntorch'" in str(excinfo.value)
    # The first registration is kept.
    assert reg.get("lif", "snntorch") is _Thing

    with pytest.raises(ValueError, match="already registered"):

        @reg.register("lif", framework="snntorch")
        class _Other:
            pass


def test_same_name_for_second_framework_allowed():
    reg = Registry("neuron")
    reg.register("lif", framework="snntorch", target=_Thing)
    reg.register("lif", framework="spikingjelly", target=dict)
    assert reg.get("lif", "snntorch") is _Thing
    assert reg.get("lif", "spikingjelly") is dict
    assert reg.names() == ["lif"]


def test_names_sorted_and_fnmatch_pattern():
    reg = Registry("neuron")
    for name in ["zeta_lif", "alpha", "diet_lif", "lif", "diet_if"]:
        reg.register(name, framework="core", target=_Thing)
    assert reg.names() == ["alpha", "diet_if", "diet_lif", "lif", "zeta_lif"]
    assert reg.names("*lif") == ["diet_lif", "lif", "zeta_lif"]
    assert reg.names("diet_*") == ["diet_if", "diet_lif"]
    assert reg.names("?lpha") == ["alpha"]
    assert reg.names("nothing*") == []
    # fnmatchcase: case-sensitive on every platform.
    assert reg.names("ALPHA") == []


def test_names_empty_registry():
    assert Registry("encoder").names() == []


def test_frameworks_sorted():
    reg = Registry("neuron")
    reg.register("lif", framework="spikingjelly", target=_Thing)
    reg.register("lif", framework="core", target=_Thing)
    reg.register("lif", framework="snntorch", target=_Thing)
    reg.register("other", framework="core", target=_Thing)
    assert reg.frameworks("lif") == ["core", "snntorch", "spikingjelly"]
    assert reg.frameworks("other") == ["core"]
    with pytest.raises(PluginNotFoundError, match="unknown neuron plugin 'missing'"):
        reg.frameworks("missing")


def test_get_without_framework_when_several_lists_them():
    reg = Registry("neuron")
    reg.register("lif", framework="spikingjelly", target=dict)
    reg.register("lif", framework="snntorch", target=_Thing)
    with pytest.raises(PluginNotFoundError) as excinfo:
        reg.get("lif")
    message = str(excinfo.value)
    assert "several frameworks" in message
    assert "snntorch, spikingjelly" in message
    with pytest.raises(PluginNotFoundError, match="several frameworks"):
        reg.create("lif")


def test_get_unknown_framework_lists_available():
    reg = Registry("neuron")
    reg.register("lif", framework="spikingjelly", target=dict)
    reg.register("lif", framework="snntorch", target=_Thing)
    with pytest.raises(PluginNotFoundError) as excinfo:
        reg.get("lif", "norse")
    message = str(excinfo.value)
    assert "'norse'" in message
    assert "available: snntorch, spikingjelly" in message


def test_unknown_name_lists_known_names():
    reg = Registry("encoder")
    reg.register("rate", framework="core", target=_Thing)
    reg.register("latency", framework="core", target=_Thing)
    with pytest.raises(PluginNotFoundError) as excinfo:
        reg.get("bogus")
    message = str(excinfo.value)
    assert "unknown encoder plugin 'bogus'" in message
    assert "latency, rate" in message
    assert isinstance(excinfo.value, LookupError)
    # Exported at the package top level as the same class.
    assert snn_ext.PluginNotFoundError is PluginNotFoundError
    with pytest.raises(snn_ext.PluginNotFoundError):
        reg.create("bogus", framework="core")


def test_unknown_name_on_empty_registry_says_none():
    with pytest.raises(PluginNotFoundError, match="known converter plugins: none"):
        Registry("converter").get("x")


def test_create_drops_none_kwargs_so_defaults_apply():
    reg = Registry("neuron")
    reg.register("thing", framework="core", target=_Thing)
    obj = reg.create("thing", size=None, flag=True)
    assert obj.size == 3
    assert obj.flag is True
    obj = reg.create("thing", "core", size=9, flag=None)
    assert obj.size == 9
    assert obj.flag is False
    # Falsy but non-None values are passed through.
    obj = reg.create("thing", size=0, flag=False)
    assert obj.size == 0


@pytest.mark.parametrize("target", ["collections.OrderedDict", "collections", "a:b:c", ""])
def test_bad_string_target_raises_value_error(target):
    reg = Registry("neuron")
    with pytest.raises(ValueError, match="module:attr"):
        reg.register("bad", framework="core", target=target)
    assert reg.names() == []


def test_empty_name_raises_value_error():
    reg = Registry("neuron")
    with pytest.raises(ValueError, match="non-empty string"):
        reg.register("", framework="core", target=_Thing)


def test_before_lookup_hook_runs_on_lookups():
    calls = []
    reg = Registry("neuron", before_lookup=lambda: calls.append(1))
    reg.register("thing", framework="core", target=_Thing)
    assert calls == []  # registering is not a lookup
    reg.names()
    reg.get("thing")
    assert len(calls) == 2


# --------------------------------------------------------------------------------------------
# Plugins container
# --------------------------------------------------------------------------------------------


def test_plugins_unknown_kind_lists_kinds():
    plugins = Plugins(autoload=False)
    with pytest.raises(PluginNotFoundError) as excinfo:
        plugins["bogus"]
    message = str(excinfo.value)
    assert "'bogus'" in message
    assert "neuron, encoder, converter" in message
    with pytest.raises(PluginNotFoundError):
        plugins.list("bogus")


def test_plugins_getitem_and_list():
    plugins = Plugins(autoload=False)
    for kind in KINDS:
        assert plugins[kind] is getattr(plugins, kind)
        assert plugins[kind].kind == kind
    plugins.neuron.register("b_lif", framework="core", target=_Thing)
    plugins.neuron.register("a_lif", framework="core", target=_Thing)
    plugins.encoder.register("rate", framework="core", target=_Thing)
    assert plugins.list() == {"neuron": ["a_lif", "b_lif"], "encoder": ["rate"], "converter": []}
    assert plugins.list("neuron") == ["a_lif", "b_lif"]
    assert plugins.list("converter") == []


# --------------------------------------------------------------------------------------------
# Global API (read-only use of snn_ext.PLUGINS)
# --------------------------------------------------------------------------------------------


def test_list_plugins_global():
    listing = snn_ext.list_plugins()
    assert isinstance(listing, dict)
    assert set(listing) == {"neuron", "encoder", "converter"}
    assert "diet_lif" in listing["neuron"]
    neurons = snn_ext.list_plugins("neuron")
    assert isinstance(neurons, list)
    assert "diet_lif" in neurons
    assert neurons == sorted(neurons)
    assert snn_ext.PLUGINS.neuron.frameworks("diet_lif") == ["snntorch", "spikingjelly"]


def test_create_diet_lif_snntorch():
    neuron = snn_ext.create("neuron", "diet_lif", framework="snntorch", beta=0.5)
    from snn_ext.snntorch import DietLeaky

    assert isinstance(neuron, DietLeaky)
    assert neuron.beta.detach().item() == pytest.approx(0.5)


def test_create_diet_lif_spikingjelly():
    neuron = snn_ext.create("neuron", "diet_lif", framework="spikingjelly", leak=0.5, v_threshold=None)
    from snn_ext.spikingjelly import DietLIFNode

    assert isinstance(neuron, DietLIFNode)
    assert neuron.leak.detach().item() == pytest.approx(0.5)


def test_create_global_errors():
    with pytest.raises(snn_ext.PluginNotFoundError, match="snntorch, spikingjelly"):
        snn_ext.create("neuron", "diet_lif")
    with pytest.raises(snn_ext.PluginNotFoundError, match="kinds: neuron, encoder, converter"):
        snn_ext.create("bogus", "diet_lif", framework="snntorch")
    with pytest.raises(snn_ext.PluginNotFoundError, match="diet_lif"):
        snn_ext.create("neuron", "no_such_neuron", framework="snntorch")


# --------------------------------------------------------------------------------------------
# Subprocess checks: light import and entry-point discovery
# --------------------------------------------------------------------------------------------


def _run_python(code: str, pythonpath: Path | None = None, **env_overrides: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop(_DISABLE_ENV, None)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in [str(pythonpath), env.get("PYTHONPATH", "")] if p)
    env.update(env_overrides)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _json_result(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_and_list_plugins_stay_light():
    proc = _run_python(
        """
        import json, sys
        import snn_ext
        listing = snn_ext.list_plugins()
        heavy = [m for m in ("snntorch", "spikingjelly", "lightning") if m in sys.modules]
        print(json.dumps({"listing": listing, "heavy": heavy}))
        """
    )
    result = _json_result(proc)
    assert "diet_lif" in result["listing"]["neuron"]
    assert result["heavy"] == []


_PLUGIN_SOURCES = {
    "good": (
        "snn-ext-dummy-plugin",
        "snn_ext_dummy_plugin",
        "dummy",
        """
        class DummyNeuron:
            def __init__(self, tau=2.0):
                self.tau = tau


        def register(plugins):
            plugins.neuron.register("dummy_lif", framework="core", target="snn_ext_dummy_plugin:DummyNeuron")
        """,
    ),
    "broken": (
        "snn-ext-broken-plugin",
        "snn_ext_broken_plugin",
        "broken",
        """
        def register(plugins):
            plugins.neuron.register("half_registered", framework="core", target="collections:OrderedDict")
            raise RuntimeError("boom from the broken dummy plugin")
        """,
    ),
    "dup": (
        "snn-ext-dup-plugin",
        "snn_ext_dup_plugin",
        "dup",
        """
        def register(plugins):
            plugins.neuron.register("diet_lif", framework="snntorch", target="snn_ext.snntorch:DietLeaky")
        """,
    ),
}


def _build_and_install(root: Path, dist_name: str, module: str, ep_name: str, source: str) -> Path:
    project = root / f"{module}_project"
    (project / module).mkdir(parents=True)
    (project / module / "__init__.py").write_text(textwrap.dedent(source).lstrip())
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist_name}"
            version = "0.1.0"

            [tool.setuptools]
            packages = ["{module}"]

            [project.entry-points."{ENTRY_POINT_GROUP}"]
            {ep_name} = "{module}:register"
            """
        ).lstrip()
    )
    site = root / f"{module}_site"
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--target",
            str(site),
            str(project),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"pip install of {dist_name} failed:\n{proc.stdout}\n{proc.stderr}"
    assert (site / module / "__init__.py").is_file()
    return site


@pytest.fixture(scope="module")
def plugin_sites(tmp_path_factory) -> dict[str, Path]:
    """Build and install (into separate --target dirs) a working, a failing and a clashing plugin dist."""
    root = tmp_path_factory.mktemp("snn_ext_plugins")
    return {key: _build_and_install(root, *spec) for key, spec in _PLUGIN_SOURCES.items()}


def test_entry_point_plugin_discovered(plugin_sites):
    proc = _run_python(
        """
        import json
        from importlib.metadata import entry_points
        import snn_ext
        import snn_ext_dummy_plugin

        neurons = snn_ext.list_plugins("neuron")
        obj = snn_ext.create("neuron", "dummy_lif", tau=None)
        print(json.dumps({
            "eps": [ep.name for ep in entry_points(group="snn_ext.plugins")],
            "neurons": neurons,
            "frameworks": snn_ext.PLUGINS.neuron.frameworks("dummy_lif"),
            "is_dummy": isinstance(obj, snn_ext_dummy_plugin.DummyNeuron),
            "tau": obj.tau,
        }))
        """,
        plugin_sites["good"],
    )
    result = _json_result(proc)
    assert "dummy" in result["eps"]
    assert "dummy_lif" in result["neurons"]
    assert "diet_lif" in result["neurons"]
    assert result["frameworks"] == ["core"]
    assert result["is_dummy"] is True
    assert result["tau"] == 2.0


@pytest.mark.parametrize("site_key", ["good", "broken"])
def test_entry_point_autoload_disabled_by_env(plugin_sites, site_key):
    proc = _run_python(
        """
        import json
        import snn_ext

        neurons = snn_ext.list_plugins("neuron")
        try:
            snn_ext.create("neuron", "dummy_lif")
            error = None
        except snn_ext.PluginNotFoundError as err:
            error = str(err)
        print(json.dumps({"neurons": neurons, "error": error}))
        """,
        plugin_sites[site_key],
        **{_DISABLE_ENV: "1"},
    )
    result = _json_result(proc)
    assert "dummy_lif" not in result["neurons"]
    assert "diet_lif" in result["neurons"]
    assert result["error"] is not None
    assert "dummy_lif" in result["error"]


_FAILING_LOOKUP = """
import json
import snn_ext

try:
    snn_ext.list_plugins()
except Exception as err:
    cause = err.__cause__
    print(json.dumps({
        "type": type(err).__name__,
        "message": str(err),
        "cause": None if cause is None else [type(cause).__name__, str(cause)],
    }))
else:
    print(json.dumps({"type": None}))
"""


def test_entry_point_plugin_that_raises(plugin_sites):
    result = _json_result(_run_python(_FAILING_LOOKUP, plugin_sites["broken"]))
    assert result["type"] == "RuntimeError"
    message = result["message"]
    assert "'broken'" in message
    assert "snn_ext_broken_plugin:register" in message
    assert "snn-ext-broken-plugin" in message
    assert "boom from the broken dummy plugin" in message
    assert f"{_DISABLE_ENV}=1" in message
    assert result["cause"] == ["RuntimeError", "boom from the broken dummy plugin"]


def test_entry_point_plugin_registering_existing_builtin(plugin_sites):
    result = _json_result(_run_python(_FAILING_LOOKUP, plugin_sites["dup"]))
    assert result["type"] == "RuntimeError"
    message = result["message"]
    assert "already registered" in message
    assert "'dup'" in message
    assert "diet_lif" in message
    assert f"{_DISABLE_ENV}=1" in message
    assert result["cause"][0] == "ValueError"


def test_broken_plugin_fails_every_lookup_not_only_the_first(plugin_sites):
    code = """
import json
import snn_ext

errors = []
for _ in range(2):
    try:
        snn_ext.list_plugins()
        errors.append(None)
    except RuntimeError as err:
        errors.append(str(err))
print(json.dumps({"errors": errors}))
"""
    errors = _json_result(_run_python(code, plugin_sites["broken"]))["errors"]
    assert errors[0] is not None
    assert errors[0] == errors[1]
