"""Paired bootstrap speed: 1,000 resamples of the first 100 dev images, float baseline vs W8A16.

Times the whole ``compare`` call (per-image matching once per evaluation, then re-accumulation for
every resample) against the target of 10 s, and one pycocotools ``evaluate+accumulate`` as the
reference cost a naive bootstrap would pay per resample.

    python benchmarks/compare_bootstrap.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from _common import coco_root_or_exit, export_baseline, timed_process, yqt


def main() -> None:
    coco = coco_root_or_exit()
    with tempfile.TemporaryDirectory(prefix="yqt-cbench-") as tmp:
        runs = Path(tmp) / "runs"
        onnx = export_baseline(runs)
        timed_process(yqt("quantize", "--runs-dir", str(runs), "--run", "bench", "--providers", "cpu", "--json"))
        for model in (onnx, onnx.with_name("yolov10n-w8a16-qcdq-ptq.onnx")):
            timed_process(
                yqt("eval", str(model), "--coco-root", str(coco), "--max-images", "100", "--providers", "cpu",
                    "--json", "--runs-dir", str(runs), "--run", "bench")
            )  # fmt: skip
        from yqt.compare import compare, load_metrics
        from yqt.data import load_coco
        from yqt.evaluate import run_cocoeval
        from yqt.records import CompareConfig

        t0 = time.perf_counter()
        result = compare(CompareConfig(inputs=(str(runs / "bench"),), bootstrap=1000, seed=0))
        elapsed = time.perf_counter() - t0
        base = load_metrics(runs / "bench" / "yolov10n-baseline-fp32-coco" / "metrics.json")
        dets = json.loads(Path(base.doc["detections_path"]).read_text())
        coco_gt = load_coco(Path(base.doc["annotations_path"]))
        t1 = time.perf_counter()
        run_cocoeval(coco_gt, dets, base.doc["image_ids"])
        one_full = time.perf_counter() - t1
    row = next(r for r in result.rows if not r.is_baseline)
    d = row.metrics["mAP_50_95"]
    print(f"compare with 1000 resamples x 100 images: {elapsed:.2f} s (target <= 10 s)")
    print(f"one pycocotools evaluate+accumulate: {one_full:.2f} s -> naive 1000 x 2 runs ~ {2000 * one_full:.0f} s")
    print(f"speed-up vs naive: {2000 * one_full / elapsed:.0f}x")
    print(f"dMAP50-95 {d.delta_pt:+.2f} pt, 95% CI [{d.ci95_pt[0]:+.2f}, {d.ci95_pt[1]:+.2f}]")


if __name__ == "__main__":
    sys.exit(main())
