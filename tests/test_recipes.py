"""Every recipe in recipes/ parses, and runs each stage (fast_dev_run) on data generated in the real formats.

The data are tiny CIFAR pickles / an ImageFolder of JPEG and PNG files (``fake_data.py``), or the embedded
digits; the networks keep
the recipe's architecture except the classifier width (16 instead of 4096) and, for ImageNet, the image size
(32 instead of 224), so that a stage runs in seconds on a CPU. The ANN checkpoint that the conversion stages
read is written from the recipe's own ANN definition.
"""

import importlib
from pathlib import Path

import pytest
import torch
import yaml
from fake_data import write_fake_cifar, write_fake_imagenet

from snn_ext.cli import main, resolve_stage

RECIPES = sorted((Path(__file__).parents[1] / "recipes").glob("*/*.yaml"))
STAGES = ("ann", "convert", "snn")
SUBCOMMAND = {"ann": "fit", "convert": "test", "snn": "fit"}


def recipe_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_every_paper_dataset_and_architecture_has_a_recipe():
    names = {recipe_id(p) for p in RECIPES}
    assert names == {
        "diet_snn/cifar10_vgg16",
        "diet_snn/cifar100_vgg16",
        "diet_snn/imagenet_vgg16",
        "hybrid_encoding/cifar10_vgg16",
        "hybrid_encoding/cifar100_vgg16",
        "distribution_aware/cifar10_vgg16",
        "distribution_aware/cifar100_vgg16",
        "distribution_aware/cifar10_resnet20",
        "distribution_aware/cifar100_resnet20",
        "diet_snn/digits_vgg_small",
        "distribution_aware/digits_vgg_small",
    }
    readme = (RECIPES[0].parents[1] / "README.md").read_text()
    for path in RECIPES:
        assert tuple(load(path)["stages"]) == STAGES
        assert f"{recipe_id(path)}.yaml" in readme, f"recipes/README.md does not describe {path.name}"


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("path", RECIPES, ids=recipe_id)
def test_print_config(path, stage, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([SUBCOMMAND[stage], "-c", str(path), "--stage", stage, "--print_config"])
    assert exit_info.value.code in (None, 0)
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = load(path)["stages"][stage]["model"]["class_path"]
    assert printed["model"]["class_path"] == expected
    assert printed["seed_everything"] == 0


def _overrides(path: Path, stage: str) -> list[str]:
    config = load(path)
    net = "--model.init_args.net.init_args." + ("" if stage == "ann" else "ann.init_args.")
    args = ["--trainer.fast_dev_run", "1", "--data.init_args.batch_size", "4"]
    if "Digits" not in config["data"]["class_path"]:
        args += ["--data.init_args.num_workers", "0"]
    ann = config["stages"]["convert"]["model"]["init_args"]["net"]["init_args"]["ann"]
    if ann["class_path"].endswith("VGG") and ann["init_args"]["arch"] != "vgg_small":
        args += [net + "classifier_width", "16"]
    if "ImageNet" in config["data"]["class_path"]:
        args += ["--data.init_args.image_size", "32", "--data.init_args.resize", "36", net + "image_size", "32"]
        args += [net + "num_classes", "3"]
    if stage != "ann":
        args += ["--model.init_args.net.init_args.calibration_batches", "1"]
    return args


def _write_ann_checkpoint(path: Path) -> None:
    """Save the recipe's ANN (reduced as in ``_overrides``) where the conversion stages look for it."""
    net = load(path)["stages"]["convert"]["model"]["init_args"]["net"]["init_args"]
    module, _, name = net["ann"]["class_path"].rpartition(".")
    options = dict(net["ann"]["init_args"])
    if name == "VGG" and options["arch"] != "vgg_small":
        options["classifier_width"] = 16
    if options.get("arch") == "vgg16_imagenet":
        options.update(image_size=32, num_classes=3)
    torch.manual_seed(0)
    ann = getattr(importlib.import_module(module), name)(**options)
    Path(net["checkpoint"]).parent.mkdir(parents=True, exist_ok=True)
    torch.save(ann.state_dict(), net["checkpoint"])


def _write_data(path: Path) -> None:
    if "digits" in path.stem:  # embedded in scikit-learn
        return
    root = Path(load(path)["data"]["init_args"]["root"])
    if "imagenet" in path.stem:
        write_fake_imagenet(root)
    else:
        write_fake_cifar(root, 100 if "cifar100" in path.stem else 10)


@pytest.mark.parametrize("path", RECIPES, ids=recipe_id)
def test_every_stage_runs_fast_dev_run_on_generated_data(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_data(path)
    main(["fit", "-c", str(path), "--stage", "ann", *_overrides(path, "ann")])
    _write_ann_checkpoint(path)
    for stage in ("convert", "snn"):
        main([SUBCOMMAND[stage], "-c", str(path), "--stage", stage, *_overrides(path, stage)])


def test_missing_ann_checkpoint_says_which_stage_makes_it(tmp_path, monkeypatch):
    path = RECIPES[0]
    monkeypatch.chdir(tmp_path)
    _write_data(path)
    before = set(tmp_path.rglob("*"))
    with pytest.raises(SystemExit, match=r"ANN checkpoint runs/.*/ann/checkpoints/last.ckpt not found.*--stage ann"):
        main(["test", "-c", str(path), "--stage", "convert", *_overrides(path, "convert")])
    assert set(tmp_path.rglob("*")) == before


def test_unknown_plugin_in_yaml_fails_before_anything_is_written(tmp_path, monkeypatch):
    path = next(p for p in RECIPES if p.parent.name == "distribution_aware")
    recipe = load(path)
    recipe["stages"]["snn"]["model"]["init_args"]["net"]["init_args"]["method"] = "distribution_awar"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(recipe))
    monkeypatch.chdir(tmp_path)
    _write_data(path)
    _write_ann_checkpoint(path)
    before = set(tmp_path.rglob("*"))
    with pytest.raises(SystemExit, match="unknown converter plugin 'distribution_awar'; known converter plugins: "):
        main(["fit", "-c", str(bad), "--stage", "snn", *_overrides(path, "snn")])
    assert set(tmp_path.rglob("*")) == before


def test_missing_dataset_folder_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = next(p for p in RECIPES if p.stem == "cifar10_vgg16")
    with pytest.raises(FileNotFoundError, match="extract cifar-10-python.tar.gz from .* into .*data/cifar10"):
        main(["fit", "-c", str(path), "--stage", "ann", *_overrides(path, "ann")])


def test_stage_resolution():
    path = str(RECIPES[0])
    merged = yaml.safe_load(resolve_stage(["fit", "-c", path, "--stage", "snn"])[2])
    assert "stages" not in merged
    assert merged["model"]["class_path"] == "snn_ext.lightning.SNNModule"
    assert merged["data"]["init_args"]["root"]  # the shared part is kept, the stage's keys merged into it
    default = yaml.safe_load(resolve_stage(["fit", f"--config={path}"])[2])
    assert default["model"]["class_path"] == "snn_ext.lightning.ANNModule"  # the first stage by default
    with pytest.raises(SystemExit, match="choose one of: ann, convert, snn"):
        resolve_stage(["fit", "-c", path, "--stage", "finetune"])
    with pytest.raises(SystemExit, match="needs a recipe"):
        resolve_stage(["fit", "--stage", "ann"])
    plain = ["fit", "--model.class_path", "x"]
    assert resolve_stage(plain) == plain


def test_spikingjelly_face_runs_a_recipe(tmp_path, monkeypatch):
    path = next(p for p in RECIPES if recipe_id(p) == "diet_snn/digits_vgg_small")
    monkeypatch.chdir(tmp_path)
    _write_ann_checkpoint(path)
    target = ["--model.init_args.net.init_args.target", "spikingjelly"]
    main(["fit", "-c", str(path), "--stage", "snn", *_overrides(path, "snn"), *target])
