"""Float against quantized mAP50-95 on held-out images, images that no calibration read, for one
quantize config, measured in one run against the float baseline exported in that same run.

The held-out images, one of:
- default: the COCO root's train2017 images after the first ``--after N`` by name (N = 128, the
  most any calibration here reads; 81 images in coco2017-mini), scored against
  ``annotations/instances_train2017.json``. Calibration takes train2017's first images by name, so
  with ``--calib-images`` ≤ N these are images it never saw;
- ``--image-ids-list FILE``: exactly these train2017 ids;
- ``--data FILE.yaml``: an Ultralytics dataset's ``--split`` (default val), calibrating on its train
  split, e.g. coco128-yolo's 126 val2017 images.
yqt eval refuses to score an image the model was calibrated on (matched by content), so a set that
overlaps the calibration fails instead of printing an inflated mAP.

The quantize config is quantize's own: ``--mode``, ``--calib-images``, ``--target-bits`` (the
sensitivity sweep runs inside quantize, on the first 16 calibration images), ``--keep-8bit``,
``--no-gptq``, ``--act-order``. Prints both mAPs, the Δ with its paired-bootstrap 95% CI, % of
float, mean weight bits, file size, quantize time and torch's thread count (GPTQ's integers depend
on it).

    python benchmarks/held_out.py --mode w8a8 --calib-images 64
    python benchmarks/held_out.py --mode w4a16 --target-bits 4.5      # GPTQ on 128 images: minutes
    python benchmarks/held_out.py --mode w8a16 --data ../shared/data/coco128-yolo/data.yaml
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import coco_root_or_exit, cpu_quantize_config, ort_eval


def held_out_images(args: argparse.Namespace, coco: Path, tmp: Path) -> tuple[dict, str]:
    """EvalConfig fields naming the held-out images, and a line saying which they are."""
    if args.data is not None:
        return {"data": args.data, "split": args.split}, f"the {args.split} split of {args.data}"
    ids_file, where = args.image_ids_list, f"the train2017 ids listed in {args.image_ids_list}"
    if ids_file is None:
        from yqt.quant.calibrate import folder_images  # the order calibration takes them in

        files = folder_images(coco / "train2017")[args.after :]
        if not files:
            raise SystemExit(f"no train2017 images after the first {args.after} in {coco}")
        ids_file = tmp / "held-out-ids.txt"
        ids_file.write_text("".join(f"{int(p.stem)}\n" for p in files))
        where = f"the {len(files)} train2017 images after the first {args.after} by name"
    coco_train = {"images_dir": coco / "train2017", "annotations": coco / "annotations" / "instances_train2017.json"}
    return {**coco_train, "image_ids_list": ids_file}, where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="w8a16", choices=("w8a16", "w8a8", "w4a16", "w4a8"))
    parser.add_argument("--calib-images", type=int, default=None, help="default: yqt's (128 for GPTQ, else 64)")
    parser.add_argument("--target-bits", type=float, default=None)
    parser.add_argument("--keep-8bit", action="append", default=[], metavar="GLOB")
    parser.add_argument("--no-gptq", action="store_true")
    parser.add_argument("--act-order", action="store_true")
    held = parser.add_mutually_exclusive_group()
    held.add_argument("--after", type=int, default=128, help="held out: train2017 after the first N by name")
    held.add_argument("--image-ids-list", type=Path, default=None, help="held out: these train2017 ids")
    held.add_argument("--data", type=Path, default=None, help="held out: this YAML's --split")
    parser.add_argument("--split", default="val")
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    coco = coco_root_or_exit()

    from yqt.compare import compare
    from yqt.export import export_baseline
    from yqt.quantize import quantize
    from yqt.records import CompareConfig, ExportConfig
    from yqt.runs import Run

    with tempfile.TemporaryDirectory(prefix="yqt-held-out-") as tmp:
        where, label = held_out_images(args, coco, Path(tmp))
        run = Run.open(Path(tmp), "held-out")
        base = export_baseline(ExportConfig(device="cpu"), run)
        cfg = cpu_quantize_config(
            coco, mode=args.mode, calib_images=args.calib_images, target_bits=args.target_bits,
            keep_8bit=tuple(args.keep_8bit), gptq=not args.no_gptq, act_order=args.act_order, data=args.data,
        )  # fmt: skip
        result = quantize(cfg, run)
        if not result.passed:
            raise SystemExit(f"quantize failed: {result.failures}")
        float_eval = ort_eval(base.onnx.path, run, **where)
        quant_eval = ort_eval(result.onnx.path, run, **where)
        rows = compare(CompareConfig(inputs=(str(run.root),), bootstrap=args.bootstrap, seed=0)).rows
    delta = next(r for r in rows if not r.is_baseline).metrics["mAP_50_95"]
    f, q = float_eval.metrics.mAP_50_95, quant_eval.metrics.mAP_50_95
    calib = result.calibration
    print(f"held out: {label}: {float_eval.num_images} images (ids sha256 {float_eval.image_ids_sha256[:12]})")
    if calib is not None:
        print(f"calibration: the first {len(calib.images)} images of {calib.folder} (set sha256 {calib.sha256[:12]})")
    name = result.onnx.path.stem
    print(f"{'float':<{len(name)}}  mAP50-95 {f:.4f}")
    print(
        f"{name}  mAP50-95 {q:.4f}  Δ {delta.delta_pt:+.2f} pt [{delta.ci95_pt[0]:+.2f}, {delta.ci95_pt[1]:+.2f}] "
        f"(95% CI, {args.bootstrap} paired resamples)  {q / f:.1%} of float"
    )
    gptq = f", GPTQ {result.timings['gptq_s']:.0f} s" if "gptq_s" in result.timings else ""
    print(
        f"mean weight bits {result.mean_weight_bits:.3f}  file {result.onnx.size_bytes / 1e6:.2f} MB  "
        f"quantize {result.timings['total_s']:.0f} s{gptq}  torch threads {result.torch_threads}"
    )


if __name__ == "__main__":
    main()
