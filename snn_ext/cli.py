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
import os
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
    return _resolve(argv)[0]


def _resolve(argv: list[str]) -> tuple[list[str], tuple[str, Path] | None]:
    """:func:`resolve_stage`'s arguments, and the stage's name and recipe (``None`` without a staged recipe)."""
    import yaml

    argv = list(argv)
    stage = _pop_stage(argv)
    found = _config_position(argv)
    path = Path(found[1]) if found else None
    config, stages = _load_stages(path) if path is not None and path.is_file() else (None, None)
    if stages is None:
        if stage is not None:
            raise SystemExit(f"snn-ext: --stage {stage} needs a recipe with a 'stages:' section, e.g. -c {RECIPE}")
        return argv, None
    if stage is None:
        stage = next(iter(stages))
        print(f"snn-ext: {path}: stage '{stage}' (stages: {', '.join(stages)}; pick one with --stage)", file=sys.stderr)
    if stage not in stages:
        raise SystemExit(f"snn-ext: unknown stage '{stage}' in {path}; choose one of: {', '.join(stages)}")
    i = found[0]
    merged = yaml.safe_dump(_merge(config, stages[stage] or {}), sort_keys=False)
    argv[i : i + (1 if argv[i].startswith("--config=") else 2)] = ["--config", merged]
    return argv, (stage, path)


def _pop_flag(argv: list[str], flag: str) -> bool:
    """Remove every ``flag`` from ``argv`` (in place); whether there was one."""
    found = flag in argv
    argv[:] = [arg for arg in argv if arg != flag]
    return found


_SPECIAL_CKPT = ("last", "best", "hpc", "registry")  # ckpt_path values Lightning resolves itself


def _checkpoint_dirs(trainer: Any) -> list[Path]:
    """The folders of the Trainer's ``ModelCheckpoint`` callbacks that name one (``dirpath``)."""
    return [Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if getattr(cb, "dirpath", None)]


def _check_writable(folder: Path) -> None:
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise SystemExit(f"snn-ext: error: cannot write checkpoints to {folder} ({existing} is not writable)")


def _start_over(dirs: list[Path], overwrite: bool) -> None:
    """Before a new run: the checkpoint folders are writable and hold no earlier run's checkpoints (deleted with
    ``overwrite``, otherwise refused with the ways on)."""
    for folder in dirs:
        _check_writable(folder)
        old = sorted(folder.glob("*.ckpt")) if folder.is_dir() else []
        if old and not overwrite:
            raise SystemExit(
                f"snn-ext: error: {folder} holds the checkpoints of an earlier run ({', '.join(p.name for p in old)}); "
                "this run would replace them. Resume that run with --ckpt_path last, start over with --overwrite "
                "(deletes them), or give this run its own folder (--trainer.default_root_dir and the "
                "ModelCheckpoint's dirpath)"
            )
        for path in old:
            path.unlink()
        if old:
            print(f"snn-ext: --overwrite: deleted {len(old)} checkpoint(s) of an earlier run in {folder}",
                  file=sys.stderr)  # fmt: skip


def _refuse_fit(name: str, recipe: Path) -> None:
    raise SystemExit(
        f"snn-ext: error: stage '{name}' keeps no checkpoint (no ModelCheckpoint with a dirpath), so `fit` would "
        f"train and keep nothing; it is an evaluation stage: snn-ext test -c {recipe} --stage {name}"
    )


def _check_ckpt_path(argv: list[str]) -> None:
    """Open the file of ``--ckpt_path`` in ``argv`` (if any), so a missing or damaged one fails naming its path."""
    from snn_ext.lightning.converted import read_checkpoint

    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--ckpt_path" and i + 1 < len(argv) else None
        if arg.startswith("--ckpt_path="):
            value = arg.split("=", 1)[1]
        if value is not None and value not in _SPECIAL_CKPT:
            try:
                read_checkpoint(value, "--ckpt_path", weights_only=False)
            except (OSError, ValueError) as err:
                raise SystemExit(f"snn-ext: error: {err}") from err


def _last_checkpoint(subcommand: str, dirs: list[Path], name: str, recipe: Path) -> Path | None:
    """The ``last.ckpt`` that ``validate``/``test``/``predict`` of a training stage evaluates (``None`` for an
    evaluation stage, which has no checkpoint folder: the model as built is what it evaluates)."""
    from snn_ext.lightning.converted import read_checkpoint

    if not dirs:
        return None
    last = dirs[0] / "last.ckpt"
    if not last.is_file():
        raise SystemExit(
            f"snn-ext: error: stage '{name}' has no checkpoint in {dirs[0]} to evaluate; train it first "
            f"(snn-ext fit -c {recipe} --stage {name}) or pass --ckpt_path"
        )
    try:
        read_checkpoint(last, weights_only=False)
    except ValueError as err:
        raise SystemExit(f"snn-ext: error: {err}") from err
    print(f"snn-ext: {subcommand} stage '{name}' with its last checkpoint {last} (--ckpt_path picks another)",
          file=sys.stderr)  # fmt: skip
    return last


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

    argv = list(argv)
    overwrite = _pop_flag(argv, "--overwrite")
    _check_ckpt_path(argv)  # LightningCLI reads it while parsing: a damaged file fails here, naming it
    argv, stage = _resolve(argv)

    class RecipeCLI(LightningCLI):
        def instantiate_classes(self) -> None:
            """Build model, data and trainer; a bad value (e.g. an unknown plugin name) stops here, before the
            Trainer writes anything, with a one-line message instead of a traceback."""
            try:
                super().instantiate_classes()
            except (ValueError, TypeError, LookupError, OSError) as err:
                raise SystemExit(f"snn-ext: error: the configuration cannot be built: {_reasons(err)}") from err

        def _ckpt_path(self) -> str | None:
            return self.config_init[self.subcommand].get("ckpt_path")

        def before_fit(self) -> None:
            """Refuse a stage that keeps no checkpoint, and to replace an earlier run's checkpoints."""
            dirs = _checkpoint_dirs(self.trainer)
            if stage is not None and not dirs:
                _refuse_fit(*stage)
            if self._ckpt_path() is None:  # with one, Lightning resumes that run and continues its checkpoints
                _start_over(dirs, overwrite)

        def before_validate(self) -> None:
            """Evaluate a training stage from its checkpoint: ``--ckpt_path``, else the stage's ``last.ckpt``."""
            if self._ckpt_path() is None and stage is not None:
                last = _last_checkpoint(self.subcommand, _checkpoint_dirs(self.trainer), *stage)
                if last is not None:
                    self.config_init[self.subcommand]["ckpt_path"] = str(last)

        before_test = before_predict = before_validate

    # We pass the resolved arguments ourselves; Lightning warns when sys.argv holds arguments as well.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    RecipeCLI(
        subclass_mode_model=True,
        subclass_mode_data=True,
        auto_configure_optimizers=False,  # the modules take `optimizer`/`scheduler`: one way to set them
        save_config_kwargs={"overwrite": True},  # resuming a stage rewrites its config.yaml
        args=argv,
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
    q.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in --output")
    return q


def _quickstart(argv: list[str]) -> None:
    from snn_ext import quickstart

    parser = _quickstart_parser()
    args = parser.parse_args(argv)
    try:  # every option and the output folder, before anything trains
        cfg = quickstart.QuickstartConfig(**vars(args))
        quickstart.check_output(cfg.output, cfg.overwrite)
    except ValueError as err:
        parser.error(str(err))
    quickstart.quickstart(cfg)


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
