"""Every quantization mode on the real yolov10n, measured in one run against the float baseline
exported in that same run (dev set, first 100 ids):

- ORT mAP50-95 and Δ vs float (in points), mean weight bits, file size;
- the PyTorch fake-quant mAP of the modes built in PyTorch (w8a16, w4a16), which the ORT mAP must
  equal within 0.3 pt: the proof that the export is faithful;
- where quantize time goes (GPTQ, activation calibration, export and gates);
- ORT CPU latency, median over alternating rounds of every model in one process, as a ratio to float.

    python benchmarks/lowbit_modes.py [--calib-images N] [--rounds 30]

The w4a8 8-bit set is the stem and early stages plus SPPF (``model.[0-7]``, ``model.9``): small,
early layers whose 4-bit error propagates through the whole network (the sensitivity ranking of the
low-bit issue, measured on train2017 images, puts model.0, model.1, model.2 and model.9 first).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import coco_root_or_exit, cpu_quantize_config, ort_map

W4A8_KEEP_8BIT = ("model.[0-7]", "model.9")
MUST = {
    "w8a8": "Δ ≥ -0.5 pt, latency ≤ 0.72x float",
    "w4a16": "mAP ≥ 0.35, quantize ≤ 600 s, file ≤ 0.6x w8a16",
    "w4a8": "mAP ≥ 0.38 at ≤ 5.0 mean bits",
    "w8a16": "latency ≤ 1.05x float",
}


def torch_map(module, coco_root: Path, n: int) -> float:
    """mAP50-95 of a PyTorch model under yqt's eval contract (letterbox, 80→91, pycocotools)."""
    import torch

    from yqt.data import labelled_images, prefetch_images, select_image_ids
    from yqt.evaluate import _image_items, detections_for_image, run_cocoeval

    truth = labelled_images(coco_root)
    coco = truth.coco
    ids = select_image_ids(truth.order, n, in_given_order=truth.in_name_order).ids
    items = _image_items(truth, ids)
    detections = []
    with torch.no_grad():
        for prepared in prefetch_images(items, 640):
            out = module(torch.from_numpy(prepared.tensor)).numpy()[0]
            detections += detections_for_image(out, prepared, 0.001, 300)
    evaluator, _ = run_cocoeval(coco, detections, ids)
    return float(evaluator.stats[0])


def latency_ratios(paths: dict[str, Path], rounds: int) -> dict[str, float]:
    """Median session.run per model, rounds alternating between models so drift hits all alike."""
    from yqt.data import default_smoke_image, letterbox, read_image
    from yqt.runtime import open_session

    x = letterbox(read_image(default_smoke_image()), 640)[0]
    sessions = {k: open_session(p, ("cpu",))[0] for k, p in paths.items()}
    for s in sessions.values():
        for _ in range(3):
            s.run(None, {"images": x})
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, {"images": x})
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calib-images", type=int, default=None, help="default: yqt's (128 for GPTQ)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--max-images", type=int, default=100)
    args = parser.parse_args()
    coco = coco_root_or_exit()

    from yqt.export import export_baseline
    from yqt.quantize import prepare, quantize
    from yqt.records import ExportConfig
    from yqt.runs import Run

    with tempfile.TemporaryDirectory(prefix="yqt-lowbit-") as tmp:
        run = Run.open(Path(tmp), "lowbit")
        base = export_baseline(ExportConfig(device="cpu"), run)

        def score(path: Path) -> float:
            return ort_map(path, coco, args.max_images, run)

        float_map = score(base.onnx.path)
        paths = {"float": base.onnx.path}
        rows = []
        configs = {
            "w8a16": {},
            "w8a8": {},
            "w4a16": {},
            "w4a8": {"keep_8bit": W4A8_KEEP_8BIT},
        }
        for mode, extra in configs.items():
            cfg = cpu_quantize_config(coco, mode=mode, calib_images=args.calib_images, **extra)
            prepared = prepare(cfg)
            torch_ref = torch_map(prepared.module, coco, args.max_images) if mode in ("w8a16", "w4a16") else None
            result = quantize(cfg, run, prepared=prepared)
            if not result.passed:
                print(f"{mode}: FAILED {result.failures}")
                continue
            ort = score(result.onnx.path)
            paths[mode] = result.onnx.path
            rows.append((mode, result, ort, torch_ref))
            kept = [d.name for d in result.layers if d.bits == 8] if mode.startswith("w4") else []
            t = result.timings
            print(
                f"{mode:6s} ORT mAP {ort:.4f} (Δ {100 * (ort - float_map):+.2f} pt)"
                + (f"  PyTorch fake-quant {torch_ref:.4f} (ORT−PyTorch {100 * (ort - torch_ref):+.2f} pt)"
                   if torch_ref is not None else "")
                + f"  mean bits {result.mean_weight_bits:.2f}  {result.onnx.size_bytes / 1e6:.2f} MB"
                + (f"  int8 convs fused {result.activations.int8_convs_fused}" if result.activations else ""),
                flush=True,
            )  # fmt: skip
            print(
                f"       quantize {t['total_s']:.0f} s: "
                + ", ".join(f"{k.removesuffix('_s')} {v:.0f} s" for k, v in t.items() if k != "total_s")
                + (f"; 8-bit: {', '.join(kept)}" if kept else ""),
                flush=True,
            )  # fmt: skip
        lat = latency_ratios(paths, args.rounds)
        print(f"\nfloat mAP50-95 {float_map:.4f}; ORT CPU median latency, {args.rounds} alternating rounds:")
        for k, v in lat.items():
            print(f"  {k:6s} {v * 1000:7.1f} ms  {v / lat['float']:.3f}x float")
        w8a16_bytes = next((r.onnx.size_bytes for m, r, *_ in rows if m == "w8a16"), None)
        print("\nmust show:")
        for mode, result, ort, torch_ref in rows:
            if torch_ref is not None:
                gap = 100 * abs(ort - torch_ref)
                print(f"  {mode:6s} ORT mAP = PyTorch fake-quant mAP within 0.3 pt -> {gap:.2f} pt: "
                      f"{'yes' if gap <= 0.3 else 'NO'}")  # fmt: skip
            ratio = lat[mode] / lat["float"]
            size = f", file {result.onnx.size_bytes / w8a16_bytes:.2f}x w8a16" if w8a16_bytes else ""
            print(f"  {mode:6s} {MUST[mode]:45s} -> Δ {100 * (ort - float_map):+.2f} pt, mAP {ort:.4f}, "
                  f"{result.mean_weight_bits:.2f} bits, {ratio:.3f}x float latency, "
                  f"quantize {result.timings['total_s']:.0f} s{size}")  # fmt: skip


if __name__ == "__main__":
    main()
