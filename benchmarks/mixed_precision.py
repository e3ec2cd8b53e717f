"""Automatic mixed precision on the real yolov10n, measured in one run against the float baseline
exported in that same run (dev set, first 100 ids):

- the sensitivity sweep once (16 train2017 images), and where its time goes;
- w4a16 at each --target-bits, pure 4-bit and pure 8-bit: ORT mAP50-95, % of float, achieved mean
  weight bits and file size;
- w4a8 at --target-bits 5.0;
- the PyTorch fake-quant mAP of the 4.5-bit model, which the ORT mAP must equal within 0.3 pt;
- a mAP-vs-mean-bits plot, written to benchmarks/mixed_precision.png.

    python benchmarks/mixed_precision.py [--targets 4.25,4.5,5.0,6.0] [--calib-images N]

GPTQ runs once per 4-bit model, on yqt's default 128 calibration images, one pass per 4-bit layer:
on an otherwise idle 2-core CPU 680 s for pure 4-bit down to 172 s at 6 bits; the whole run took
about 40 minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import coco_root_or_exit, cpu_quantize_config, ort_map
from lowbit_modes import torch_map

PLOT = Path(__file__).resolve().parent / "mixed_precision.png"
MUST = {
    ("w4a16", 4.5): 0.95,
    ("w4a16", 5.0): 0.96,
    ("w4a8", 5.0): 0.90,
}


def plot(points: list[tuple[str, float, float]], float_map: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    for label, marker, colour in (("w4a16", "o", "#2471a3"), ("w4a8", "s", "#ca6f1e"), ("w8a16", "D", "#1e8449")):
        pts = sorted((b, m, name) for name, b, m in points if name.startswith(label))
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=colour, label=label)
        below = label == "w4a8"  # under its marker: w4a8 sits just below w4a16 at the same bits
        for b, m, _name in pts:
            ax.annotate(f"{m:.3f}", (b, m), textcoords="offset points", xytext=(0, -13 if below else 7), ha="center",
                        fontsize=8)  # fmt: skip
    ax.axhline(float_map, color="#555", linestyle="--", linewidth=1, label=f"float {float_map:.4f}")
    ax.axhline(0.95 * float_map, color="#999", linestyle=":", linewidth=1, label="95% of float")
    ax.set_xlabel("mean weight bits (parameter-weighted)")
    ax.set_ylabel("mAP50-95, dev set first 100")
    ax.set_title("yolov10n: accuracy vs mean weight bits (--target-bits)", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", default="4.25,4.5,5.0,6.0")
    parser.add_argument("--w4a8-target", type=float, default=5.0)
    parser.add_argument("--calib-images", type=int, default=None, help="default: yqt's (128 for GPTQ)")
    parser.add_argument("--max-images", type=int, default=100)
    args = parser.parse_args()
    coco = coco_root_or_exit()

    from yqt.export import export_baseline
    from yqt.quantize import prepare, quantize
    from yqt.records import ExportConfig, SensitivityConfig
    from yqt.runs import Run
    from yqt.sensitivity import sensitivity

    with tempfile.TemporaryDirectory(prefix="yqt-mixed-") as tmp:
        run = Run.open(Path(tmp), "mixed")
        base = export_baseline(ExportConfig(device="cpu"), run)

        def score(path: Path) -> float:
            return ort_map(path, coco, args.max_images, run)

        float_map = score(base.onnx.path)
        print(f"float mAP50-95 {float_map:.4f}", flush=True)
        t = time.perf_counter()
        sweep = sensitivity(SensitivityConfig(coco_root=coco), run)
        where = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in sweep.timings.items() if k != "total_s")
        print(f"sensitivity sweep: {time.perf_counter() - t:.0f} s for {len(sweep.layers)} layers ({where})")
        print("  top 10: " + ", ".join(r.name for r in sweep.ranked()[:10]), flush=True)

        # The must-show targets first, so an interrupted run still has them; the plot is redrawn after each.
        targets = sorted((float(t) for t in args.targets.split(",")), key=lambda t: (t not in (4.5, 5.0), t))
        configs: list[tuple[str, str, float | None]] = [("w4a16", f"w4a16 --target-bits {t}", t) for t in targets[:2]]
        configs += [("w4a8", f"w4a8 --target-bits {args.w4a8_target}", args.w4a8_target)]
        configs += [("w8a16", "w8a16 pure 8-bit", None), ("w4a16", "w4a16 pure 4-bit", None)]
        configs += [("w4a16", f"w4a16 --target-bits {t}", t) for t in targets[2:]]
        points, achieved = [], {}
        for mode, label, target in configs:
            cfg = cpu_quantize_config(
                coco, mode=mode, calib_images=args.calib_images, target_bits=target,
                sensitivity=sweep.json_path if target else None,
            )  # fmt: skip
            prepared = prepare(cfg)
            torch_ref = torch_map(prepared.module, coco, args.max_images) if (mode, target) == ("w4a16", 4.5) else None
            result = quantize(cfg, run, prepared=prepared)
            if not result.passed:
                print(f"{label}: FAILED {result.failures}", flush=True)
                continue
            ort = score(result.onnx.path)
            bits = result.mean_weight_bits
            points.append((label, bits, ort))
            achieved[(mode, target)] = (ort, bits, torch_ref)
            promoted = len(result.mixed_precision.promoted) if result.mixed_precision else 0
            calib = len(result.calibration.images) if result.calibration else 0
            print(
                f"{label:26s} mAP {ort:.4f} ({ort / float_map:6.1%} of float)  {bits:.3f} bits  "
                f"{promoted:2d} layers promoted  {result.onnx.size_bytes / 1e6:.2f} MB  "
                f"quantize {result.timings['total_s']:.0f} s "
                f"(GPTQ {result.timings.get('gptq_s', 0):.0f} s, {calib} calibration images)"
                + (f"  PyTorch fake-quant {torch_ref:.4f}" if torch_ref is not None else ""),
                flush=True,
            )  # fmt: skip
            plot(points, float_map, PLOT)
        print(f"\nplot: {PLOT}")
        print("must show:")
        for (mode, target), need in MUST.items():
            if (mode, target) not in achieved:
                print(f"  {mode} --target-bits {target}: not measured")
                continue
            m, bits, _ = achieved[(mode, target)]
            ok = m >= need * float_map and bits <= target + 1e-9
            print(f"  {mode} --target-bits {target}: ≥ {need:.0%} of float at ≤ {target} bits -> "
                  f"{m / float_map:.1%} at {bits:.3f} bits: {'yes' if ok else 'NO'}")  # fmt: skip
        m, _, torch_ref = achieved.get(("w4a16", 4.5), (None, None, None))
        if torch_ref is not None:
            gap = 100 * abs(m - torch_ref)
            verdict = "yes" if gap <= 0.3 else "NO"
            print(f"  ORT = PyTorch fake-quant within 0.3 pt at 4.5 bits -> {gap:.2f} pt: {verdict}")
        sweep_s = sweep.timings.get("total_s", 0.0)
        print(f"  sweep ≤ 5 min -> {sweep_s:.0f} s: {'yes' if sweep_s <= 300 else 'NO'}")


if __name__ == "__main__":
    main()
