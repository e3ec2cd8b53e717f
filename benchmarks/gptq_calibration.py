"""How many calibration images GPTQ should get: 4-bit mAP against the calibration count, scored on
images calibration never sees, then the spread over calibration orders at the chosen default.

The pool is every calibration image on this machine: coco2017-mini/train2017 (209) then the
coco128-yolo train2017 images that are not among them, in that order (a folder of links, in name
order). For ``--targets`` (4.5 and 5.0 bits) and ``--counts`` (64, 128, 256 and all), w4a16 is
quantized on the first N images of the pool with one sensitivity sweep per run, and scored on
coco128-yolo's val split (126 val2017 images that are not the dev set). The default count is chosen
from this table, not from the dev set.

Then, at ``--default`` images and 4.5 bits, ``--orders`` calibration orders (order 0: the pool's
own; order k: the pool shuffled with seed k) each scored on the dev set's first ``--max-images`` ids
(100; 0 for all 128), and their mean against float.

    python benchmarks/gptq_calibration.py [--targets 4.5,5.0] [--counts 64,128,256,all] [--default 128]
                                          [--orders 3] [--max-images 100] [--skip-table] [--skip-orders]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import coco_root_or_exit, cpu_quantize_config, ort_eval

YOLO_YAML = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco128-yolo" / "data.yaml"


def calibration_pool(coco: Path) -> list[Path]:
    """coco2017-mini's train2017 images, then coco128-yolo's train2017 images not already among them."""
    from yqt.quant.calibrate import folder_images

    first = folder_images(coco / "train2017")
    names = {p.name for p in first}
    second = [p for p in folder_images(YOLO_YAML.parent / "images" / "train2017") if p.name not in names]
    return first + second


def linked_folder(images: list[Path], folder: Path) -> Path:
    """A folder whose name order is the given order: links named ``0000-<name>`` and so on."""
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        (folder / f"{i:04d}-{image.name}").symlink_to(image.resolve())
    return folder


def quantize_and_score(coco: Path, run, calib: Path, count: int, target: float, sweep: Path, **where) -> tuple:
    from yqt.quantize import quantize

    cfg = cpu_quantize_config(coco, mode="w4a16", calib_dir=calib, calib_images=count, target_bits=target,
                              sensitivity=sweep)  # fmt: skip
    t0 = time.perf_counter()
    result = quantize(cfg, run)
    assert result.passed, result.failures
    elapsed = time.perf_counter() - t0
    return ort_eval(result.onnx.path, run, **where).metrics.mAP_50_95, result.timings["gptq_s"], elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", default="4.5,5.0")
    parser.add_argument("--counts", default="64,128,256,all")
    parser.add_argument("--default", type=int, default=128, help="the count the orders are measured at")
    parser.add_argument("--orders", type=int, default=3)
    parser.add_argument("--max-images", type=int, default=100, help="dev ids the orders are scored on (0: all)")
    parser.add_argument("--skip-table", action="store_true")
    parser.add_argument("--skip-orders", action="store_true")
    args = parser.parse_args()
    coco = coco_root_or_exit()
    if not YOLO_YAML.is_file():
        print(f"SKIP: coco128-yolo absent at {YOLO_YAML}")
        return

    from yqt.export import export_baseline
    from yqt.records import ExportConfig, SensitivityConfig
    from yqt.runs import Run
    from yqt.sensitivity import sensitivity

    pool = calibration_pool(coco)
    with tempfile.TemporaryDirectory(prefix="yqt-gptq-calib-") as tmp:
        run = Run.open(Path(tmp) / "runs", "calib")
        base = export_baseline(ExportConfig(device="cpu"), run).onnx.path
        sweep = sensitivity(SensitivityConfig(coco_root=coco), run).json_path
        held_out = {"data": YOLO_YAML, "split": "val"}
        print(f"pool: {len(pool)} calibration images; sweep: {sweep.name}", flush=True)
        if not args.skip_table:
            float_held = ort_eval(base, run, **held_out).metrics.mAP_50_95
            calib = linked_folder(pool, Path(tmp) / "pool")
            print(f"float, held-out (coco128-yolo val, 126 images): {float_held:.4f}", flush=True)
            print("| target bits | images | held-out mAP50-95 | of float | GPTQ s | quantize s |")
            print("|---|---|---|---|---|---|")
            for target in map(float, args.targets.split(",")):
                for text in args.counts.split(","):
                    count = len(pool) if text == "all" else int(text)
                    value, gptq_s, total_s = quantize_and_score(coco, run, calib, count, target, sweep, **held_out)
                    print(f"| {target} | {count} | {value:.4f} | {value / float_held:.1%} | {gptq_s:.0f} | "
                          f"{total_s:.0f} |", flush=True)  # fmt: skip
        if not args.skip_orders:
            dev = {"coco_root": coco, "max_images": args.max_images or None}
            float_dev = ort_eval(base, run, **dev).metrics.mAP_50_95
            values = []
            for k in range(args.orders):
                order = list(pool) if k == 0 else random.Random(k).sample(pool, len(pool))
                calib = linked_folder(order, Path(tmp) / f"order-{k}")
                value, gptq_s, _ = quantize_and_score(coco, run, calib, args.default, 4.5, sweep, **dev)
                values.append(value)
                print(f"order {k}: dev {value:.4f} ({value / float_dev:.1%} of float {float_dev:.4f}), "
                      f"GPTQ {gptq_s:.0f} s", flush=True)  # fmt: skip
            mean = statistics.mean(values)
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            print(f"4.5 bits, {args.default} images, {len(values)} orders: mean {mean:.4f} "
                  f"({mean / float_dev:.1%} of float), SD {spread * 100:.2f} pt")  # fmt: skip


if __name__ == "__main__":
    main()
