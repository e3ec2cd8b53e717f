"""Calibration images: which ones, traced by content, preprocessed exactly like eval.

The set is the first N image files of a folder in name order, so a rerun picks the same images. Each
file's sha256 is recorded, in the run and in the ONNX metadata, so ``yqt eval`` can refuse to score
a model on images it was calibrated on.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from yqt.data import letterbox, read_image
from yqt.errors import YqtError
from yqt.filetypes import IMAGE_SUFFIXES
from yqt.quant.modes import QuantMode
from yqt.records import CalibrationImage, CalibrationSet
from yqt.runs import sha256_file

CALIB_SUBDIR = "train2017"
ACTIVATION_IMAGES = 64  # percentile ranges of uint8 activations settle well before this
# GPTQ's images: on 126 held-out images (benchmarks/gptq_calibration.py), 4.5-bit w4a16 scored
# 94.0/94.6/95.2/95.1% of float with 64/128/256/337 images and 5.0-bit 96.4/96.5/96.4/94.4%: past 128
# no gain beyond one run's spread, for twice the GPTQ time and more images than train2017 holds here.
GPTQ_IMAGES = 128


def resolve_calib_dir(calib_dir: Path | None, coco_root: Path | None, needed_by: str) -> Path:
    """``--calib-dir``, else ``<coco-root>/train2017``, else a one-line error saying what to pass."""
    if calib_dir is not None:
        folder = Path(calib_dir)
        if not folder.is_dir():
            raise YqtError(f"--calib-dir not found: {folder}", "pass a folder of real images, e.g. <coco>/train2017")
        return folder
    if coco_root is not None:
        folder = Path(coco_root) / CALIB_SUBDIR
        if not folder.is_dir():
            raise YqtError(
                f"--coco-root {coco_root} has no {CALIB_SUBDIR}/ to calibrate on",
                "pass --calib-dir DIR with real images that are not in the eval set",
            )
        return folder
    raise YqtError(
        f"{needed_by} needs calibration images",
        "pass --coco-root DIR (calibrates on DIR/train2017), --data FILE.yaml (its train split) or --calib-dir DIR",
    )


def check_data_source(data: Path | None, coco_root: Path | None, split: str) -> None:
    """One dataset at a time: ``--data`` (a YAML) or ``--coco-root``, and a split the YAML can have."""
    from yqt.yolo_data import SPLITS

    if data is not None and coco_root is not None:
        raise YqtError(
            "--data and --coco-root both name the dataset",
            "pass --data FILE.yaml for a YOLO-format dataset, or --coco-root DIR for a COCO one",
        )
    if split not in SPLITS:
        raise YqtError(f"unknown --split {split!r}", "use train, val or test")


def check_count(count: int) -> None:
    if count < 1:
        raise YqtError(
            f"--calib-images must be at least 1, got {count}",
            f"drop --calib-images for the default ({GPTQ_IMAGES} with GPTQ, {ACTIVATION_IMAGES} otherwise)",
        )


def default_count(mode: QuantMode, gptq: bool) -> int:
    """``--calib-images`` when it is not given: more for GPTQ (4-bit weights), which gains from them."""
    return GPTQ_IMAGES if mode.low_bit and gptq else ACTIVATION_IMAGES


def resolve_count(count: int | None, mode: QuantMode, gptq: bool) -> int:
    count = default_count(mode, gptq) if count is None else count
    check_count(count)
    return count


def folder_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, in name order."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def select_calibration(folder: Path, count: int) -> tuple[CalibrationSet, tuple[str, ...]]:
    """The first ``count`` images of ``folder`` in name order, hashed. Returns the set and warnings."""
    files = folder_images(folder)
    if not files:
        check_count(count)
        raise YqtError(
            f"no images in --calib-dir {folder}",
            f"pass a folder holding {'/'.join(IMAGE_SUFFIXES)} files, e.g. <coco>/train2017",
        )
    return select_calibration_files(files, Path(folder), count, str(folder))


def select_dataset_calibration(data: Path, split: str, count: int) -> tuple[CalibrationSet, tuple[str, ...]]:
    """The first ``count`` images of a dataset YAML's split (train by default) in file-name order."""
    from yqt.yolo_data import load_dataset_yaml, split_images

    dataset = load_dataset_yaml(data)
    files = split_images(dataset, split)
    return select_calibration_files(files, dataset.root, count, f"the {split} split of {Path(data).name}")


def select_calibration_files(
    files: list[Path], root: Path, count: int, where: str
) -> tuple[CalibrationSet, tuple[str, ...]]:
    """The first ``count`` of ``files`` (already in order), hashed; names are relative to ``root``."""
    check_count(count)
    warnings: tuple[str, ...] = ()
    if len(files) < count:
        warnings = (f"--calib-images {count} exceeds the {len(files)} images in {where}; using all of them",)
    chosen = files[:count]
    for path in chosen:
        read_image(path)  # an undecodable image fails now, with its name, not halfway through GPTQ
    root = Path(os.path.abspath(root))  # links kept: a dataset of linked images names them by its own paths
    images = tuple(CalibrationImage(name=_name_under(p, root), sha256=sha256_file(p)) for p in chosen)
    return CalibrationSet(folder=root, requested=count, images=images, sha256=_set_hash(images)), warnings


def _name_under(path: Path, root: Path) -> str:
    try:
        return Path(os.path.abspath(path)).relative_to(root).as_posix()
    except ValueError:
        return os.path.abspath(path)  # outside the root (an absolute path in a .txt list): kept whole


def _set_hash(images: tuple[CalibrationImage, ...]) -> str:
    return hashlib.sha256(",".join(sorted(i.sha256 for i in images)).encode()).hexdigest()


def calibration_arrays(calib: CalibrationSet, imgsz: int) -> Iterator[np.ndarray]:
    """Each calibration image letterboxed as eval does it: 1x3xSxS float32 RGB in [0, 1]."""
    for image in calib.images:
        yield letterbox(read_image(calib.folder / image.name), imgsz)[0]


def torch_batches(calib: CalibrationSet, imgsz: int, device: str = "cpu") -> list[Any]:
    """The calibration images as torch tensors, held in memory: GPTQ passes over them once per layer."""
    import torch

    return [torch.from_numpy(x).to(device) for x in calibration_arrays(calib, imgsz)]


def first_images(calib: CalibrationSet, count: int) -> CalibrationSet:
    """The first ``count`` images of a set, as a set of their own (hash recomputed)."""
    images = calib.images[:count]
    return CalibrationSet(folder=calib.folder, requested=count, images=images, sha256=_set_hash(images))
