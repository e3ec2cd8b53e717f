"""Checks that must be able to fail (issue 25): detection parity both ways, export verification per
output column, and smoke's expectation of detections. Synthetic outputs and tiny ONNX models, no torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from yqt.quant import parity

BUS = np.array([[100.0, 100.0, 300.0, 400.0, 0.9, 5.0]], dtype=np.float32)
PERSON = np.array([[400.0, 120.0, 460.0, 380.0, 0.8, 0.0]], dtype=np.float32)


def _judge(pairs, tol=parity.WEIGHT_ONLY):
    return parity.judge_parity(pairs, tol, provider="CPUExecutionProvider")


def test_parity_fails_when_ort_adds_confident_detections_pytorch_does_not_have():
    both = _judge([(BUS, BUS)])
    assert both.passed and both.matched == both.ort_matched == 1
    extra = _judge([(BUS, np.concatenate([BUS, PERSON]))])
    assert extra.matched_fraction == 1.0  # every PyTorch detection is matched ...
    assert extra.ort_detections == 2 and extra.ort_matched == 1 and extra.ort_matched_fraction == 0.5
    assert not extra.passed  # ... but ORT's second confident box has no PyTorch counterpart


def test_parity_fails_when_ort_misses_a_detection_and_keeps_its_tolerances():
    missed = _judge([(np.concatenate([BUS, PERSON]), BUS)])
    assert not missed.passed and missed.matched_fraction == 0.5 and missed.ort_matched_fraction == 1.0
    shifted = BUS.copy()
    shifted[0, :4] += 4.0  # IoU about 0.95: inside the activation modes' 0.85, outside weight-only's 0.99
    assert _judge([(BUS, shifted)], parity.INT8_ACTIVATIONS).passed
    assert not _judge([(BUS, shifted)], parity.WEIGHT_ONLY).passed
    near_bar = BUS.copy()
    near_bar[0, 4] = parity.PARITY_SCORE * 0.95  # just below the bar on one side: not a miss either way
    assert _judge([(BUS, near_bar)]).passed and _judge([(near_bar, BUS)]).passed


def test_parity_with_nothing_confident_on_either_side_compares_the_top_rows():
    faint = np.concatenate([BUS, PERSON])
    faint[:, 4] = [0.002, 0.001]
    report = _judge([(faint, faint)])
    assert report.passed and report.reference_detections == 2 and "10 best were compared" in report.note
    wrong_class = faint.copy()
    wrong_class[1, 5] = 7.0
    assert not _judge([(faint, wrong_class)]).passed


# ------------------------------------------------------------------------------------ export verification


def _end2end(rows: np.ndarray, n: int = 300) -> np.ndarray:
    """An end-to-end ``[N,6]`` output: ``rows`` first, then faint filler rows."""
    out = np.zeros((n, 6), dtype=np.float32)
    out[:, :4] = [10.0, 10.0, 20.0, 20.0]
    out[:, 4] = np.linspace(0.01, 0.001, n)
    out[: len(rows)] = rows
    return out


def test_export_verification_holds_the_class_exactly_and_the_score_tightly():
    from yqt.export import compare_outputs

    ref = _end2end(np.concatenate([BUS, PERSON]))
    assert compare_outputs(ref, ref.copy(), "fp16").passed
    wrong_class = ref.copy()
    wrong_class[1, 5] = 1.0  # person → bicycle: within the old fp16 tolerance of 1.0
    check = compare_outputs(ref, wrong_class, "fp16")
    assert not check.passed and check.class_mismatches == 1
    wrong_score = ref.copy()
    wrong_score[0, 4] -= 0.9 * 0.9  # a score off by 0.81
    check = compare_outputs(ref, wrong_score, "fp16")
    assert not check.passed and abs(check.score_diff - 0.81) < 1e-6
    half_pixel = ref.copy()
    half_pixel[0, :4] += 0.5  # fp16 boxes: one ulp at 512-1024 px is 0.5 px
    assert compare_outputs(ref, half_pixel, "fp16").passed and not compare_outputs(ref, half_pixel, "fp32").passed


def test_export_verification_without_confident_rows_compares_the_top_rows():
    from yqt.export import compare_outputs

    ref = _end2end(np.zeros((0, 6), np.float32))  # nothing near 0.25: a random-init model
    got = ref.copy()
    got[0, :4] += 50.0  # its best row moved 50 px
    check = compare_outputs(ref, got, "fp32")
    assert not check.passed and check.confident_rows == 0 and check.compared_rows == parity.RANDOM_INIT_TOP
    assert check.box_diff_px == 50.0


def test_export_verification_of_a_raw_head_compares_anchors_and_their_best_class():
    from yqt.export import compare_outputs

    ref = np.zeros((4 + 3, 50), dtype=np.float32)  # [4+nc, A]: 3 classes, 50 anchors
    ref[:4] = 30.0
    ref[4:, 7] = [0.1, 0.9, 0.2]  # one confident anchor, class 1
    assert compare_outputs(ref, ref.copy(), "fp32").passed
    swapped = ref.copy()
    swapped[4:, 7] = [0.9, 0.1, 0.2]  # the same best score, another class
    check = compare_outputs(ref, swapped, "fp32")
    assert not check.passed and check.class_mismatches == 1 and check.compared_rows == 1


# ------------------------------------------------------------------------------------ smoke's expectation


def _constant_detector(path: Path, rows: np.ndarray, meta: dict[str, str] | None = None) -> Path:
    """An ONNX "detector" whose end-to-end output is ``rows`` for any image."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes = [
        helper.make_node("ReduceMax", ["images"], ["top"], keepdims=0),
        helper.make_node("Mul", ["top", "zero"], ["nothing"]),
        helper.make_node("Add", ["rows", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes, "constant", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 640, 640])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, len(rows), 6])],
        [numpy_helper.from_array(rows[None].astype(np.float32), "rows"),
         numpy_helper.from_array(np.array(0.0, np.float32), "zero")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (meta or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def _smoke(onnx_path: Path, **kw):
    from yqt.records import SmokeConfig
    from yqt.runtime import smoke

    return smoke(SmokeConfig(onnx=onnx_path, providers=("cpu",), runs=1, **kw))


def test_smoke_fails_a_coco_detector_that_finds_nothing_on_bus_jpg(tmp_path: Path):
    pytest.importorskip("onnxruntime")
    empty = _smoke(_constant_detector(tmp_path / "empty.onnx", _end2end(np.zeros((0, 6), np.float32))))
    assert not empty.passed and empty.num_detections == 0 and empty.min_detections == 1
    assert "0 detections at score >= 0.25, expected at least 1" in (empty.failure or ""), empty.failure
    assert "bus.jpg" in empty.expectation
    found = _smoke(_constant_detector(tmp_path / "found.onnx", _end2end(np.concatenate([BUS, PERSON]))))
    assert found.passed and found.num_detections == 2 and found.failure is None


def test_smoke_takes_the_users_expectation_for_their_own_image(tmp_path: Path):
    pytest.importorskip("onnxruntime")
    from yqt.data import default_smoke_image

    zidane = default_smoke_image().with_name("zidane.jpg")
    empty = _constant_detector(tmp_path / "empty.onnx", _end2end(np.zeros((0, 6), np.float32)))
    found = _constant_detector(tmp_path / "found.onnx", _end2end(np.concatenate([BUS, PERSON])))
    own = _smoke(empty, image=zidane)  # nothing is known about the user's own image ...
    assert own.passed and own.min_detections == 0 and "--min-detections" in own.expectation
    stated = _smoke(found, image=zidane, min_detections=3)  # ... unless they say what to expect
    assert not stated.passed and "2 detections at score >= 0.25, expected at least 3" in (stated.failure or "")
    assert _smoke(empty, min_detections=0).passed  # bus.jpg, with the expectation turned off
    random_init = _constant_detector(tmp_path / "random.onnx", _end2end(np.zeros((0, 6), np.float32)),
                                     {"yqt.pretrained": "false"})  # fmt: skip
    assert _smoke(random_init).passed  # random weights find nothing on bus.jpg by design


def test_smoke_min_detections_in_json_and_bad_value(tmp_path: Path):
    pytest.importorskip("onnxruntime")
    from tests.conftest import assert_one_line_error, run_yqt

    empty = _constant_detector(tmp_path / "empty.onnx", _end2end(np.zeros((0, 6), np.float32)))
    result = run_yqt("smoke", str(empty), "--providers", "cpu", "-n", "1", "--json", runs_dir=tmp_path / "runs")
    doc = json.loads(result.stdout)
    assert result.returncode == 1 and not doc["passed"] and doc["min_detections"] == 1, result.stderr
    assert "expected at least 1" in doc["failure"]
    bad = run_yqt("smoke", str(empty), "--min-detections", "-1", runs_dir=tmp_path / "runs")
    assert_one_line_error(bad, "--min-detections must be 0 or more")


# ------------------------------------------------------------------------------------ activation ranges


def _conv_mul_conv(path: Path) -> tuple[Path, dict]:
    """x → Conv → Mul by a Constant node (as yolov10n's attention scale) → Conv → y (a graph output), and
    yqt's integer weights for both convs."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from yqt.quant.activations import IntWeights

    rng = np.random.default_rng(0)
    weights, inits = {}, []
    for name in ("w1", "w2"):
        ints = rng.integers(-127, 128, size=(4, 4 if name == "w2" else 3, 1, 1)).astype(np.int8)
        scale = np.full(4, 0.01, np.float32)
        inits.append(numpy_helper.from_array(ints.astype(np.float32) * 0.01, name))
        weights[f"conv_{name}"] = IntWeights(ints, scale, 8, None)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], name="conv_w1"),
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array(0.37, np.float32))),
        helper.make_node("Mul", ["a", "c"], ["m"], name="mul"),
        helper.make_node("Conv", ["m", "w2"], ["y"], name="conv_w2"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path, weights


def test_every_activation_scale_comes_from_yqts_calibration_and_the_gate_says_so(tmp_path: Path):
    pytest.importorskip("onnxruntime")
    from dataclasses import replace

    from yqt.quant.activations import quantize_activations
    from yqt.quant.gate import activation_ranges_check
    from yqt.records import Layout

    float_onnx, weights = _conv_mul_conv(tmp_path / "float.onnx")
    arrays = [np.random.default_rng(i).random((1, 3, 8, 8), dtype=np.float32) for i in range(3)]
    report = quantize_activations(float_onnx, tmp_path / "qdq.onnx", arrays, weights, Layout.ORT, 99.999)
    # The Constant and the graph output too: ORT quantizes both, from its own min/max unless yqt gives a range.
    assert report.scales_not_from_calibration == () and report.scales_checked >= 4, report
    check = activation_ranges_check(report)
    assert check.passed and f"all {report.scales_checked}" in check.detail
    stray = activation_ranges_check(replace(report, scales_not_from_calibration=("c",)))
    assert not stray.passed and "c" in stray.detail
