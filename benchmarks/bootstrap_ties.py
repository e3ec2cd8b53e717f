"""How far compare.py's weighted bootstrap is from pycocotools when one image's detections tie.

On a resample that draws an image c times, pycocotools (the resample made physical: c copies under
new ids) interleaves the copies of two same-score, same-class detections of that image (a1 a2 a1 a2);
the weights count each in place (a1 a1 a2 a2). This script measures the difference that makes on a
real w8a8 model: export, quantize w8a8 (64 train2017 calibration images), score the first 100 dev
ids, then for every resample of seeds 0..S-1 compare the weighted mAP with pycocotools' on the
physical resample. It prints the worst |Δ| of mAP50-95 and mAP50: the bound in compare.py's docstring
and in tests/integration/test_compare.py.

    python benchmarks/bootstrap_ties.py [--seeds 10] [--resamples 10] [--metrics RUN/NAME-coco/metrics.json]

``--metrics`` measures an existing w8a8 evaluation (the test suite's, say) instead of making one.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import coco_root_or_exit, export_baseline, timed_process, yqt


def worst_differences(metrics_json: Path, seeds: int, resamples: int) -> tuple[float, float, int]:
    """(worst |Δ mAP50-95|, worst |Δ mAP50|, resamples checked) between weights and physical copies."""
    from tests.unit.test_bootstrap_resample import pycocotools_on_physical_resample
    from yqt.compare import _map_pair, bootstrap_weights, load_metrics, per_image_matches

    ev = load_metrics(metrics_json)
    matches = per_image_matches(ev)
    dataset = json.loads(Path(ev.doc["annotations_path"]).read_text())
    detections = json.loads(metrics_json.with_name("detections.json").read_text())
    image_ids = list(ev.doc["image_ids"])
    worst_5095 = worst_50 = 0.0
    checked = 0
    for seed in range(seeds):
        for counts in bootstrap_weights(len(image_ids), resamples, seed):
            maps = _map_pair(matches, counts[None, :])
            want_5095, want_50 = pycocotools_on_physical_resample(dataset, detections, image_ids, counts)
            worst_5095 = max(worst_5095, abs(float(maps["mAP_50_95"][0]) - want_5095))
            worst_50 = max(worst_50, abs(float(maps["mAP_50"][0]) - want_50))
            checked += 1
    return worst_5095, worst_50, checked


def within_image_ties(detections: list[dict]) -> int:
    """Detections sharing image, class and score with another: the only source of the difference."""
    counts = Counter((d["image_id"], d["category_id"], d["score"]) for d in detections)
    return sum(n for n in counts.values() if n > 1)


def w8a8_evaluation(runs: Path, coco: Path) -> Path:
    """Export, quantize w8a8 (default calibration) and score the first 100 dev ids; its metrics.json."""
    export_baseline(runs)
    common = ("--runs-dir", str(runs), "--run", "bench", "--providers", "cpu", "--json")
    timed_process(yqt("quantize", "--mode", "w8a8", "--coco-root", str(coco), "--device", "cpu", *common))
    onnx = runs / "bench" / "onnx" / "yolov10n-w8a8-qcdq-ptq.onnx"
    _, proc = timed_process(yqt("eval", str(onnx), "--coco-root", str(coco), "--max-images", "100", *common))
    return Path(json.loads(proc.stdout)["metrics_path"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--resamples", type=int, default=10, help="resamples per seed")
    parser.add_argument("--metrics", type=Path, help="an existing w8a8 metrics.json to measure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="yqt-ties-") as tmp:
        metrics = args.metrics or w8a8_evaluation(Path(tmp) / "runs", coco_root_or_exit())
        dets = json.loads(metrics.with_name("detections.json").read_text())
        n_ids = len(json.loads(metrics.read_text())["image_ids"])
        worst_5095, worst_50, checked = worst_differences(metrics, args.seeds, args.resamples)
    ties = within_image_ties(dets)
    print(f"{metrics.parent.name}, {n_ids} ids: {len(dets)} detections, {ties} in within-image ties")
    print(f"{checked} resamples (seeds 0..{args.seeds - 1}, {args.resamples} each), weighted vs physical pycocotools:")
    print(f"  worst |d mAP50-95| {worst_5095:.2e}   worst |d mAP50| {worst_50:.2e}")


if __name__ == "__main__":
    sys.exit(main())
