"""Wall time and peak RSS of ``yqt quantize`` for yolov10n (real weights) and yolov10m (full-size
architecture, random init), each in its own process so peak RSS is that model's alone.

``--mode w8a16`` (the default), targets after imports: yolov10n <= 15 s, yolov10m <= 30 s, peak RSS
< 3 GiB. ``--mode w4a16`` (block-sequential GPTQ on the default 128 calibration images of
coco2017-mini/train2017): the whole process, imports included, yolov10n <= 90 s, yolov10m <= 600 s,
peak RSS <= 8 GiB. The parity check runs on its default images (Ultralytics' bus.jpg and zidane.jpg).

    python benchmarks/quantize_scale.py [--mode w8a16|w4a16] [--models yolov10n,yolov10m.yaml]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
import torch, ultralytics, brevitas.nn, onnx, onnxruntime, onnxslim  # imports, timed apart
from yqt.quantize import quantize
from yqt.records import QuantizeConfig
from yqt.runs import Run
t1 = time.perf_counter()
weights = None if sys.argv[1] == "yolov10n" else sys.argv[1]
coco = {"coco_root": sys.argv[4]} if sys.argv[4] else {}
cfg = QuantizeConfig(mode=sys.argv[3], weights=weights, providers=("cpu",), device="cpu", **coco)
r = quantize(cfg, Run.open(sys.argv[2], sys.argv[1].replace(".", "-")))
t2 = time.perf_counter()
print(json.dumps({"imports_s": t1 - t0, "work_s": t2 - t1, "passed": r.passed, "failures": r.failures,
                  "timings": r.timings, "size_ratio": r.size.ratio if r.size else None,
                  "qcdq_mb": r.onnx.size_bytes / 1e6 if r.onnx else None,
                  "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


TARGETS = {  # (seconds, after imports or for the whole process, peak RSS GiB) per mode and model
    "w8a16": {"yolov10n": (15.0, "after imports", 3.0), "yolov10m.yaml": (30.0, "after imports", 3.0)},
    "w4a16": {"yolov10n": (90.0, "whole process", 8.0), "yolov10m.yaml": (600.0, "whole process", 8.0)},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=sorted(TARGETS), default="w8a16")
    parser.add_argument("--models", default="yolov10n,yolov10m.yaml")
    args = parser.parse_args()
    coco = ""
    if args.mode == "w4a16":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _common import coco_root_or_exit

        coco = str(coco_root_or_exit())
    with tempfile.TemporaryDirectory(prefix="yqt-qbench-") as runs:
        for model in args.models.split(","):
            limit, what, rss_limit = TARGETS[args.mode][model]
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", CHILD, model, runs, args.mode, coco], capture_output=True,
                                  text=True)  # fmt: skip
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr[-3000:])
                raise SystemExit(f"{model}: quantize failed")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            steps = "  ".join(f"{k} {v:.1f}" for k, v in r["timings"].items())
            print(
                f"{model:14s} {args.mode} passed={r['passed']}  after imports {r['work_s']:.1f} s  imports "
                f"{r['imports_s']:.1f} s  process {wall:.1f} s (target: {what} <= {limit:.0f} s)  peak RSS "
                f"{r['peak_rss_gib']:.2f} GiB (<= {rss_limit:g})  qcdq {r['qcdq_mb']:.1f} MB, "
                f"{r['size_ratio']:.2f}x smaller than fp32 weights"
            )
            print(f"{'':14s} {steps}")


if __name__ == "__main__":
    main()
