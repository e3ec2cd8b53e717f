"""The CUDA path, on a machine that has one: export in auto mode, quantize, smoke --require-cuda and eval
on the CUDA execution provider. Every test skips, saying why, where CUDA is absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_yqt
from tests.markers import cuda_or_skip

pytestmark = [pytest.mark.integration, pytest.mark.cuda]


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cuda_or_skip()
    runs = tmp_path_factory.mktemp("cuda-runs")
    out = run_yqt("export", "--run", "cuda", "--json", runs_dir=runs)
    assert out.returncode == 0, out.stderr
    return runs


def _onnx(runs: Path, pattern: str) -> Path:
    (path,) = sorted((runs / "cuda" / "onnx").glob(pattern))
    return path


def test_auto_export_chooses_cuda_fp16_or_records_why_not(cuda_run: Path):
    saved = json.loads(next((cuda_run / "cuda" / "export").glob("*.json")).read_text())
    attempts = saved["device_choice"]["attempts"]
    assert attempts[0]["device"] == "cuda"
    chosen = [a for a in attempts if a["outcome"] == "chosen"]
    assert len(chosen) == 1
    if chosen[0]["device"] != "cuda":  # the fallback must say why CUDA lost
        assert attempts[0]["outcome"] == "failed" and attempts[0]["reason"]


def test_smoke_requires_and_gets_cuda(cuda_run: Path):
    model = _onnx(cuda_run, "*-baseline-*.onnx")
    out = run_yqt("smoke", str(model), "--require-cuda", "--json", runs_dir=cuda_run)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["providers"]["used"][0] == "CUDAExecutionProvider"
    assert not any("disable_quant_qdq" in o for o in doc["providers"]["session_options"])


def test_w8a16_quantizes_and_runs_on_cuda(cuda_run: Path):
    out = run_yqt("quantize", "--mode", "w8a16", "--run", "cuda", "--json", runs_dir=cuda_run)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["passed"] and doc["smoke"]["providers"]["used"][0] == "CUDAExecutionProvider"


def test_eval_on_cuda_matches_the_cpu_contract(cuda_run: Path, coco_root: Path):
    model = _onnx(cuda_run, "*-baseline-*.onnx")
    out = run_yqt("eval", str(model), "--coco-root", str(coco_root), "--max-images", "100", "--json",
                  runs_dir=cuda_run)  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["providers_used"][0] == "CUDAExecutionProvider"
    assert abs(doc["metrics"]["mAP_50_95"] - 0.4459) < 0.01  # the CPU fp32 reference on the same ids
