"""The whole pipeline as one library call, without the CLI: export, quantize, smoke, score, compare,
report. Rerunning it reuses every step whose config and inputs are unchanged.

python examples/library_pipeline.py ../shared/data/coco2017-mini
"""

from __future__ import annotations

import sys
from pathlib import Path

from yqt.pipeline import run_pipeline
from yqt.records import PipelineConfig
from yqt.runs import Run


def main(coco_root: Path) -> int:
    run = Run.open(Path("runs"), "library-example")
    # w8a16 needs nothing else; w8a8 calibrates its int8 activations on <coco_root>/train2017.
    cfg = PipelineConfig(modes=("w8a16", "w8a8"), coco_root=coco_root, max_images=100, max_drop_pt=1.0)
    result = run_pipeline(cfg, run)
    for step in result.steps:
        print(f"{step.status.value:8} {step.name}" + (f": {step.reason}" if step.reason else ""))
    if result.compare is not None:
        for row in result.compare["rows"][1:]:
            d = row["metrics"]["mAP_50_95"]
            ci = d["ci95_pt"] or (float("nan"), float("nan"))
            print(f"{row['name']}: {d['delta_pt']:+.2f} pt, 95% CI [{ci[0]:+.2f}, {ci[1]:+.2f}]")
    if result.report is not None:
        print(f"report: {result.report}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/coco2017-mini")))
