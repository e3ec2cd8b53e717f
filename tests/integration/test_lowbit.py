"""w8a8, w4a16 and w4a8 on the real yolov10n: gates, storage, inspect-graph agreement, int8 kernels,
accuracy, and the calibration-image guard in eval. Calibration uses few train2017 images to keep CI
short; the full 64-image numbers come from benchmarks/lowbit_modes.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, run_yqt

pytestmark = pytest.mark.integration

W8A8_MAX_DROP = 0.005  # 0.5 pt mAP50-95


def _quantize(mode: str, baseline_onnx: Path, coco_root: Path, run=None, **kw):
    from yqt.quantize import quantize
    from yqt.records import QuantizeConfig
    from yqt.runs import Run

    cfg = QuantizeConfig(
        mode=mode, coco_root=coco_root, parity_images=coco_root / "val2017", providers=("cpu",), device="cpu", **kw
    )
    return quantize(cfg, run or Run.containing(baseline_onnx))


@pytest.fixture(scope="session")
def w4a16(baseline_onnx: Path, coco_root: Path):
    return _quantize("w4a16", baseline_onnx, coco_root, calib_images=6, keep_8bit=("model.0",))


@pytest.fixture(scope="session")
def w4a8(baseline_onnx: Path, coco_root: Path):
    # 16 GPTQ images, not 6: on 6 the block-sequential GPTQ's w4a8 drew a model whose int8 activations
    # matched PyTorch's fake-quant on 85.9% of detections (parity needs 90%); on 16, and at the
    # default 128 (benchmarks and the README's pipeline sweep), parity passes.
    return _quantize("w4a8", baseline_onnx, coco_root, calib_images=16, keep_8bit=("model.[0-2]",))


def _census_bits(path: Path) -> dict[str, int | None]:
    from yqt.graph import inspect_graph, module_path

    return {
        module_path(layer.name): (layer.weight_bits if layer.weight_quantized else None)
        for layer in inspect_graph(path).layers
        if layer.has_weight
    }


def _assert_passed_and_agrees_with_inspect_graph(result) -> None:
    assert result.passed, result.failures
    assert result.gate.passed and result.gate_opt.passed
    assert result.parity.passed and result.parity.reference_detections >= 30
    census = _census_bits(result.onnx.path)
    planned = {d.name: d.bits for d in result.layers}
    assert census == planned
    assert _census_bits(result.onnx_opt.path) == planned


def test_w8a8_passes_gate_with_every_conv_fused_to_int8(w8a8):
    _assert_passed_and_agrees_with_inspect_graph(w8a8)
    act = w8a8.activations
    assert act.layout == "ort" and act.images == 64
    assert act.int8_convs_fused == act.int8_convs_expected == 82
    # The head's post-processing (DFL, decode, sigmoid, TopK, gather) stays float, found from the graph.
    excluded = set(act.excluded_nodes)
    assert "/model.23/TopK" in excluded and "/model.23/dfl/Softmax" in excluded and "/model.23/Sigmoid" in excluded
    assert not any("one2one_cv3.0.2/Conv" in n for n in excluded)  # the final class convs are quantized
    assert w8a8.storage.format == "int8"


def test_w8a8_records_its_calibration_images_in_the_run_and_the_file(w8a8, coco_root: Path):
    from yqt.export import read_metadata

    calib = w8a8.calibration
    names = sorted(p.name for p in (coco_root / "train2017").glob("*.jpg"))[:64]
    assert [i.name for i in calib.images] == names and all(len(i.sha256) == 64 for i in calib.images)
    meta = json.loads(read_metadata(w8a8.onnx.path)["yqt.calibration"])
    assert meta["sha256"] == calib.sha256 and [n for n, _ in meta["images"]] == names
    manifest = json.loads((w8a8.onnx.path.parents[1] / "run.json").read_text())
    step = [s for s in manifest["steps"] if s["name"] == "quantize-w8a8"][-1]
    assert step["summary"]["calibration_sha256"] == calib.sha256 and step["summary"]["int8_convs_fused"] == 82


def test_gptq_modes_calibrate_on_128_images_by_default_and_w8a8_on_64(coco_root: Path):
    from yqt.quant.modes import get_mode
    from yqt.quantize import _calibration
    from yqt.records import QuantizeConfig

    names = sorted(p.name for p in (coco_root / "train2017").glob("*.jpg"))
    for mode, gptq, count in (("w4a16", True, 128), ("w4a8", True, 128), ("w4a8", False, 64), ("w8a8", True, 64)):
        calib, warnings = _calibration(QuantizeConfig(mode=mode, gptq=gptq, coco_root=coco_root), get_mode(mode))
        assert [i.name for i in calib.images] == names[:count] and calib.requested == count and not warnings, mode


def test_w8a8_accuracy_within_half_a_point_of_float(w8a8_eval, baseline_eval):
    quant = w8a8_eval
    delta = quant.metrics.mAP_50_95 - baseline_eval.metrics.mAP_50_95
    print(f"float {baseline_eval.metrics.mAP_50_95:.4f}  w8a8 {quant.metrics.mAP_50_95:.4f}  delta {delta:+.4f}")
    assert delta >= -W8A8_MAX_DROP
    assert quant.model["yqt.activations"] == "int8"
    assert not any("disable_quant_qdq" in o for o in quant.session_options)  # it would undo the int8 kernels


@pytest.mark.slow
def test_w4a16_is_gptq_int4_packed_and_smaller_than_w8a16(w4a16, w8a16):
    _assert_passed_and_agrees_with_inspect_graph(w4a16)
    assert w4a16.gptq_layers == 81 and w4a16.timings["gptq_s"] > 0  # model.0 is kept at 8 bits: not solved
    assert w4a16.storage.format == "int4" and w4a16.storage.opset == 21
    kept = [d.name for d in w4a16.layers if d.bits == 8]
    assert kept == ["model.0.conv"]
    assert 4.0 < w4a16.mean_weight_bits < 4.01
    assert w4a16.onnx.size_bytes <= 0.6 * w8a16.onnx.size_bytes
    from yqt.graph import inspect_graph

    layers = [layer for layer in inspect_graph(w4a16.onnx.path).layers if layer.weight_quantized]
    assert sum(layer.weight_dtype == "int4" for layer in layers) == 81


@pytest.mark.slow
def test_weight_only_models_run_with_qdq_folded_on_cpu(w4a16, w8a16):
    for result in (w4a16, w8a16):
        options = result.smoke.providers.session_options
        assert any(o.startswith("session.disable_quant_qdq=1") for o in options), options


@pytest.mark.slow
def test_w4a8_keeps_chosen_layers_at_8_bits_and_fuses_int8_kernels(w4a8):
    _assert_passed_and_agrees_with_inspect_graph(w4a8)
    kept = {d.name for d in w4a8.layers if d.bits == 8}
    assert kept == {"model.0.conv", "model.1.conv", "model.2.cv1.conv", "model.2.cv2.conv", "model.2.m.0.cv1.conv",
                    "model.2.m.0.cv2.conv"}  # fmt: skip
    assert w4a8.activations.int8_convs_fused == 82
    assert w4a8.storage.format == "int8" and "Clip" in w4a8.storage.note
    assert 4.0 < w4a8.mean_weight_bits < 4.1


@pytest.mark.slow
def test_tensorrt_layout_quantizes_conv_inputs_only(baseline_onnx: Path, coco_root: Path, tmp_path: Path):
    from yqt.runs import Run

    run = Run.open(tmp_path / "runs", "trt")  # not the session's run: its w8a8 file is the ort layout's
    result = _quantize("w8a8", baseline_onnx, coco_root, run, calib_images=4, layout="tensorrt", parity_max_images=4)
    assert result.gate.passed, result.gate.checks
    assert result.activations.int8_convs_expected is None
    # Without quantized conv outputs ORT cannot fuse int8 convs: the layout is for TensorRT, not ORT CPU.
    assert result.activations.int8_convs_fused < 10
    assert result.onnx.path.name == "yolov10n-w8a8-qcdq-ptq.onnx"


@pytest.mark.slow
def test_openvino_layout_writes_an_ir_that_openvino_runs_as_int8(baseline_onnx: Path, coco_root: Path, tmp_path: Path):
    """--layout openvino: the gated ONNX and its OpenVINO IR, both gated by the int8 convs OpenVINO
    compiles (one per quantized layer), and the IR scores like the ONNX on OpenVINO."""
    from yqt.evaluate import evaluate
    from yqt.records import EvalConfig, Runtime
    from yqt.runs import Run, sha256_file

    run = Run.open(tmp_path / "runs", "ov")
    result = _quantize("w8a8", baseline_onnx, coco_root, run, calib_images=4, layout="openvino", parity_max_images=4)
    assert result.passed, result.failures
    ir, weights = result.openvino_ir, result.openvino_ir_bin
    assert ir.path == run.onnx_dir / "yolov10n-w8a8-qcdq-ptq.xml" and weights.path == ir.path.with_suffix(".bin")
    assert sha256_file(ir.path) == ir.sha256 and sha256_file(weights.path) == weights.sha256
    [check] = result.gate_ir.checks
    quantized = sum(d.quantized for d in result.layers)
    assert check.name == "openvino_int8_kernels" and check.passed and f"runs {quantized} of" in check.detail
    kinds = {a["kind"] for a in run.latest_step("quantize-w8a8")["artifacts"]}
    assert {"openvino-ir", "openvino-ir-bin"} <= kinds

    def score(path: Path) -> float:
        cfg = EvalConfig(onnx=path, coco_root=coco_root, max_images=8, runtime=Runtime.OPENVINO)
        return evaluate(cfg, run).metrics.mAP_50_95

    assert score(ir.path) == pytest.approx(score(result.onnx.path), abs=0.003)


def test_eval_refuses_to_score_calibration_images(w8a8, coco_root: Path, tmp_path: Path):
    args = (
        "eval", str(w8a8.onnx.path), "--images-dir", str(coco_root / "train2017"),
        "--annotations", str(coco_root / "annotations" / "instances_train2017.json"),
        "--max-images", "4", "--providers", "cpu", "--run", "calib-check",
    )  # fmt: skip
    refused = run_yqt(*args, runs_dir=tmp_path / "runs")
    assert_one_line_error(refused, "4 of the 4 scored images were used to calibrate this model", "--force")
    assert not list((tmp_path / "runs").rglob("metrics.json"))
    forced = run_yqt(*args, "--force", "--json", runs_dir=tmp_path / "runs")
    assert forced.returncode == 0, forced.stderr
    assert any("scored anyway (--force)" in w for w in json.loads(forced.stdout)["warnings"])


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["w4a16", "w4a8"])
def test_eval_refuses_calibration_images_in_every_calibrated_mode(mode: str, request, coco_root: Path):
    from yqt.errors import YqtError
    from yqt.evaluate import evaluate
    from yqt.records import EvalConfig

    result = request.getfixturevalue(mode)
    cfg = EvalConfig(
        onnx=result.onnx.path, images_dir=coco_root / "train2017", max_images=3, providers=("cpu",),
        annotations=coco_root / "annotations" / "instances_train2017.json",
    )  # fmt: skip
    with pytest.raises(YqtError, match="3 of the 3 scored images were used to calibrate this model"):
        evaluate(cfg)


@pytest.mark.slow
def test_w8a8_from_the_cli_reports_bits_kernels_and_calibration_and_keeps_stderr_clean(coco_root: Path, tmp_path):
    result = run_yqt(
        "quantize", "--mode", "w8a8", "--coco-root", str(coco_root), "--calib-images", "2", "--parity-max", "2",
        "--providers", "cpu", "--run", "cli", "--json", runs_dir=tmp_path / "runs",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["mean_weight_bits"] == pytest.approx(8.0, abs=1e-3) and doc["activations"]["int8_convs_fused"] == 82
    assert len(doc["calibration"]["images"]) == 2 and doc["size"]["ratio"] > 2.5
    # torch keeps its own thread count although ultralytics, imported by quantize, asks for one
    fresh = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], capture_output=True)
    assert doc["torch_threads"] == int(fresh.stdout) and doc["versions"]["brevitas"]
    # ORT's quantizer calls logging.warning, which would give the root logger a stderr handler and
    # send every later yqt log line to the terminal.
    assert "INFO:" not in result.stderr and "WARNING:root" not in result.stderr, result.stderr


@pytest.mark.slow
def test_onnxsim_copy_is_gated_too(tmp_path: Path):
    pytest.importorskip("onnxsim", reason="the optional onnxsim extra is not installed")
    from yqt.quantize import quantize
    from yqt.records import QuantizeConfig
    from yqt.runs import Run

    cfg = QuantizeConfig(mode="w4a16", gptq=False, simplifier="onnxsim", providers=("cpu",), device="cpu")
    result = quantize(cfg, Run.open(tmp_path, "sim"))
    assert result.passed, result.failures
    assert result.gate_opt.target.endswith("(onnxsim)") and result.gate_opt.passed
    assert set(_census_bits(result.onnx_opt.path).values()) == {4, None}


@pytest.mark.slow
def test_w4a16_at_opset_13_keeps_int8_storage_and_says_so(tmp_path: Path):
    runs = tmp_path / "runs"
    result = run_yqt(
        "quantize", "--mode", "w4a16", "--no-gptq", "--opset", "13", "--keep-8bit", "nothing.here*", "--device", "cpu",
        "--providers", "cpu", "--run", "o13", "--json", runs_dir=runs,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["storage"]["format"] == "int8" and "opset 21" in doc["storage"]["note"]
    assert "--keep-8bit 'nothing.here*' matched no layer" in result.stderr
    assert "4-bit weights are stored as int8 + Clip" in result.stderr
    assert set(_census_bits(Path(doc["onnx"]["path"])).values()) == {4, None}


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--mode", "w8a8", "--calib-dir", "{tmp}/absent"], ["--calib-dir not found", "folder of real images"]),
        (["--mode", "w8a8", "--calib-dir", "{tmp}/empty"], ["no images in --calib-dir", "train2017"]),
        (["--mode", "w4a16", "--calib-dir", "{tmp}/text"], ["no images in --calib-dir"]),
        (["--mode", "w8a8", "--calib-dir", "{coco}/train2017", "--calib-images", "0"], ["--calib-images must be"]),
        (["--mode", "w4a8"], ["--mode w4a8 needs calibration images", "--coco-root DIR"]),
        (["--mode", "w8a8", "--coco-root", "{coco}", "--device", "cuda"], ["FP32 CPU export", "drop --device"]),
        (["--mode", "w8a8", "--layout", "tflite"], ["unknown --layout 'tflite'", "ort or tensorrt"]),
    ],
)
def test_lowbit_bad_input(tmp_path: Path, coco_root: Path, args: list[str], fragments: list[str]):
    (tmp_path / "empty").mkdir()
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "notes.txt").write_text("no images here")
    runs = tmp_path / "runs"
    argv = [a.format(tmp=tmp_path, coco=coco_root) for a in args]
    assert_one_line_error(run_yqt("quantize", *argv, runs_dir=runs), *fragments)
    assert not runs.exists()


def test_an_undecodable_calibration_image_is_named(tmp_path: Path, coco_root: Path):
    calib = tmp_path / "calib"
    calib.mkdir()
    shutil.copy(sorted((coco_root / "train2017").glob("*.jpg"))[0], calib / "a.jpg")
    (calib / "b.jpg").write_bytes(b"not a jpeg")
    result = run_yqt("quantize", "--mode", "w8a8", "--calib-dir", str(calib), runs_dir=tmp_path / "runs")
    assert_one_line_error(result, "image cannot be decoded", "b.jpg")
