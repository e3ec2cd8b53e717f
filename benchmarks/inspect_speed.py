"""``inspect_graph`` time on the yolov10m W8A16 QCDQ model (full-size architecture, random init),
after imports, against the 2 s target; the onnx package's bare ``onnx.load`` of the same file is
printed as the floor any census has to pay.

    python benchmarks/inspect_speed.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def main() -> None:
    import onnx

    from yqt.graph import inspect_graph
    from yqt.quantize import quantize
    from yqt.records import QuantizeConfig
    from yqt.runs import Run

    with tempfile.TemporaryDirectory(prefix="yqt-ibench-") as tmp:
        result = quantize(QuantizeConfig(weights="yolov10m.yaml", providers=("cpu",)), Run.open(Path(tmp), "m"))
        model = result.onnx.path
        inspect_graph(model)  # warm the page cache, as a second run of the command would be
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            report = inspect_graph(model)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        onnx.load(str(model))
        load = time.perf_counter() - t0
    print(
        f"yolov10m QCDQ: {model.stat().st_size / 1e6 if model.exists() else result.onnx.size_bytes / 1e6:.1f} MB, "
        f"{report.summary.nodes} nodes, {report.summary.quantized_layers} quantized layers"
    )
    print(
        f"inspect_graph best of 3: {min(times):.2f} s (target < 2 s); onnx.load alone {load:.2f} s "
        f"(ratio {min(times) / load:.1f}x)"
    )


if __name__ == "__main__":
    main()
