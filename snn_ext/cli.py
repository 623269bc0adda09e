"""The ``snn-ext`` console script.

* ``snn-ext quickstart [--framework ...]``: the offline digits pipeline (:mod:`snn_ext.quickstart`).
* ``snn-ext fit|validate|test|predict -c recipes/<paper>/<dataset>_<arch>.yaml [--stage NAME] [options]``:
  LightningCLI on a recipe. A recipe is an ordinary LightningCLI config plus a ``stages:`` mapping (e.g.
  ``ann``, ``convert``, ``snn``); each stage holds the keys that differ from the shared part (model,
  optimizer, epochs, callbacks) and is deep-merged into it (mappings merge, anything else is replaced).
  ``--stage`` picks one (default: the first, so ``snn-ext fit -c recipe.yaml`` starts the pipeline).
  Every LightningCLI option still works after it (``--trainer.devices 4``, ``--print_config``, ...).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

__all__ = ["SUBCOMMANDS", "main", "resolve_stage"]

SUBCOMMANDS = ("fit", "validate", "test", "predict")
RECIPE = "recipes/<paper>/<dataset>_<arch>.yaml"


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _config_position(argv: list[str]) -> tuple[int, str] | None:
    """Index and value of the first ``-c/--config`` option in ``argv``."""
    for i, arg in enumerate(argv):
        if arg in ("-c", "--config") and i + 1 < len(argv):
            return i, argv[i + 1]
        if arg.startswith("--config="):
            return i, arg.split("=", 1)[1]
    return None


def _pop_stage(argv: list[str]) -> str | None:
    """Remove ``--stage NAME`` / ``--stage=NAME`` from ``argv`` (in place) and return ``NAME``."""
    for i, arg in enumerate(argv):
        if arg == "--stage" and i + 1 < len(argv):
            del argv[i]
            return argv.pop(i)
        if arg.startswith("--stage="):
            return argv.pop(i).split("=", 1)[1]
    return None


def _load_stages(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The recipe's shared part and its ``stages:`` mapping (``None`` for a plain LightningCLI config)."""
    import yaml

    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SystemExit(f"snn-ext: {path} is not valid YAML: {err}") from err
    if not isinstance(config, dict) or "stages" not in config:
        return config, None
    stages = config.pop("stages")
    if not isinstance(stages, dict) or not stages:
        raise SystemExit(f"snn-ext: 'stages:' in {path} must map stage names to config sections")
    return config, stages


def resolve_stage(argv: list[str]) -> list[str]:
    """Turn ``-c recipe.yaml --stage NAME`` into ``-c <the stage's merged config>`` (LightningCLI arguments).

    A config without ``stages:`` passes through unchanged (plain LightningCLI configs work too); ``--stage``
    without a staged recipe is an error.

    Raises:
        SystemExit: (with a message) unknown stage, ``--stage`` without a staged recipe, unreadable YAML.
    """
    import yaml

    argv = list(argv)
    stage = _pop_stage(argv)
    found = _config_position(argv)
    path = Path(found[1]) if found else None
    config, stages = _load_stages(path) if path is not None and path.is_file() else (None, None)
    if stages is None:
        if stage is not None:
            raise SystemExit(f"snn-ext: --stage {stage} needs a recipe with a 'stages:' section, e.g. -c {RECIPE}")
        return argv
    if stage is None:
        stage = next(iter(stages))
        print(f"snn-ext: {path}: stage '{stage}' (stages: {', '.join(stages)}; pick one with --stage)", file=sys.stderr)
    if stage not in stages:
        raise SystemExit(f"snn-ext: unknown stage '{stage}' in {path}; choose one of: {', '.join(stages)}")
    i = found[0]
    merged = yaml.safe_dump(_merge(config, stages[stage] or {}), sort_keys=False)
    argv[i : i + (1 if argv[i].startswith("--config=") else 2)] = ["--config", merged]
    return argv


def _reasons(error: Exception) -> str:
    """The informative lines of a jsonargparse instantiation error (it lists one error per Union member)."""
    lines = [line.strip()[2:] for line in str(error).splitlines() if line.strip().startswith("- ")]
    reasons = [line for line in lines if not line.startswith("Expected a <class 'NoneType'>")]
    return "; ".join(reasons) or str(error)


def _lightning_cli(argv: list[str]) -> None:
    from snn_ext._optional import require

    require("lightning", "lightning")
    require("jsonargparse", "lightning")
    from lightning.pytorch.cli import LightningCLI

    class RecipeCLI(LightningCLI):
        def instantiate_classes(self) -> None:
            """Build model, data and trainer; a bad value (e.g. an unknown plugin name) stops here, before the
            Trainer writes anything, with a one-line message instead of a traceback."""
            try:
                super().instantiate_classes()
            except (ValueError, TypeError, LookupError, OSError) as err:
                raise SystemExit(f"snn-ext: error: the configuration cannot be built: {_reasons(err)}") from err

    # We pass the resolved arguments ourselves; Lightning warns when sys.argv holds arguments as well.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    RecipeCLI(
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,  # the modules take `optimizer`/`scheduler`: one way to set them
        save_config_kwargs={"overwrite": True},  # resuming a stage rewrites its config.yaml
        args=resolve_stage(argv),
    )


def _quickstart_parser() -> argparse.ArgumentParser:
    from snn_ext import quickstart

    d = quickstart.QuickstartConfig()
    q = argparse.ArgumentParser(
        prog="snn-ext quickstart",
        description=quickstart.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("--framework", choices=quickstart.FRAMEWORKS, default=d.framework, help="framework face")
    q.add_argument("--seed", type=int, default=d.seed)
    q.add_argument("--output", type=Path, default=d.output, help="folder for results.json, plots and CSV logs")
    q.add_argument("--ann-epochs", type=int, default=d.ann_epochs)
    q.add_argument("--finetune-epochs", type=int, default=d.finetune_epochs, help="DIET-SNN fine-tuning epochs")
    q.add_argument("--hybrid-epochs", type=int, default=d.hybrid_epochs)
    q.add_argument("--scaling-factor", type=float, default=d.scaling_factor, help="percentile conversion scale")
    q.add_argument("--sweep", type=int, nargs="+", default=list(d.sweep), help="T values of the accuracy-vs-T plot")
    q.add_argument("--progress", action=argparse.BooleanOptionalAction, default=d.progress, help="progress bars")
    return q


def _quickstart(argv: list[str]) -> None:
    from snn_ext import quickstart

    parser = _quickstart_parser()
    args = parser.parse_args(argv)
    for name in ("ann_epochs", "finetune_epochs", "hybrid_epochs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    options = vars(args) | {"sweep": tuple(args.sweep)}
    quickstart.quickstart(quickstart.QuickstartConfig(**options))


_USAGE = f"""usage: snn-ext {{quickstart,{",".join(SUBCOMMANDS)}}} ...

  quickstart        offline digits pipeline: ANN, conversion, DIET-SNN fine-tune, hybrid SNN; table + JSON + plots
  {"|".join(SUBCOMMANDS)}
                    LightningCLI: snn-ext fit -c {RECIPE} [--stage NAME] [options]

'snn-ext quickstart --help' and 'snn-ext fit --help' list the options."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``snn-ext`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "quickstart":
        _quickstart(rest)
    elif command in SUBCOMMANDS:
        _lightning_cli(argv)
    else:
        print(f"snn-ext: unknown command {command!r}\n\n{_USAGE}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
