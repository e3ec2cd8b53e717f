from __future__ import annotations

import json
from pathlib import Path

import pytest

from yqt.records import CocoMetrics, EvalConfig, ExportDevice, LatencyStats, ProviderReport, to_jsonable


def test_to_jsonable_handles_nested_records_paths_enums_and_tuples():
    cfg = EvalConfig(onnx=Path("a/b.onnx"), providers=("cuda", "cpu"))
    data = to_jsonable({"cfg": cfg, "device": ExportDevice.CUDA, "nan": float("nan")})
    assert data["cfg"]["onnx"] == str(Path("a/b.onnx").absolute())  # absolute in JSON: readable from anywhere
    assert data["cfg"]["providers"] == ["cuda", "cpu"]
    assert data["device"] == "cuda"
    assert data["nan"] is None
    json.dumps(data)  # must be serialisable as is


def test_latency_stats_use_measured_values():
    stats = LatencyStats.from_seconds([0.010, 0.020, 0.030, 0.040, 0.100])
    assert stats.n == 5
    assert stats.median_ms == pytest.approx(30.0)
    assert stats.mean_ms == pytest.approx(40.0)
    assert stats.p90_ms == pytest.approx(100.0)  # nearest rank: ceil(0.9*5) = 5th value
    assert stats.min_ms == pytest.approx(10.0)
    with pytest.raises(ValueError):
        LatencyStats.from_seconds([])


def test_coco_metrics_names_follow_pycocotools_order():
    stats = [i / 100 for i in range(12)]
    m = CocoMetrics.from_stats(stats)
    assert (m.mAP_50_95, m.mAP_50, m.mAP_75, m.mAP_small, m.AR_large) == (0.0, 0.01, 0.02, 0.03, 0.11)
    with pytest.raises(ValueError):
        CocoMetrics.from_stats(stats[:11])


def test_provider_report_detects_fallback():
    report = ProviderReport(
        requested=("CUDAExecutionProvider", "CPUExecutionProvider"),
        attempted=("CPUExecutionProvider",),
        used=("CPUExecutionProvider",),
    )
    assert report.fell_back and not report.cuda_used
    same = ProviderReport(
        requested=("CPUExecutionProvider",),
        attempted=("CPUExecutionProvider",),
        used=("CPUExecutionProvider",),
    )
    assert not same.fell_back


def test_parity_matching_is_one_to_one_by_class_and_iou():
    import numpy as np

    from yqt.quant.parity import match_detections

    ref = np.array([[0, 0, 10, 10, 0.9, 1], [20, 20, 30, 30, 0.8, 2], [0, 0, 10, 10, 0.1, 1]], dtype=np.float32)
    same = ref.copy()
    assert match_detections(ref, same, 0.25, 0.99) == (2, 2)
    moved = ref.copy()
    moved[1, :4] += 2.0  # IoU drops well below 0.99
    assert match_detections(ref, moved, 0.25, 0.99) == (1, 2)
    relabelled = ref.copy()
    relabelled[0, 5] = 3
    assert match_detections(ref, relabelled, 0.25, 0.99) == (1, 2)
    assert match_detections(ref, ref[:0], 0.25, 0.99) == (0, 2)
