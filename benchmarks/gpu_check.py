"""The CUDA-only checks, as one prepared script for a lent GPU machine (never part of the tests).

1. ``yqt export`` in auto mode: CUDA FP16 expected, or the fallback recorded with its reason;
2. ``yqt quantize --mode w8a16`` in auto mode: the same device choice for the Brevitas export; and,
   when the dev set is present, ``--mode w8a8`` (CPU export, int8 QDQ) to see it run on CUDA too;
3. ``yqt smoke --require-cuda`` on both files: exit 1 if CUDA did not attach;
4. ``yqt eval`` on the CUDA execution provider (first 100 ids when the dev set is present);
5. with the dev set: ``--mode w8a8 --layout tensorrt`` (symmetric int8 activations, zero point 0,
   gated), run on ORT's TensorRT execution provider (``smoke --providers tensorrt,cuda,cpu``: which
   provider actually ran), and, where the ``tensorrt`` package is installed, parsed by TensorRT's own
   ONNX parser and built into an INT8 engine (explicit quantization).

    python benchmarks/gpu_check.py [--coco-root DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path


def yqt(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "yqt", *args, "--json"], capture_output=True, text=True)
    sys.stderr.write(proc.stderr[-2000:])
    print(f"$ yqt {' '.join(args)}  -> exit {proc.returncode}")
    return json.loads(proc.stdout) if proc.stdout.strip() else {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--coco-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/coco2017-mini"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        common = ("--runs-dir", tmp, "--run", "gpu")
        exp = yqt("export", *common)
        for a in exp.get("device_choice", {}).get("attempts", []):
            print(f"  export {a['device']} {a['precision']}: {a['outcome']} ({a['reason']})")
        quant = yqt("quantize", "--mode", "w8a16", *common)
        for a in quant.get("device_choice", {}).get("attempts", []):
            print(f"  quantize {a['device']} {a['precision']}: {a['outcome']} ({a['reason']})")
        if (args.coco_root / "train2017").is_dir():
            w8a8 = yqt("quantize", "--mode", "w8a8", "--coco-root", str(args.coco_root), *common)
            print(f"  w8a8 passed={w8a8.get('passed')} failures={w8a8.get('failures')}")
        for model in sorted((Path(tmp) / "gpu" / "onnx").glob("*.onnx")):
            smoke = yqt("smoke", str(model), "--require-cuda", *common)
            if smoke:
                print(
                    f"  {model.name}: used {smoke['providers']['used']}, median {smoke['latency']['median_ms']:.2f} ms"
                )
            if (args.coco_root / "annotations").is_dir():
                ev = yqt("eval", str(model), "--coco-root", str(args.coco_root), "--max-images", "100", *common)
                if ev:
                    print(
                        f"  eval {model.name}: mAP50-95 {ev['metrics']['mAP_50_95']:.4f} on {ev['providers_used']}, "
                        f"median {ev['latency']['median_ms']:.2f} ms"
                    )

        if (args.coco_root / "train2017").is_dir():
            tensorrt_layout(args.coco_root, tmp)


def tensorrt_layout(coco_root: Path, runs_dir: str) -> None:
    common = ("--runs-dir", runs_dir, "--run", "gpu-trt")
    q = yqt("quantize", "--mode", "w8a8", "--layout", "tensorrt", "--coco-root", str(coco_root), *common)
    for check in q.get("gate", {}).get("checks", []):
        if check["name"] in ("activation_zero_points", "activation_ranges"):
            print(f"  gate {check['name']}: {'pass' if check['passed'] else 'FAIL'} ({check['detail']})")
    model = Path(runs_dir) / "gpu-trt" / "onnx" / "yolov10n-w8a8-qcdq-ptq.onnx"
    if not model.is_file():
        print("  tensorrt layout: no file to run")
        return
    smoke = yqt("smoke", str(model), "--providers", "tensorrt,cuda,cpu", *common)
    if smoke:
        print(
            f"  ORT TensorRT EP: used {smoke['providers']['used']}, notes {smoke['providers']['notes']}, "
            f"median {smoke['latency']['median_ms']:.2f} ms, {smoke['num_detections']} detections"
        )
    try:
        import tensorrt as trt
    except ImportError:
        print("  TensorRT's own parser: the tensorrt package is not installed")
        return
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        print(f"  TensorRT {trt.__version__} parser FAILED: {errors[:3]}")
        return
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.INT8)
    engine = builder.build_serialized_network(network, config)
    print(
        f"  TensorRT {trt.__version__}: parsed {network.num_layers} layers; INT8 engine "
        f"{'built (' + str(engine.nbytes) + ' bytes)' if engine is not None else 'FAILED to build'}"
    )


if __name__ == "__main__":
    main()
