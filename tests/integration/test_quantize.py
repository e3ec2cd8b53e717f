"""W8A16: Brevitas PTQ on the real yolov10n, QCDQ export, gate, parity and the accuracy check."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_one_line_error, run_yqt

pytestmark = pytest.mark.integration

MAX_DROP = 0.003  # W8A16 may lose at most 0.3 pt mAP50-95 against the float baseline


def test_quantize_passes_gate_parity_and_publishes(w8a16):
    assert w8a16.passed, w8a16.failures
    assert w8a16.onnx.path.name == "yolov10n-w8a16-qcdq-ptq.onnx"
    assert w8a16.onnx_opt.path.name == "yolov10n-w8a16-qcdq-ptq-opt.onnx"
    assert w8a16.gate.passed and w8a16.gate_opt.passed
    assert w8a16.parity.images == 16 and w8a16.parity.reference_detections >= 30
    assert w8a16.parity.matched_fraction >= 0.99
    assert w8a16.smoke is not None and w8a16.smoke.contract.passed


def test_quantize_result_records_the_versions_and_torch_threads_that_made_it(w8a16):
    import brevitas
    import torch

    assert w8a16.versions["brevitas"] == brevitas.__version__ and w8a16.versions["torch"] in torch.__version__
    # In-process as from the CLI (test_lowbit.py): the count a fresh process gets, not ultralytics' 1.
    fresh = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert w8a16.torch_threads == torch.get_num_threads() == int(fresh.stdout)
    saved = json.loads((w8a16.onnx.path.parents[1] / "quantize" / f"{w8a16.onnx.path.stem}.json").read_text())
    assert saved["torch_threads"] == w8a16.torch_threads and saved["versions"] == dict(w8a16.versions)


def test_dfl_conv_stays_float_and_everything_else_is_quantized(w8a16):
    floats = [d.name for d in w8a16.layers if not d.quantized]
    assert floats == ["model.23.dfl.conv"]
    assert sum(d.quantized for d in w8a16.layers) == 82


def test_qcdq_structure_counted_with_onnx_directly(w8a16):
    """int8 initializer → Clip → DequantizeLinear(axis=0, per-channel) → Conv, and no QuantizeLinear."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(w8a16.onnx.path))
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["QuantizeLinear"] == 0
    assert ops["DequantizeLinear"] == 82
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    quantized_convs = 0
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        dq = producer.get(conv.input[1])
        if dq is None:
            assert "dfl" in conv.name and inits[conv.input[1]].dtype == np.float32
            continue
        assert dq.op_type == "DequantizeLinear"
        assert {a.name: a.i for a in dq.attribute}["axis"] == 0
        clip = producer[dq.input[0]]
        assert clip.op_type == "Clip"
        weights = inits[clip.input[0]]
        assert weights.dtype == np.int8 and np.abs(weights).max() <= 127
        assert inits[dq.input[1]].shape == (weights.shape[0],)  # one scale per output channel
        quantized_convs += 1
    assert quantized_convs == 82


def test_qcdq_file_is_about_four_times_smaller(w8a16):
    assert w8a16.size.float_source.endswith("in this run")
    assert w8a16.size.ratio > 3.3  # int8 weights are 4x smaller; fp32 biases and scales stay
    from yqt.graph import inspect_graph

    baseline = inspect_graph(w8a16.onnx.path.with_name("yolov10n-baseline-fp32.onnx")).summary
    quant = inspect_graph(w8a16.onnx.path).summary
    weight_ratio = baseline.float_initializer_bytes / (quant.int_initializer_bytes + quant.float_initializer_bytes)
    assert weight_ratio > 3.5


def test_w8a16_accuracy_within_bound_of_float(w8a16_eval, baseline_eval):
    quant = w8a16_eval
    assert quant.image_ids_sha256 == baseline_eval.image_ids_sha256
    delta = quant.metrics.mAP_50_95 - baseline_eval.metrics.mAP_50_95
    print(f"float {baseline_eval.metrics.mAP_50_95:.4f}  w8a16 {quant.metrics.mAP_50_95:.4f}  delta {delta:+.4f}")
    assert delta >= -MAX_DROP
    assert quant.model["yqt.mode"] == "w8a16"


def test_manifest_records_the_quantize_step(w8a16):
    manifest = json.loads((w8a16.onnx.path.parents[1] / "run.json").read_text())
    step = [s for s in manifest["steps"] if s["name"] == "quantize-w8a16"][-1]
    assert step["status"] == "ok" and step["summary"]["passed"]
    assert {a["kind"] for a in step["artifacts"]} == {"onnx", "onnx-opt", "quantize-result"}
    assert step["summary"]["quantized_layers"] == 82


def test_unmatched_exclude_pattern_warns_and_head_exclusion_works():
    from yqt.models import load_detector
    from yqt.quant.layers import LayerPlan, quantize_module
    from yqt.quant.modes import get_mode

    detector = load_detector()
    plan = LayerPlan(exclude=("nothing.here*", "model.23"))
    _, decisions, warnings = quantize_module(detector.module, get_mode("w8a16"), plan)
    assert any("'nothing.here*' matched no layer" in w for w in warnings)
    floats = {d.name for d in decisions if not d.quantized}
    assert all(name.startswith("model.23.") for name in floats) and len(floats) > 10


@pytest.mark.slow
def test_export_failure_on_every_device_publishes_nothing(tmp_path: Path):
    runs = tmp_path / "runs"
    result = run_yqt("quantize", "--opset", "10", "--run", "fail", runs_dir=runs)
    assert_one_line_error(result, "export failed on every device", "cpu fp32", "Opset 13")
    assert not list((runs / "fail" / "onnx").glob("*.onnx"))
    manifest = json.loads((runs / "fail" / "run.json").read_text())
    assert manifest["steps"][-1]["status"] == "failed"


@pytest.mark.slow
def test_fallback_reasons_are_listed_for_each_device(tmp_path: Path):
    from yqt.errors import YqtError
    from yqt.export import Candidate, export_with_fallback
    from yqt.models import load_detector

    def broken(module, example, path):
        raise RuntimeError("QuantTensor not valid")

    detector = load_detector()
    candidates = [Candidate("cuda", "fp16", "torch.cuda.is_available() is False"), Candidate("cpu", "fp32")]
    with pytest.raises(YqtError, match=r"cuda fp16: torch.cuda.is_available\(\) is False; cpu fp32: .*QuantTensor"):
        export_with_fallback(detector.module, 640, candidates, broken, _bus(), tmp_path, ("auto", None))
    assert not list(tmp_path.glob("*.onnx"))


def _bus() -> Path:
    from yqt.data import default_smoke_image

    return default_smoke_image()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--mode", "w3a3"], ["unknown quantization mode 'w3a3'", "w8a16"]),
        (["--mode", "w8a8"], ["--mode w8a8 needs calibration images", "--coco-root DIR"]),
        (["--exclude", "*"], ["nothing left to quantize", "--exclude"]),
    ],
)
def test_quantize_bad_input(tmp_path: Path, args: list[str], fragments: list[str]):
    runs = tmp_path / "runs"
    assert_one_line_error(run_yqt("quantize", *args, runs_dir=runs), *fragments)
    assert not runs.exists()


def test_quantize_refuses_a_checkpoint_that_is_not_a_detector(tmp_path: Path):
    import torch
    from ultralytics import YOLO

    ckpt = tmp_path / "yolov8n-cls.pt"
    torch.save({"model": YOLO("yolov8n-cls.yaml").model}, ckpt)
    result = run_yqt("quantize", "--weights", str(ckpt), runs_dir=tmp_path / "runs")
    assert_one_line_error(result, "not a YOLO detector", "head is Classify")


@pytest.mark.slow
@pytest.mark.parametrize("omp", [None, "1"])
def test_loading_the_model_leaves_torch_its_threads(omp: str | None):
    """Ultralytics sets OMP_NUM_THREADS=1 on import; unless the user did, yqt's torch work (GPTQ, the
    sensitivity sweep) must still use every core, and processes yqt starts must not inherit the 1."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if omp is not None:
        env["OMP_NUM_THREADS"] = omp

    def python(code: str) -> list[str]:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    (default,) = python("import torch; print(torch.get_num_threads())")
    # yqt first, torch only afterwards: the order in which ultralytics' setting would stick
    loaded = "from yqt.models import load_detector; load_detector(None)\nimport os, torch\n"
    after, variable = python(loaded + "print(torch.get_num_threads(), os.environ.get('OMP_NUM_THREADS'))")
    assert after == default and variable == (omp or "None")
