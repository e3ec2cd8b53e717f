"""A YOLO-format view of COCO images, for scoring the same images with Ultralytics' own ``val``."""

from __future__ import annotations

import json
from pathlib import Path


def yolo_dataset(coco_root: Path, ids: list[int], dest: Path) -> Path:
    """A YOLO-format view of the same images: symlinked JPEGs, normalised xywh labels, a data yaml."""
    from yqt.data import COCO80_TO_91

    data = json.loads((coco_root / "annotations" / "instances_val2017.json").read_text())
    images = {im["id"]: im for im in data["images"]}
    to80 = {cat: i for i, cat in enumerate(COCO80_TO_91)}
    (dest / "images" / "val").mkdir(parents=True)
    (dest / "labels" / "val").mkdir(parents=True)
    lines: dict[int, list[str]] = {i: [] for i in ids}
    for ann in data["annotations"]:
        if ann["image_id"] in lines and not ann.get("iscrowd", 0):
            im = images[ann["image_id"]]
            x, y, w, h = ann["bbox"]
            if w <= 0 or h <= 0:
                continue
            cx, cy = (x + w / 2) / im["width"], (y + h / 2) / im["height"]
            lines[ann["image_id"]].append(
                f"{to80[ann['category_id']]} {cx:.6f} {cy:.6f} {w / im['width']:.6f} {h / im['height']:.6f}"
            )
    for i in ids:
        name = images[i]["file_name"]
        (dest / "images" / "val" / name).symlink_to(coco_root / "val2017" / name)
        (dest / "labels" / "val" / name).with_suffix(".txt").write_text("\n".join(lines[i]) + "\n")
    from yqt.models import COCO80_NAMES

    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(COCO80_NAMES))
    yaml = dest / "data.yaml"
    yaml.write_text(f"path: {dest}\ntrain: images/val\nval: images/val\nnames:\n{names}\n")
    return yaml
