"""Wall time and peak RSS of ``yqt quantize --mode w8a16`` for yolov10n (real weights) and yolov10m
(full-size architecture, random init), each in its own process so peak RSS is that model's alone.

Targets after imports: yolov10n <= 15 s, yolov10m <= 30 s, peak RSS < 3 GiB. The parity check runs
on its default images (Ultralytics' bus.jpg and zidane.jpg).

    python benchmarks/quantize_scale.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
import torch, ultralytics, brevitas.nn, onnx, onnxruntime, onnxslim  # imports, timed apart
from yqt.quantize import quantize
from yqt.records import QuantizeConfig
from yqt.runs import Run
t1 = time.perf_counter()
weights = None if sys.argv[1] == "yolov10n" else sys.argv[1]
r = quantize(QuantizeConfig(weights=weights, providers=("cpu",)), Run.open(sys.argv[2], sys.argv[1].replace(".", "-")))
t2 = time.perf_counter()
print(json.dumps({"imports_s": t1 - t0, "work_s": t2 - t1, "passed": r.passed, "failures": r.failures,
                  "timings": r.timings, "size_ratio": r.size.ratio if r.size else None,
                  "qcdq_mb": r.onnx.size_bytes / 1e6 if r.onnx else None,
                  "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="yqt-qbench-") as runs:
        for model, target in (("yolov10n", 15.0), ("yolov10m.yaml", 30.0)):
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", CHILD, model, runs], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr[-3000:])
                raise SystemExit(f"{model}: quantize failed")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            steps = "  ".join(f"{k} {v:.1f}" for k, v in r["timings"].items())
            print(
                f"{model:14s} passed={r['passed']}  after imports {r['work_s']:.1f} s (target <= {target:.0f} s)  "
                f"imports {r['imports_s']:.1f} s  process {wall:.1f} s  peak RSS {r['peak_rss_gib']:.2f} GiB (< 3)  "
                f"qcdq {r['qcdq_mb']:.1f} MB, {r['size_ratio']:.2f}x smaller than fp32 weights"
            )
            print(f"{'':14s} {steps}")


if __name__ == "__main__":
    main()
