"""int8 yolov10n on ONNX Runtime and OpenVINO, side by side (issue 24), in one run:

- float: yqt's baseline export;
- NNCF on the OpenVINO IR, with Ultralytics' ``format=openvino int8=True`` recipe (``nncf.quantize``,
  preset MIXED, the head's Add/Sub/Mul/Div, the DFL and every Sigmoid in the ignored scope), calibrated
  on the same 64 train2017 images as yqt;
- the hand-tuned ORT peer: ``quantize_static``, QDQ, per-channel int8 weights, uint8 activations, the
  Percentile calibrator at its defaults, 64 images, every node after the head's final convs excluded;
- yqt w8a8 in each layout (ort, tensorrt, openvino).

Each file is scored on the dev set's first 100 ids and on the 126 held-out coco128-yolo val images,
on each runtime that runs it, and timed by one ``yqt bench`` (2 threads, alternating rounds): every
latency is a ratio to ORT float in the same process.

    python benchmarks/runtimes_int8.py [--runs-dir DIR] [--run ID] [--rounds 20] [--skip-eval]

Needs the ``openvino`` and ``nncf`` packages. Files already in the run are reused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, coco_root_or_exit, timed_process, yqt

HELD_OUT = REPO.parent / "shared" / "data" / "coco128-yolo" / "data.yaml"
CALIB_IMAGES = 64
LAYOUTS = ("ort", "tensorrt", "openvino")


def calibration_arrays(coco: Path, n: int = CALIB_IMAGES) -> list[np.ndarray]:
    from yqt.data import letterbox, read_image

    files = sorted((coco / "train2017").glob("*.jpg"))[:n]
    return [letterbox(read_image(p), 640)[0] for p in files]


def ort_peer(float_onnx: Path, out: Path, arrays: list[np.ndarray]) -> Path:
    """ORT quantize_static, Percentile at its defaults, post-processing excluded (found as yqt finds it)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from yqt.quant.activations import name_unnamed_nodes, post_processing

    if out.is_file():
        return out
    model = onnx.load(str(float_onnx))
    name_unnamed_nodes(model)
    named = out.with_name("peer-named-float.onnx")
    onnx.save(model, str(named))
    post, _ = post_processing(model)

    class Reader:
        def __init__(self) -> None:
            self.items = iter([{"images": a} for a in arrays])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(named), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.Percentile, nodes_to_exclude=sorted(post))  # fmt: skip
    named.unlink()
    return out


def nncf_ir(float_onnx: Path, out: Path, arrays: list[np.ndarray]) -> Path:
    """Ultralytics' int8 OpenVINO export recipe, applied to the IR converted from the float ONNX."""
    import nncf
    import openvino as ov

    if out.is_file():
        return out
    model = ov.convert_model(str(float_onnx))
    head = "model.23"  # yolov10n's v10Detect
    ignored = nncf.IgnoredScope(
        patterns=[f".*{head}/.*/Add", f".*{head}/.*/Sub*", f".*{head}/.*/Mul*", f".*{head}/.*/Div*",
                  f".*{head}\\.dfl.*", f".*{head}/dfl.*"],
        types=["Sigmoid"], validate=False,
    )  # fmt: skip
    quantized = nncf.quantize(model, nncf.Dataset(arrays), preset=nncf.QuantizationPreset.MIXED,
                              ignored_scope=ignored, subset_size=len(arrays))  # fmt: skip
    ov.save_model(quantized, str(out))
    return out


def yqt_layout(layout: str, coco: Path, runs_dir: Path, run_id: str) -> Path:
    run = f"{run_id}-{layout}"
    path = runs_dir / run / "onnx" / "yolov10n-w8a8-qcdq-ptq.onnx"
    if not path.is_file():
        timed_process(yqt("quantize", "--mode", "w8a8", "--layout", layout, "--coco-root", str(coco), "--providers",
                          "cpu", "--device", "cpu", "--runs-dir", str(runs_dir), "--run", run, "--json"))  # fmt: skip
    return path


def score(path: Path, runtime: str, coco: Path, run) -> tuple[float, float | None]:
    from yqt.evaluate import evaluate
    from yqt.records import EvalConfig, Runtime

    rt = Runtime(runtime)
    dev = evaluate(EvalConfig(onnx=path, coco_root=coco, max_images=100, providers=("cpu",), runtime=rt), run)
    held = None
    if HELD_OUT.is_file():
        held = evaluate(EvalConfig(onnx=path, data=HELD_OUT, providers=("cpu",), runtime=rt,
                                   name=f"{dev.name}-heldout"), run).metrics.mAP_50_95  # fmt: skip
    return dev.metrics.mAP_50_95, held


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs-dir", type=Path, default=REPO / "runs")
    parser.add_argument("--run", default="runtimes-int8")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-eval", action="store_true")
    args = parser.parse_args()
    coco = coco_root_or_exit()
    from yqt.bench import bench
    from yqt.records import BenchConfig, Runtime
    from yqt.runs import Run

    run = Run.open(args.runs_dir, args.run)
    float_onnx = run.onnx_dir / "yolov10n-baseline-fp32.onnx"
    if not float_onnx.is_file():
        timed_process(yqt("export", "--device", "cpu", "--runs-dir", str(args.runs_dir), "--run", args.run, "--json"))
    arrays = calibration_arrays(coco)
    files = {
        "float": float_onnx,
        "NNCF IR (Ultralytics recipe)": nncf_ir(float_onnx, run.root / "nncf" / "yolov10n-nncf-int8.xml", arrays),
        "ORT peer (Percentile)": ort_peer(float_onnx, run.onnx_dir / "yolov10n-ort-peer.onnx", arrays),
        **{f"yqt w8a8 {lay}": yqt_layout(lay, coco, args.runs_dir, args.run) for lay in LAYOUTS},
    }
    result = bench(BenchConfig(models=tuple(files.values()), runtimes=(Runtime.ORT, Runtime.OPENVINO),
                               threads=args.threads, rounds=args.rounds), run)  # fmt: skip
    by_cell = {(c.model.path.resolve(), c.runtime.runtime.value): c for c in result.cells}
    rows = []
    for label, path in files.items():
        for runtime in ("ort", "openvino"):
            cell = by_cell.get((path.resolve(), runtime))
            if cell is None:
                continue
            dev, held = (None, None) if args.skip_eval else score(path, runtime, coco, run)
            rows.append({"file": label, "runtime": runtime, "precision": cell.runtime.precision,
                         "int8_convs": f"{cell.runtime.kernels.int8_convs}/{cell.runtime.kernels.convs}",
                         "mAP_dev100": dev, "mAP_heldout126": held, "median_ms": round(cell.median_ms, 1),
                         "x_ort_float": round(cell.ratio, 3),
                         "ci95": [round(v, 3) for v in cell.ratio_ci95]})  # fmt: skip
    print(f"host: {result.host.cpu}, {result.host.cpu_count} CPUs, load {result.host.load_before[0]} before, "
          f"{result.host.load_after[0]} after; {args.threads} threads, {args.rounds} rounds")  # fmt: skip
    print("| file | runtime | precision | int8 convs | mAP dev 100 | mAP held-out 126 | × ORT float [95% CI] |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        dev = "-" if r["mAP_dev100"] is None else f"{r['mAP_dev100']:.4f}"
        held = "-" if r["mAP_heldout126"] is None else f"{r['mAP_heldout126']:.4f}"
        print(f"| {r['file']} | {r['runtime']} | {r['precision']} | {r['int8_convs']} | {dev} | {held} | "
              f"{r['x_ort_float']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] |")  # fmt: skip
    (run.root / "runtimes_int8.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
