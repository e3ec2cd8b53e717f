"""The user's own data, end to end: ``yqt pipeline --data`` on coco128-yolo, and class mapping by name
against Ultralytics' mapping by index.

1. ``yqt pipeline --data coco128-yolo/data.yaml --modes w8a16,w8a8 --max-images 100``: calibrates on
   the YAML's train split, scores its val split; prints each model's mAP50-95 and Δ with its CI.
2. The float ONNX on the YAML and on a copy whose class ids and ``names`` are shuffled to match
   (the same dataset, by name): yqt eval and Ultralytics' ``val`` on each.

    python benchmarks/own_data.py [--max-images 100] [--modes w8a16,w8a8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, timed_process, yqt

from tests.custom_classes import permuted_dataset


def yolo_yaml_or_exit() -> Path:
    yaml = Path(os.environ.get("YQT_YOLO_DATA") or REPO.parent / "shared" / "data" / "coco128-yolo" / "data.yaml")
    if not yaml.is_file():
        print(f"SKIP: shared YOLO data absent at {yaml} (set YQT_YOLO_DATA)")
        sys.exit(0)
    return yaml


def pipeline(yaml: Path, runs: Path, modes: str, max_images: int) -> dict:
    wall, proc = timed_process(yqt(
        "pipeline", "--data", str(yaml), "--modes", modes, "--max-images", str(max_images), "--providers", "cpu",
        "--runs-dir", str(runs), "--run", "own", "--json",
    ))  # fmt: skip
    doc = json.loads(proc.stdout)
    print(f"pipeline: {wall:.0f} s; {doc['data']}")
    for row in doc["compare"]["rows"]:
        m = row["metrics"]["mAP_50_95"]
        ci = m.get("ci95_pt")
        delta = "" if row["is_baseline"] else f"  Δ {m['delta_pt']:+.2f} pt"
        delta += f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci and not row["is_baseline"] else ""
        print(f"  {row['name']:<32} mAP50-95 {m['value']:.4f}{delta}")
    return doc


def by_name_and_by_index(yaml: Path, onnx: Path, tmp: Path) -> None:
    from yqt.evaluate import evaluate
    from yqt.models import import_ultralytics_keeping_torch_threads, quiet_ultralytics
    from yqt.records import EvalConfig

    quiet_ultralytics()
    yolo = import_ultralytics_keeping_torch_threads()
    permuted = permuted_dataset(yaml, tmp / "permuted")
    print(f"{'dataset':<30} {'yqt eval':>9} {'yolo val':>9}")
    for label, data in (("coco128-yolo val2017", yaml), ("the same, classes shuffled", permuted)):
        ours = evaluate(EvalConfig(onnx=onnx, data=data, providers=("cpu",))).metrics.mAP_50_95
        theirs = yolo(str(onnx), task="detect").val(
            data=str(data), imgsz=640, batch=1, rect=False, conf=0.001, iou=0.7, device="cpu", plots=False,
            verbose=False, workers=0, project=str(tmp / "ultralytics"), name=label.replace(" ", "-"),
        ).box.map  # fmt: skip
        print(f"{label:<30} {ours:>9.4f} {float(theirs):>9.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="w8a16,w8a8")
    parser.add_argument("--max-images", type=int, default=100)
    args = parser.parse_args()
    yaml = yolo_yaml_or_exit()
    with tempfile.TemporaryDirectory(prefix="yqt-bench-own-data-") as tmp:
        doc = pipeline(yaml, Path(tmp) / "runs", args.modes, args.max_images)
        onnx = Path(tmp) / "runs" / "own" / "onnx"
        by_name_and_by_index(yaml, next(onnx.glob("*-baseline-fp32.onnx")), Path(tmp))
        assert doc["passed"], "a pipeline step failed"


if __name__ == "__main__":
    main()
