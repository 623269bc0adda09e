"""Tiny datasets written in the real on-disk formats: CIFAR pickles and an ImageNet-style ImageFolder."""

import pickle
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["n01440764", "n01443537", "n01484850"]
# The first validation image of the first class: a solid red PNG (exact colors after resize / crop).
RED = (255, 0, 0)


def write_fake_cifar(root: Path, num_classes: int = 10, per_batch: int = 4) -> Path:
    """CIFAR-10 (5 training batches + test batch + meta) or CIFAR-100 (train + test + meta) pickles."""
    rng = np.random.default_rng(0)
    ten = num_classes == 10
    folder = root / ("cifar-10-batches-py" if ten else "cifar-100-python")
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if ten else ["train", "test"]
    for name in names:
        entry = {
            "batch_label": name,
            "labels" if ten else "fine_labels": rng.integers(0, num_classes, per_batch).tolist(),
            "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            "filenames": [f"{name}_{i}.png" for i in range(per_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(entry))
    if ten:
        meta = {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_batch, "num_vis": 3072}
        (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    else:
        meta = {"fine_label_names": [f"class{i}" for i in range(100)], "coarse_label_names": ["all"]}
        (folder / "meta").write_bytes(pickle.dumps(meta))
    return folder


def write_image(path: Path, rgb: tuple[int, int, int], rng: np.random.Generator, noise: int = 40) -> None:
    pixels = np.clip(np.array(rgb) + rng.integers(-noise, noise + 1, (30, 40, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def write_fake_imagenet(root: Path) -> Path:
    """3 classes x (4 train + 2 val) images of 40x30 pixels, .jpg / .JPEG / .png, plus a non-image file."""
    rng = np.random.default_rng(0)
    colors = [(200, 60, 60), (60, 200, 60), (60, 60, 200)]
    for name, color in zip(CLASSES, colors, strict=True):
        train, val = root / "train" / name, root / "val" / name
        train.mkdir(parents=True)
        val.mkdir(parents=True)
        for i, suffix in enumerate([".jpg", ".JPEG", ".png", ".jpeg"]):
            write_image(train / f"{name}_{i}{suffix}", color, rng)
        write_image(val / "a.png", color, rng)
        write_image(val / "b.JPEG", color, rng)
        (train / "notes.txt").write_text("not an image")
    Image.new("RGB", (40, 30), RED).save(root / "val" / CLASSES[0] / "a.png")
    return root
