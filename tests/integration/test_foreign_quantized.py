"""A file quantized by ONNX Runtime's own ``quantize_static`` keeps the float file's metadata
(``yqt.mode baseline``, ``yqt.precision fp32``); compare and the report label it by its graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class _Images:
    def __init__(self, arrays: list[np.ndarray], name: str) -> None:
        self._items = iter([{name: a} for a in arrays])

    def get_next(self):
        return next(self._items, None)


@pytest.fixture(scope="module")
def ort_quantized(baseline_onnx: Path, coco_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ORT QDQ int8 of the baseline, calibrated (MinMax) on two train2017 images, beside a copy of the
    baseline in a folder of their own (the session's baseline run stays as the other tests expect it)."""
    import shutil

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from yqt.data import letterbox, read_image

    base = shutil.copyfile(baseline_onnx, tmp_path_factory.mktemp("foreign") / baseline_onnx.name)
    images = sorted((coco_root / "train2017").glob("*.jpg"))[:2]
    arrays = [letterbox(read_image(p), 640)[0] for p in images]
    out = base.with_name("yolov10n-ortq.onnx")
    quantize_static(str(baseline_onnx), str(out), _Images(arrays, "images"), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)  # fmt: skip
    return out


def test_compare_and_report_label_a_foreign_quantized_file_by_its_graph(
    ort_quantized: Path, coco_root: Path, tmp_path: Path
):
    import onnx

    from yqt.compare import compare
    from yqt.evaluate import evaluate
    from yqt.records import CompareConfig, EvalConfig
    from yqt.runs import Run

    meta = {p.key: p.value for p in onnx.load(str(ort_quantized), load_external_data=False).metadata_props}
    assert meta.get("yqt.mode") == "baseline"  # the float file's metadata, copied: it would say "fp32"
    run = Run.open(tmp_path / "runs", "foreign")  # its own run: the session's baseline run stays as it is
    baseline = ort_quantized.with_name("yolov10n-baseline-fp32.onnx")
    baseline_eval = evaluate(EvalConfig(onnx=baseline, coco_root=coco_root, max_images=100, providers=("cpu",)), run)
    ev = evaluate(EvalConfig(onnx=ort_quantized, coco_root=coco_root, max_images=100, providers=("cpu",)), run)
    assert ev.graph_quantization is not None and ev.graph_quantization.startswith("int8 QDQ, ")
    convs = ev.graph_quantization.split(", ")[1]
    assert convs.endswith("/83 convs") and int(convs.split("/")[0]) >= 80, ev.graph_quantization
    assert baseline_eval.graph_quantization is None
    result = compare(CompareConfig(inputs=(str(run.root),), bootstrap=0))
    rows = {r.name: r for r in result.rows}
    assert rows["yolov10n-ortq"].mode == ev.graph_quantization and rows["yolov10n-ortq"].mean_weight_bits is None
    assert rows[baseline_eval.name].mode == "baseline fp32"
    doc = json.loads(ev.metrics_path.read_text())
    assert doc["graph_quantization"] == ev.graph_quantization

    from yqt.records import ReportConfig
    from yqt.report import write_report

    report = write_report(ReportConfig(run=run.root))
    md = (run.root / "report" / "report.md").read_text()
    assert ev.graph_quantization in md, md[:2000]
    assert {r.name: r.mode for r in report.rows}["yolov10n-ortq"] == ev.graph_quantization
