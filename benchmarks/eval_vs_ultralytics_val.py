"""yqt eval against Ultralytics' own ``val`` on the same 100 dev images: mAP parity and speed.

Both are whole processes on this CPU, measured in this one run, imports included:
  A. ``yqt eval`` of the exported float baseline ONNX (ORT, CPU provider);
  B. ``YOLO(yolov10n.pt).val(rect=False, batch=1, nms=False)``: PyTorch, the same NMS-free head.
Ultralytics scores with its own matcher on YOLO-format labels (iscrowd boxes dropped), so a small
mAP gap is expected; it is reported, not hidden. Also reported: eval wall time over the sum of its
``session.run`` times.

    python benchmarks/eval_vs_ultralytics_val.py [--images 100]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _common import coco_root_or_exit, export_baseline, timed_process, yolo_dataset, yqt

ULTRALYTICS_VAL = """
import json, sys
from ultralytics import YOLO
m = YOLO(sys.argv[1])
r = m.val(data=sys.argv[2], imgsz=640, batch=1, rect=False, conf=0.001, nms=False, device="cpu",
          plots=False, verbose=False, workers=0)
print(json.dumps({"mAP_50_95": float(r.box.map), "mAP_50": float(r.box.map50)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    args = parser.parse_args()
    coco_root = coco_root_or_exit()

    from yqt.models import embedded_weights

    with tempfile.TemporaryDirectory(prefix="yqt-bench-") as tmp:
        tmp_path = Path(tmp)
        onnx = export_baseline(tmp_path / "runs")
        ids = sorted(
            im["id"] for im in json.loads((coco_root / "annotations/instances_val2017.json").read_text())["images"]
        )
        yaml = yolo_dataset(coco_root, ids[: args.images], tmp_path / "yolo")

        t_yqt, proc = timed_process(
            yqt("eval", str(onnx), "--coco-root", str(coco_root), "--max-images", str(args.images),
                "--providers", "cpu", "--json", "--runs-dir", str(tmp_path / "runs"), "--run", "bench")
        )  # fmt: skip
        doc = json.loads(proc.stdout)
        t_ul, proc_ul = timed_process(
            [sys.executable, "-c", ULTRALYTICS_VAL, str(embedded_weights()), str(yaml)],
            env={"YOLO_OFFLINE": "1"},
        )
        ul = json.loads(proc_ul.stdout.strip().splitlines()[-1])

    t = doc["timing"]
    gap = doc["metrics"]["mAP_50_95"] - ul["mAP_50_95"]
    print(f"images: {doc['num_images']}  (ids sha256 {doc['image_ids_sha256'][:12]})")
    print(
        f"mAP50-95  yqt eval {doc['metrics']['mAP_50_95']:.4f}   ultralytics val {ul['mAP_50_95']:.4f}   gap {gap:+.4f}"
    )
    print(f"mAP50     yqt eval {doc['metrics']['mAP_50']:.4f}   ultralytics val {ul['mAP_50']:.4f}")
    print(f"parity within 0.01: {'yes' if abs(gap) <= 0.01 else 'NO'}")
    print(f"whole process     yqt eval {t_yqt:.1f} s   ultralytics val {t_ul:.1f} s   speed-up {t_ul / t_yqt:.2f}x")
    print(
        f"inside yqt eval   total {t['total_s']:.2f} s  inference loop {t['inference_wall_s']:.2f} s  "
        f"session.run sum {t['session_run_s']:.2f} s  COCOeval {t['cocoeval_s']:.2f} s"
    )
    print(
        f"ratios            loop/run {t['inference_wall_s'] / t['session_run_s']:.3f}   "
        f"total/run {t['total_s'] / t['session_run_s']:.3f}   process/run {t_yqt / t['session_run_s']:.3f}"
    )


if __name__ == "__main__":
    main()
