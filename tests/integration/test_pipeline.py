"""The float baseline end to end, on the real yolov10n, real ORT and real pycocotools."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_yqt

pytestmark = pytest.mark.integration

REFERENCE_MAP = 0.4459  # independent reference implementation, first 100 ids of coco2017-mini
REFERENCE_MAP50 = 0.611


def test_export_is_verified_and_recorded(baseline_export):
    result = baseline_export
    assert result.onnx.path.name == "yolov10n-baseline-fp32.onnx"
    assert result.contract.passed
    assert result.verification.passed and result.verification.max_abs_diff < 1e-2
    assert result.verification.columns.confident_rows >= 4  # bus.jpg: a bus and people
    assert result.model.class_names_fixed  # the THU-MIG checkpoint carries '0'..'79'
    chosen = [a for a in result.device_choice.attempts if a.outcome == "chosen"]
    assert len(chosen) == 1 and (chosen[0].device, chosen[0].precision) == (
        result.device_choice.device,
        result.device_choice.precision,
    )
    manifest = json.loads((result.onnx.path.parents[1] / "run.json").read_text())
    (step,) = [s for s in manifest["steps"] if s["name"] == "export"]
    assert step["status"] == "ok"
    assert step["artifacts"][0]["sha256"] == result.onnx.sha256
    assert step["summary"]["device_attempts"]


def test_exported_onnx_carries_its_provenance(baseline_onnx: Path):
    from yqt.export import read_metadata

    meta = read_metadata(baseline_onnx)
    assert meta["yqt.mode"] == "baseline"
    assert len(meta["yqt.weights_sha256"]) == 64
    assert json.loads(meta["yqt.names"])[0] == "person"


def test_letterbox_matches_ultralytics():
    import cv2
    from ultralytics.data.augment import LetterBox

    from yqt.data import default_smoke_image, letterbox

    bgr = cv2.imread(str(default_smoke_image()))
    ours, _ = letterbox(bgr, 640)
    theirs = LetterBox((640, 640), auto=False)(image=bgr)
    expected = np.ascontiguousarray(theirs[..., ::-1].transpose(2, 0, 1))[None].astype(np.float32) / 255
    np.testing.assert_array_equal(ours, expected)


def test_category_map_matches_ultralytics():
    from ultralytics.data.converter import coco80_to_coco91_class

    from yqt.data import COCO80_TO_91

    assert list(COCO80_TO_91) == list(coco80_to_coco91_class())


def test_smoke_reports_providers_and_detections(baseline_onnx: Path, tmp_path: Path):
    result = run_yqt("smoke", str(baseline_onnx), "--json", "-n", "3", runs_dir=tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)  # stdout is exactly one JSON document
    assert doc["contract"]["passed"] and doc["passed"] and doc["schema"] == "yqt/smoke/3"
    assert doc["providers"]["used"]
    assert doc["providers"]["requested"][0] == "CUDAExecutionProvider"
    names = [d["class_name"] for d in doc["top_detections"]]
    assert "bus" in names and names.count("person") >= 3
    assert doc["latency"]["n"] == 3


def test_require_cuda_fails_with_exit_1_without_cuda(baseline_onnx: Path, tmp_path: Path):
    from yqt.runtime import cuda_status

    if cuda_status()[0]:
        pytest.skip("CUDA is available here; this checks the CPU-only failure path")
    result = run_yqt("smoke", str(baseline_onnx), "--require-cuda", "-n", "1", runs_dir=tmp_path / "runs")
    assert result.returncode == 1
    assert "CUDAExecutionProvider did not attach" in result.stderr
    assert "Traceback" not in result.stderr
    # ORT's own multi-line CUDA load error is replaced by our one-line note.
    assert "provider_bridge_ort" not in result.stderr and "Failed to load library" not in result.stderr


def test_eval_matches_reference_map(baseline_eval):
    m = baseline_eval.metrics
    assert m.mAP_50_95 == pytest.approx(REFERENCE_MAP, abs=0.003)
    assert m.mAP_50 == pytest.approx(REFERENCE_MAP50, abs=0.003)
    assert baseline_eval.num_images == 100


def test_metrics_json_records_what_produced_it(baseline_eval):
    doc = json.loads(Path(baseline_eval.metrics_path).read_text())
    for key in ("mAP_50_95", "mAP_50", "mAP_75", "mAP_small", "mAP_medium", "mAP_large"):
        assert 0.0 <= doc["metrics"][key] <= 1.0
    assert doc["num_images"] == len(doc["image_ids"]) == 100
    assert doc["image_ids"] == sorted(doc["image_ids"])
    from yqt.data import ids_sha256
    from yqt.runs import sha256_file

    assert doc["image_ids_sha256"] == ids_sha256(doc["image_ids"])
    assert doc["onnx_sha256"] == sha256_file(Path(doc["onnx_path"]))
    assert doc["providers_used"] == ["CPUExecutionProvider"]
    assert {"python", "torch", "ultralytics", "brevitas", "onnx", "onnxruntime", "pycocotools"} <= set(doc["versions"])
    assert doc["latency"]["n"] == 100 and doc["latency"]["median_ms"] > 0
    assert doc["imgsz"] == 640 and doc["conf"] == 0.001
    assert doc["config"]["max_images"] == 100
    assert doc["model"]["yqt.mode"] == "baseline"
    assert doc["created"]
    detections = json.loads(Path(doc["detections_path"]).read_text())
    assert len(detections) == doc["num_detections"] > 0
    assert {d["image_id"] for d in detections} <= set(doc["image_ids"])
    per_image = {}
    for d in detections:
        per_image[d["image_id"]] = per_image.get(d["image_id"], 0) + 1
        assert d["score"] > 0.001
    assert max(per_image.values()) <= 300


def test_eval_json_output_is_one_document(baseline_onnx: Path, coco_root: Path, tmp_path: Path):
    result = run_yqt(
        "eval", str(baseline_onnx), "--coco-root", str(coco_root), "--max-images", "3", "--json",
        "--run", "json-check", "--providers", "cpu", runs_dir=tmp_path / "runs",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["num_images"] == 3
    assert (tmp_path / "runs" / "json-check" / "yolov10n-baseline-fp32-coco" / "metrics.json").is_file()


@pytest.mark.slow
def test_too_many_images_uses_all_and_warns(baseline_onnx: Path, coco_root: Path, tmp_path: Path):
    ids = tmp_path / "ids.txt"
    ids.write_text("139\n802\n")
    result = run_yqt(
        "eval", str(baseline_onnx), "--coco-root", str(coco_root), "--image-ids-list", str(ids),
        "--providers", "cpu", "--json", "--run", "ids", runs_dir=tmp_path / "runs",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["image_ids"] == [139, 802]
    result = run_yqt(
        "eval", str(baseline_onnx), "--annotations", str(coco_root / "annotations/instances_val2017.json"),
        "--images-dir", str(coco_root / "val2017"), "--max-images", "100000", "--providers", "cpu", "--json",
        "--workers", "0", "--run", "all", runs_dir=tmp_path / "runs",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "exceeds the 128 images available; using all of them" in result.stderr
    assert json.loads(result.stdout)["num_images"] == 128


def test_incremental_cocoeval_equals_single_shot(baseline_eval):
    """Matching in chunks during inference must give pycocotools' single-shot stats exactly."""
    from yqt.data import load_coco
    from yqt.evaluate import IncrementalCocoEval, run_cocoeval

    detections = json.loads(Path(baseline_eval.detections_path).read_text())
    coco = load_coco(baseline_eval.annotations_path)
    single, _ = run_cocoeval(coco, detections, baseline_eval.image_ids)
    by_image: dict[int, list] = {}
    for d in detections:
        by_image.setdefault(d["image_id"], []).append(d)
    incremental = IncrementalCocoEval(coco, baseline_eval.image_ids, chunk=7)
    for image_id in baseline_eval.image_ids:
        incremental.add(image_id, by_image.get(image_id, []))
    spliced, _ = incremental.finish()
    np.testing.assert_array_equal(spliced.stats, single.stats)
    np.testing.assert_array_equal(single.stats, [getattr(baseline_eval.metrics, k) for k in (
        "mAP_50_95", "mAP_50", "mAP_75", "mAP_small", "mAP_medium", "mAP_large",
        "AR_1", "AR_10", "AR_100", "AR_small", "AR_medium", "AR_large")])  # fmt: skip
