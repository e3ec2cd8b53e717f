"""The whole pipeline through the library, without the CLI: export, quantize, score, compare.

python examples/library_pipeline.py ../shared/data/coco2017-mini
"""

from __future__ import annotations

import sys
from pathlib import Path

from yqt.compare import compare
from yqt.evaluate import evaluate
from yqt.export import export_baseline
from yqt.quantize import quantize
from yqt.records import CompareConfig, EvalConfig, ExportConfig, QuantizeConfig
from yqt.runs import Run


def main(coco_root: Path) -> None:
    run = Run.open(Path("runs"), "library-example")
    baseline = export_baseline(ExportConfig(), run)
    models = [baseline.onnx.path]
    # w8a16 needs nothing else; w8a8 calibrates its int8 activations on <coco_root>/train2017.
    for cfg in (QuantizeConfig(mode="w8a16"), QuantizeConfig(mode="w8a8", coco_root=coco_root)):
        quantized = quantize(cfg, run)
        if not quantized.passed:
            raise SystemExit(f"quantize {cfg.mode} failed: " + "; ".join(quantized.failures))
        models.append(quantized.onnx.path)
    for model in models:
        result = evaluate(EvalConfig(onnx=model, coco_root=coco_root, max_images=100), run)
        print(f"{result.name}: mAP50-95 {result.metrics.mAP_50_95:.4f} on {result.providers_used[0]}")
    report = compare(CompareConfig(inputs=(str(run.root),), max_drop_pt=0.5))
    for row in report.rows[1:]:
        d = row.metrics["mAP_50_95"]
        print(f"{row.label}: {d.delta_pt:+.2f} pt, 95% CI [{d.ci95_pt[0]:+.2f}, {d.ci95_pt[1]:+.2f}]")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/coco2017-mini"))
