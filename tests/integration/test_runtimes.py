"""``--runtime ort|openvino`` on smoke and eval: OpenVINO scores the float file as ORT does, the
record says which runtime, version, device and precision ran it, and every bad input is one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CliResult, assert_one_line_error, run_yqt
from tests.markers import openvino_or_skip

pytestmark = pytest.mark.integration

FAKE_IR = b'<?xml version="1.0"?>\n<net name="torch_jit" version="11">\n<layers>\n</layers>\n</net>\n'


@pytest.fixture(scope="module")
def openvino_eval(baseline_onnx: Path, coco_root: Path):
    """The float baseline scored on OpenVINO, on the same first 100 dev ids, in the baseline's run."""
    openvino_or_skip()
    from yqt.evaluate import evaluate
    from yqt.records import EvalConfig, Runtime
    from yqt.runs import Run

    cfg = EvalConfig(onnx=baseline_onnx, coco_root=coco_root, max_images=100, runtime=Runtime.OPENVINO)
    return evaluate(cfg, Run.containing(baseline_onnx))


@pytest.mark.slow
def test_openvino_eval_of_the_float_file_matches_ort(openvino_eval, baseline_eval):
    import openvino

    ov, ort = openvino_eval.metrics.mAP_50_95, baseline_eval.metrics.mAP_50_95
    assert abs(ov - ort) <= 0.003, f"OpenVINO {ov:.4f} vs ORT {ort:.4f}"
    assert openvino_eval.image_ids == baseline_eval.image_ids
    info = openvino_eval.runtime
    assert info.runtime.value == "openvino" and info.device == "CPU"
    assert info.version == openvino.__version__.split("-")[0]
    assert info.precision in ("f32", "bf16", "f16")
    assert info.kernels.convs == 83 and info.kernels.int8_convs == 0  # yolov10n's convs, all float
    assert openvino_eval.providers_used == ("OpenVINO CPU",)
    # Beside the ORT evaluation of the same file, not over it: compare shows both.
    assert openvino_eval.name == baseline_eval.name + "-openvino"
    doc = json.loads(openvino_eval.metrics_path.read_text())
    assert doc["schema"] == "yqt/eval/3"
    assert doc["runtime"]["runtime"] == "openvino" and doc["runtime"]["precision"] == info.precision
    assert doc["config"]["runtime"] == "openvino"
    ort_doc = json.loads(baseline_eval.metrics_path.read_text())
    assert ort_doc["runtime"]["runtime"] == "ort" and ort_doc["runtime"]["kernels"]["convs"] == 83


@pytest.mark.slow
def test_smoke_on_openvino_records_the_runtime_in_the_run(baseline_onnx: Path, tmp_path: Path):
    openvino_or_skip()
    result = run_yqt("smoke", str(baseline_onnx), "--runtime", "openvino", "--threads", "2", "-n", "2", "--json",
                     runs_dir=tmp_path / "runs")  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema"] == "yqt/smoke/3" and doc["passed"] and doc["num_detections"] >= 4
    assert doc["runtime"]["runtime"] == "openvino" and doc["runtime"]["threads"] == 2
    assert "INFERENCE_NUM_THREADS=2" in doc["providers"]["session_options"]
    saved = Path(baseline_onnx).parents[1] / "smoke" / f"{Path(baseline_onnx).stem}-openvino.json"
    assert json.loads(saved.read_text())["runtime"]["device"] == "CPU"


@pytest.mark.slow
def test_openvino_runs_an_ir_that_ort_refuses(baseline_onnx: Path, tmp_path: Path):
    openvino_or_skip()
    import openvino as ov

    xml = tmp_path / "yolov10n.xml"
    ov.save_model(ov.Core().read_model(str(baseline_onnx)), str(xml))
    result = run_yqt("smoke", str(xml), "--runtime", "openvino", "-n", "1", runs_dir=tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    assert_one_line_error(run_yqt("smoke", str(xml), runs_dir=tmp_path / "runs"), "OpenVINO IR", "--runtime openvino")


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("command", ["smoke", "eval", "inspect-graph"])
def test_an_openvino_ir_passed_to_an_ort_only_command(command: str, tmp_path: Path):
    xml = tmp_path / "model.xml"
    xml.write_bytes(FAKE_IR)
    args = [command, str(xml), *(["--coco-root", str(tmp_path)] if command == "eval" else [])]
    line = assert_one_line_error(run_yqt(*args, runs_dir=tmp_path / "runs"), "model.xml is an OpenVINO IR (.xml)")
    assert "ONNX Runtime" in line
    assert not (tmp_path / "runs").exists()


def _yqt_without_openvino(*args: str, runs_dir: Path) -> CliResult:
    """yqt in a Python where ``import openvino`` fails, as it does without the extra."""
    code = ("import sys; sys.modules['openvino'] = None; sys.argv = ['yqt', *sys.argv[1:]]; "
            "from yqt.cli import main; main()")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=runs_dir.parent,
                          env={**__import__("os").environ, "YQT_RUNS_DIR": str(runs_dir)}, timeout=300)  # fmt: skip
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize("command", ["smoke", "eval"])
def test_runtime_openvino_without_the_extra(command: str, tmp_path: Path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"\x08\x07")  # never read: the missing runtime is named first
    data = ["--coco-root", str(tmp_path)] if command == "eval" else []
    args = [command, str(model), "--runtime", "openvino", *data]
    result = _yqt_without_openvino(*args, runs_dir=tmp_path / "runs")
    assert_one_line_error(result, "--runtime openvino needs OpenVINO", "yqt[openvino]")


@pytest.mark.parametrize("command", ["smoke", "eval"])
def test_an_unknown_runtime(command: str, tmp_path: Path):
    result = run_yqt(command, str(tmp_path / "m.onnx"), "--runtime", "tensorrt", runs_dir=tmp_path / "runs")
    assert_one_line_error(result, "unknown --runtime 'tensorrt'", "use ort or openvino")


@pytest.mark.parametrize("command", ["smoke", "eval"])
def test_zero_threads(command: str, tmp_path: Path):
    result = run_yqt(command, str(tmp_path / "m.onnx"), "--threads", "0", runs_dir=tmp_path / "runs")
    assert_one_line_error(result, "--threads must be at least 1, got 0")
