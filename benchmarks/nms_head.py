"""The NMS head against the end-to-end head of one yolov10n, both exported by Ultralytics itself.

Measured in one run, as whole processes on this CPU (imports included):
  A. ``yolo val`` (Ultralytics, its torch NMS) on the NMS-head file: the reference mAP;
  B. ``yqt eval`` of the NMS-head file (yqt's NumPy decode+NMS) and of the end-to-end file, in
     alternating rounds; the fastest and the median whole-process time of each, and their ratios.
     The issue's bar: decode+NMS adds at most 10% to eval's whole-process time over the end-to-end
     model. On a shared machine the fastest round is the one least disturbed by other work, so its
     ratio is the primary number; yqt's own ``timing.nms_s`` says what the NMS itself took.

    python benchmarks/nms_head.py [--images 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from _common import coco_root_or_exit, timed_process, yolo_dataset, yqt

EXPORT = """
import sys
from ultralytics import YOLO
print(YOLO(sys.argv[1]).export(format="onnx", imgsz=640, device="cpu", end2end=sys.argv[2] == "1"))
"""

ULTRALYTICS_VAL = """
import json, sys
from ultralytics import YOLO
r = YOLO(sys.argv[1], task="detect").val(data=sys.argv[2], imgsz=640, batch=1, rect=False, conf=0.001, iou=0.7,
                                         device="cpu", plots=False, verbose=False, workers=0, project=sys.argv[3])
print(json.dumps({"mAP_50_95": float(r.box.map), "mAP_50": float(r.box.map50)}))
"""


def ultralytics_export(weights: Path, end2end: bool, dest: Path) -> Path:
    """Ultralytics' exporter writes next to the weights: export from a copy, then move the file."""
    _, proc = timed_process([sys.executable, "-c", EXPORT, str(weights), "1" if end2end else "0"],
                            env={"YOLO_OFFLINE": "1"})  # fmt: skip
    made = Path(proc.stdout.strip().splitlines()[-1])
    return Path(shutil.move(made, dest))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    coco_root = coco_root_or_exit()

    from yqt.models import embedded_weights

    with tempfile.TemporaryDirectory(prefix="yqt-bench-nms-") as tmp:
        tmp_path = Path(tmp)
        weights = Path(shutil.copyfile(embedded_weights(), tmp_path / "yolov10n.pt"))
        files = {
            "nms": ultralytics_export(weights, False, tmp_path / "yolov10n-ultralytics-nms.onnx"),
            "end2end": ultralytics_export(weights, True, tmp_path / "yolov10n-ultralytics-end2end.onnx"),
        }
        ids = sorted(
            im["id"] for im in json.loads((coco_root / "annotations/instances_val2017.json").read_text())["images"]
        )
        data = yolo_dataset(coco_root, ids[: args.images], tmp_path / "yolo")
        _, proc = timed_process(
            [sys.executable, "-c", ULTRALYTICS_VAL, str(files["nms"]), str(data), str(tmp_path / "ul")],
            env={"YOLO_OFFLINE": "1"},
        )
        ultralytics = json.loads(proc.stdout.strip().splitlines()[-1])

        times: dict[str, list[float]] = {head: [] for head in files}
        docs: dict[str, dict] = {}
        for _ in range(args.rounds):
            for head, onnx in files.items():
                elapsed, proc = timed_process(
                    yqt("eval", str(onnx), "--coco-root", str(coco_root), "--max-images", str(args.images),
                        "--providers", "cpu", "--json", "--runs-dir", str(tmp_path / "runs"))
                )  # fmt: skip
                times[head].append(elapsed)
                docs[head] = json.loads(proc.stdout)

    nms_map = docs["nms"]["metrics"]["mAP_50_95"]
    print(f"images: {docs['nms']['num_images']}  (ids sha256 {docs['nms']['image_ids_sha256'][:12]})")
    print(f"mAP50-95  NMS head:  yqt eval {nms_map:.4f}   yolo val {ultralytics['mAP_50_95']:.4f}   "
          f"gap {nms_map - ultralytics['mAP_50_95']:+.4f}")  # fmt: skip
    print(f"mAP50-95  end-to-end head: yqt eval {docs['end2end']['metrics']['mAP_50_95']:.4f}")
    fastest = {head: min(t) for head, t in times.items()}
    median = {head: statistics.median(t) for head, t in times.items()}
    for head in files:
        t = docs[head]["timing"]
        print(
            f"{head:8s} whole process fastest {fastest[head]:.2f} s, median {median[head]:.2f} s of "
            f"{[round(x, 2) for x in times[head]]}; last run inside: session.run {t['session_run_s']:.2f} s, "
            f"NMS {t['nms_s']:.2f} s, COCOeval {t['cocoeval_s']:.2f} s"
        )
    for label, stat in (("fastest", fastest), ("median", median)):
        ratio = stat["nms"] / stat["end2end"]
        print(f"whole-process ratio NMS head / end-to-end ({label}): {ratio:.3f} ({(ratio - 1) * 100:+.1f}%; bar +10%)")
    nms_s = docs["nms"]["timing"]["nms_s"]
    print(f"decode+NMS alone: {nms_s:.2f} s = {nms_s / fastest['end2end'] * 100:.1f}% of the end-to-end process")


if __name__ == "__main__":
    main()
