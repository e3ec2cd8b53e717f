"""Ultralytics dataset YAMLs (YOLO-format labels) as COCO ground truth, built in memory.

The YAML keeps Ultralytics' meaning of every key: ``path`` (the dataset root), ``train``/``val``/
``test`` (a folder searched recursively for images, a ``.txt`` list of image paths, or a list of
either), ``names`` (a list or a 0-based dict) and ``nc``. A label file is found by Ultralytics' rule:
the last ``/images/`` of the image path becomes ``/labels/`` and the suffix ``.txt``. An image
without one has no objects. A polygon line (``class x1 y1 x2 y2 ...``) gives the box around it.

Two choices differ from Ultralytics, both so that a dataset means the same on any machine:
- a relative ``path`` (and a YAML without one) resolves against the YAML's own folder, not
  Ultralytics' global datasets folder;
- relative lines of a ``.txt`` image list resolve against the list's folder.

Image ids: an image whose stem is a number (COCO's ``000000000139.jpg``) keeps it as its id, so COCO
images keep their COCO ids; otherwise every id is a hash of the path relative to the root. Both are
the same on every machine, so compare's pairing and ``--image-ids-list`` keep working.

Nothing here imports torch or Ultralytics.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yqt.errors import YqtError
from yqt.filetypes import IMAGE_SUFFIXES
from yqt.runs import sha256_file

SPLITS = ("train", "val", "test")
# Normalised coordinates may overshoot [0, 1] by this much (float rounding in labelling tools).
COORD_TOLERANCE = 1e-3
_MAX_ID = (1 << 52) - 1  # hashed ids stay exact in JSON readers that hold numbers as doubles


@dataclass(frozen=True)
class DatasetYaml:
    """A parsed dataset YAML: where it is, what it names, and its splits as written."""

    yaml_path: Path
    yaml_sha256: str
    root: Path
    names: tuple[str, ...]
    splits: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class LabelIssue:
    label_file: Path
    line: int
    problem: str

    def where(self) -> str:
        return f"{self.label_file}:{self.line}"


@dataclass(frozen=True)
class YoloGroundTruth:
    """One split's images and boxes as a COCO dataset dict, with everything needed to trace it."""

    dataset: DatasetYaml
    split: str
    coco_json: dict[str, Any]
    paths: dict[int, Path]  # image id → image file
    order: tuple[int, ...]  # image ids in file-name order: what --max-images takes from
    labels_sha256: str
    skipped: tuple[LabelIssue, ...]  # first problem of each image left out by --skip-bad-labels
    duplicate_rows: int


def _fail_not_dataset(path: Path, why: str) -> YqtError:
    return YqtError(
        f"--data {path} is not an Ultralytics dataset YAML: {why}",
        "pass a data.yaml with names: and val: (and train: for calibration), as Ultralytics trains on",
    )


def load_dataset_yaml(path: Path) -> DatasetYaml:
    """Parse and check ``data.yaml``; the root is resolved, but no split is listed yet."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise YqtError(f"--data file not found: {path}", "pass the dataset's data.yaml")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _fail_not_dataset(path, f"it does not parse ({first})") from None
    if not isinstance(doc, dict):
        raise _fail_not_dataset(path, "it is not a mapping of keys")
    if not any(k in doc for k in SPLITS):
        raise _fail_not_dataset(path, "it has none of train:, val:, test:")
    if "names" not in doc and "nc" not in doc:
        raise _fail_not_dataset(path, "it has neither names: nor nc:")
    names = _names(path, doc)
    root = _root(path, doc.get("path"))
    splits: dict[str, tuple[str, ...]] = {}
    for split in SPLITS:
        value = doc.get(split)
        if value is None:
            continue
        entries = value if isinstance(value, list) else [value]
        if not entries or not all(isinstance(e, str) and e.strip() for e in entries):
            raise _fail_not_dataset(path, f"{split}: must be a folder, a .txt list of images, or a list of them")
        splits[split] = tuple(entries)
    return DatasetYaml(yaml_path=_absolute(path), yaml_sha256=sha256_file(path), root=root, names=names, splits=splits)


def _names(path: Path, doc: dict[str, Any]) -> tuple[str, ...]:
    raw = doc.get("names")
    nc = doc.get("nc")
    if nc is not None and (not isinstance(nc, int) or isinstance(nc, bool) or nc < 1):
        raise _fail_not_dataset(path, f"nc: {nc!r} is not a positive whole number")
    if raw is None:
        names = tuple(f"class{i}" for i in range(nc))  # Ultralytics' own names for a YAML without them
    elif isinstance(raw, dict):
        try:
            keyed = {int(k): str(v) for k, v in raw.items()}
        except (TypeError, ValueError):
            raise _fail_not_dataset(path, "names: keys must be class ids 0, 1, 2, ...") from None
        if sorted(keyed) != list(range(len(keyed))):
            raise _fail_not_dataset(path, f"names: keys must be 0..{len(keyed) - 1} without gaps")
        names = tuple(keyed[i] for i in range(len(keyed)))
    elif isinstance(raw, list) and all(isinstance(n, str | int | float) for n in raw):
        names = tuple(str(n) for n in raw)
    else:
        raise _fail_not_dataset(path, "names: must be a list or a mapping of class id to name")
    if not names:
        raise _fail_not_dataset(path, "names: is empty")
    if nc is not None and nc != len(names):
        raise YqtError(
            f"--data {path}: nc: {nc} but names: lists {len(names)} classes",
            "make nc: equal the number of names, or drop nc:",
        )
    return names


def _root(path: Path, value: Any) -> Path:
    if value is None:
        return _absolute(path).parent
    root = Path(os.path.expanduser(str(value)))
    return _absolute(root if root.is_absolute() else _absolute(path).parent / root)


def _absolute(path: Path) -> Path:
    """Absolute and normalised, but symbolic links kept: labels are found beside the image's own path
    (a dataset of linked images has labels of its own), as Ultralytics finds them."""
    return Path(os.path.abspath(path))


def split_images(ds: DatasetYaml, split: str) -> list[Path]:
    """Every image of a split, in file-name order (then path, for equal names in two folders)."""
    if split not in SPLITS:
        raise YqtError(f"unknown --split {split!r}", "use val, train or test")
    entries = ds.splits.get(split)
    if entries is None:
        present = ", ".join(ds.splits) or "none"
        raise YqtError(
            f"--data {ds.yaml_path.name} has no {split}: split (it has {present})",
            f"add {split}: to the YAML, or pass --split with one of its splits",
        )
    images: set[Path] = set()
    for entry in entries:
        images.update(_entry_images(ds, split, entry))
    if not images:
        raise YqtError(
            f"the {split} split of {ds.yaml_path.name} has no images ({', '.join(entries)} under {ds.root})",
            f"put {'/'.join(IMAGE_SUFFIXES)} files there, or point {split}: at the folder that has them",
        )
    return sorted(images, key=lambda p: (p.name, str(p)))


def _entry_images(ds: DatasetYaml, split: str, entry: str) -> list[Path]:
    target = Path(os.path.expanduser(entry))
    target = target if target.is_absolute() else ds.root / target
    if target.is_dir():
        return [_absolute(p) for p in target.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if target.suffix == ".txt" and target.is_file():
        listed = []
        for line in target.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                image = Path(os.path.expanduser(line))
                listed.append(_absolute(image if image.is_absolute() else target.parent / image))
        missing = [p for p in listed if not p.is_file()]
        if missing:
            raise YqtError(
                f"{len(missing)} image(s) listed in {target} are missing, e.g. {missing[0]}",
                "fix the list, or remove those lines",
            )
        return listed
    raise YqtError(
        f"the {split} split of {ds.yaml_path.name} is missing: {target} is not a folder or a .txt list",
        f"check path: and {split}: in {ds.yaml_path}, resolved against {ds.root}",
    )


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last ``/images/`` becomes ``/labels/``, the suffix ``.txt``."""
    text = str(image)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sa in text:
        head, tail = text.rsplit(sa, 1)
        text = head + sb + tail
    return Path(text).with_suffix(".txt")


def parse_label_file(path: Path, nc: int) -> tuple[list[tuple[int, float, float, float, float]], list[LabelIssue]]:
    """The boxes (class, x1, y1, x2, y2 normalised) of one label file, and every malformed line."""
    rows: list[tuple[int, float, float, float, float]] = []
    issues: list[LabelIssue] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return [], [LabelIssue(path, 1, "not a text file")]
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        row, problem = _parse_row(fields, nc)
        if problem is not None:
            issues.append(LabelIssue(path, lineno, problem))
        elif row is not None:
            rows.append(row)
    return rows, issues


def _parse_row(fields: list[str], nc: int) -> tuple[tuple[int, float, float, float, float] | None, str | None]:
    n = len(fields)
    if n != 5 and (n < 7 or n % 2 == 0):
        return None, f"{n} fields, expected 5 (class cx cy w h) or a polygon (class x1 y1 x2 y2 x3 y3 ...)"
    try:
        cls_value = float(fields[0])
        values = [float(v) for v in fields[1:]]
    except ValueError:
        return None, "a field is not a number"
    if not cls_value.is_integer() or cls_value < 0:
        return None, f"class {fields[0]} is not a class id (0, 1, 2, ...)"
    cls = int(cls_value)
    if cls >= nc:
        return None, f"class {cls} is not below nc={nc} (the YAML names {nc} classes)"
    if any(math.isnan(v) or math.isinf(v) for v in values):
        return None, "a coordinate is NaN or infinite"
    if any(v < -COORD_TOLERANCE or v > 1 + COORD_TOLERANCE for v in values):
        return None, "a coordinate lies outside [0, 1]: labels must be normalised by the image size"
    if n == 5:
        cx, cy, w, h = values
        x1, y1, x2, y2 = cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
    else:
        xs, ys = values[0::2], values[1::2]
        x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
    x1, y1, x2, y2 = (min(max(v, 0.0), 1.0) for v in (x1, y1, x2, y2))
    if x2 <= x1 or y2 <= y1:
        return None, "the box has zero width or height"
    return (cls, x1, y1, x2, y2), None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as cv2 decodes the image: EXIF orientation applied, as eval reads it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except (UnidentifiedImageError, OSError):
        raise YqtError(f"image cannot be read: {path}", "replace the file, or remove it from the split") from None
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def image_ids_for(images: Sequence[Path], root: Path) -> list[int]:
    """Stable ids: numeric stems where every stem is a distinct number, else hashes of the relative paths."""
    stems = [p.stem for p in images]
    if all(s.isdigit() for s in stems):
        ids = [int(s) for s in stems]
        if len(set(ids)) == len(ids) and all(0 < i <= _MAX_ID for i in ids):
            return ids
    ids = [int(hashlib.sha256(_relative(p, root).encode()).hexdigest()[:13], 16) & _MAX_ID or 1 for p in images]
    if len(set(ids)) != len(ids):  # 52-bit hashes of distinct paths: not expected below billions of images
        raise YqtError("two images of the split hash to the same id", "rename one of them")
    return ids


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def build_ground_truth(ds: DatasetYaml, split: str, skip_bad_labels: bool = False) -> YoloGroundTruth:
    """The split as a COCO dataset dict, or a one-line error naming the first bad label line."""
    images = split_images(ds, split)
    ids = image_ids_for(images, ds.root)
    nc = len(ds.names)
    coco_images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    bad: list[list[LabelIssue]] = []
    label_digest = hashlib.sha256()
    duplicates = 0
    paths: dict[int, Path] = {}
    order: list[int] = []
    for image, image_id in zip(images, ids, strict=True):
        label = label_path(image)
        rows, issues = parse_label_file(label, nc) if label.is_file() else ([], [])
        label_digest.update(f"{_relative(label, ds.root)}\0{sha256_file(label) if label.is_file() else '-'}\n".encode())
        if issues:
            bad.append(issues)
            continue
        unique = list(dict.fromkeys(rows))  # Ultralytics drops repeated rows too
        duplicates += len(rows) - len(unique)
        width, height = image_size(image)
        coco_images.append({"id": image_id, "file_name": _relative(image, ds.root), "width": width, "height": height})
        for cls, x1, y1, x2, y2 in unique:
            w, h = (x2 - x1) * width, (y2 - y1) * height
            annotations.append({
                "id": len(annotations) + 1,  # pycocotools treats id 0 as "unmatched": ids start at 1
                "image_id": image_id, "category_id": cls, "bbox": [x1 * width, y1 * height, w, h],
                "area": w * h, "iscrowd": 0,
            })  # fmt: skip
        paths[image_id] = image
        order.append(image_id)
    if bad and not skip_bad_labels:
        first = bad[0][0]
        raise YqtError(
            f"{first.where()}: {first.problem} ({len(bad)} label file(s) of the {split} split are malformed)",
            "fix those lines, or pass --skip-bad-labels to leave their images out of the score",
        )
    if not order:
        raise YqtError(
            f"every image of the {split} split of {ds.yaml_path.name} has malformed labels",
            "fix the label files; --skip-bad-labels leaves nothing to score",
        )
    categories = [{"id": i, "name": name} for i, name in enumerate(ds.names)]
    coco_json = {
        "info": {"description": f"{ds.yaml_path} split {split}, built by yqt from YOLO labels"},
        "images": coco_images, "annotations": annotations, "categories": categories,
    }  # fmt: skip
    return YoloGroundTruth(
        dataset=ds, split=split, coco_json=coco_json, paths=paths, order=tuple(order),
        labels_sha256=label_digest.hexdigest(), skipped=tuple(issues[0] for issues in bad),
        duplicate_rows=duplicates,
    )  # fmt: skip


def ground_truth_bytes(truth: YoloGroundTruth) -> bytes:
    """The ground truth as the COCO JSON eval writes beside its metrics (compare re-scores against it)."""
    return json.dumps(truth.coco_json, separators=(",", ":"), sort_keys=True).encode()


def coco_from_json(doc: dict[str, Any]) -> Any:
    """pycocotools' COCO index over an in-memory dataset dict, quietly."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = json.loads(json.dumps(doc))  # pycocotools owns its copy
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco
