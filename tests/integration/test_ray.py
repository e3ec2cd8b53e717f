"""``--ray`` on a local Ray instance (2 CPUs, no dashboard): eval, sensitivity and pipeline give the
serial results (detections sha256, mAP, ranking, fingerprints), a killed eval worker is retried to
the same detections, and the serial path never imports Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance for the module, on loopback, no dashboard; yqt's code on the workers' path."""
    from yqt.ray_backend import connect

    assert not ray.is_initialized()
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO / "src")}},
    )  # fmt: skip
    try:
        with connect("auto") as joined:  # an initialised Ray is used as is
            yield joined
    finally:
        ray.shutdown()


def _eval(onnx: Path, coco_root: Path, run_root: Path, run_id: str, cluster=None, images: int = 24):
    from yqt.evaluate import evaluate
    from yqt.records import EvalConfig
    from yqt.runs import Run

    cfg = EvalConfig(onnx=onnx, coco_root=coco_root, max_images=images, providers=("cpu",), name="b")
    kwargs = {} if cluster is None else {"cluster": cluster}
    return evaluate(cfg, Run.open(run_root, run_id), **kwargs)


def _same_eval(serial, sharded) -> None:
    assert sharded.detections_sha256 == serial.detections_sha256
    assert sharded.metrics == serial.metrics  # every COCOeval number, exactly
    assert sharded.image_ids == serial.image_ids and sharded.num_detections == serial.num_detections
    serial_doc = json.loads(Path(serial.metrics_path).read_text())
    sharded_doc = json.loads(Path(sharded.metrics_path).read_text())
    assert sharded_doc["metrics"] == serial_doc["metrics"]
    assert Path(sharded.detections_path).read_bytes() == Path(serial.detections_path).read_bytes()


@pytest.mark.slow
def test_eval_on_ray_equals_serial(cluster, baseline_onnx: Path, coco_root: Path, tmp_path: Path):
    serial = _eval(baseline_onnx, coco_root, tmp_path, "serial")
    sharded = _eval(baseline_onnx, coco_root, tmp_path, "ray", cluster)
    _same_eval(serial, sharded)
    manifest = json.loads((tmp_path / "ray" / "run.json").read_text())
    (step,) = [s for s in manifest["steps"] if s["name"] == "eval-b"]
    assert step["summary"]["ray_shards"] == 2 and step["summary"]["ray_nodes"]


@pytest.mark.slow
def test_a_node_that_sees_another_model_is_one_line(cluster, baseline_onnx: Path, coco_root: Path, tmp_path: Path):
    """The worker checks the model's bytes against the driver's hash before it runs it."""
    from yqt.errors import YqtError
    from yqt.ray_backend import eval_shard

    items = [(1, coco_root / "val2017" / "missing.jpg")]
    wrong = "0" * 64  # not the model's sha256
    cfg = _cfg(baseline_onnx, coco_root)
    ref = cluster._task(eval_shard).remote(cfg, wrong, items, [wrong], [1], None, 1, _version())
    with pytest.raises(YqtError, match=r"sees other bytes at .*yolov10n-baseline-fp32\.onnx"):
        cluster._get(ref, "shard")


def _cfg(onnx: Path, coco_root: Path):
    from yqt.records import EvalConfig

    return EvalConfig(onnx=onnx, coco_root=coco_root, providers=("cpu",))


def _version() -> str:
    from yqt import __version__

    return __version__


def test_serial_eval_does_not_import_ray(baseline_onnx: Path, coco_root: Path, tmp_path: Path):
    code = (
        "import sys\nfrom pathlib import Path\nfrom yqt.evaluate import evaluate\nfrom yqt.records import EvalConfig\n"
        f"evaluate(EvalConfig(onnx=Path({str(baseline_onnx)!r}), coco_root=Path({str(coco_root)!r}), max_images=2,"
        " providers=('cpu',)))\nassert 'ray' not in sys.modules, 'serial eval imported ray'"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr


def _shard_workers() -> list[int]:
    """Pids of Ray workers running an eval shard now (Ray titles a busy worker ``ray::<task>``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::eval_shard"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.mark.slow
def test_a_killed_eval_worker_is_retried_to_the_same_detections(
    cluster, baseline_onnx: Path, coco_root: Path, tmp_path: Path
):
    """SIGKILL the worker of a running shard: Ray runs the shard again (MAX_RETRIES = 2), and the
    eval ends with the serial detections, byte for byte."""
    serial = _eval(baseline_onnx, coco_root, tmp_path, "serial", images=64)
    killed: list[int] = []

    def kill_one() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            pids = _shard_workers()
            if pids:
                time.sleep(1.0)  # let it get into its images
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one)
    killer.start()
    try:
        sharded = _eval(baseline_onnx, coco_root, tmp_path, "ray", cluster, images=64)
    finally:
        killer.join()
    assert killed, "no eval shard worker was seen running"
    _same_eval(serial, sharded)


@pytest.mark.slow
def test_sensitivity_on_ray_ranks_as_serial(cluster, coco_root: Path, tmp_path: Path):
    """The layers split into shards (layer i → shard i mod 2); the ranking is the serial one."""
    from yqt.records import SensitivityConfig
    from yqt.runs import Run
    from yqt.sensitivity import sensitivity

    cfg = SensitivityConfig(coco_root=coco_root, calib_images=4, batch=4, imgsz=320)
    serial = sensitivity(cfg, Run.open(tmp_path, "serial"))
    sharded = sensitivity(cfg, Run.open(tmp_path, "ray"), cluster=cluster)
    assert [r.name for r in sharded.ranked()] == [r.name for r in serial.ranked()]
    assert [r.name for r in sharded.layers] == [r.name for r in serial.layers]  # network order kept
    for a, b in zip(sharded.layers, serial.layers, strict=True):
        assert a.rank == b.rank and a.score == pytest.approx(b.score, rel=1e-4)
    assert sharded.timings["ray_shards"] == 2


def _pipeline_cfg(**changes):
    from dataclasses import replace

    from yqt.records import ExportDevice, PipelineConfig

    cfg = PipelineConfig(modes=("w8a16",), device=ExportDevice.CPU, providers=("cpu",), bootstrap=50)
    return replace(cfg, **changes)


def _steps(result) -> list[tuple[str, str, str | None]]:
    return [(s.name, s.status.value, s.reason) for s in result.steps]


@pytest.mark.slow
def test_pipeline_on_ray_equals_serial(cluster, coco_root: Path, tmp_path: Path):
    """Same steps, statuses, fingerprints and numbers as the serial run; every step's node in run.json;
    and the serial run's folder is wholly reused by --ray (same fingerprints, same reuse rule)."""
    from yqt.pipeline import run_pipeline
    from yqt.runs import Run

    cfg = _pipeline_cfg(coco_root=coco_root, max_images=8)
    serial = run_pipeline(cfg, Run.open(tmp_path, "serial"))
    sharded = run_pipeline(cfg, Run.open(tmp_path, "ray"), cluster=cluster)
    assert serial.passed and sharded.passed
    assert _steps(sharded) == _steps(serial)
    fingerprints = {s.name: s.fingerprint for s in serial.steps}
    for step in sharded.steps[:2]:  # export and quantize read the same inputs in both runs
        assert step.fingerprint == fingerprints[step.name]
    for folder in sorted((tmp_path / "serial").glob("*-coco")):  # every eval: the same detections and mAP
        theirs = tmp_path / "ray" / folder.name
        assert (theirs / "detections.json").read_bytes() == (folder / "detections.json").read_bytes()
        mine, serial_metrics = (json.loads((f / "metrics.json").read_text())["metrics"] for f in (theirs, folder))
        assert mine == serial_metrics
    steps = json.loads((tmp_path / "ray" / "run.json").read_text())["steps"]
    ran = [s for s in steps if s.get("fingerprint")]
    assert len(ran) == len(sharded.steps) and all(s["node"]["id"] for s in ran)

    again = run_pipeline(cfg, Run.open(tmp_path, "serial"), cluster=cluster)
    assert [s.status.value for s in again.steps] == ["reused"] * len(serial.steps)
    assert [s.fingerprint for s in again.steps] == [s.fingerprint for s in serial.steps]


@pytest.mark.slow
def test_pipeline_on_ray_fails_and_skips_as_serial(cluster, tmp_path: Path):
    """No COCO data and an empty calibration folder: the same failed step, the same skips and reasons."""
    from yqt.pipeline import run_pipeline
    from yqt.runs import Run

    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = _pipeline_cfg(modes=("w8a8",), calib_dir=empty)
    serial = run_pipeline(cfg, Run.open(tmp_path / "runs", "serial"))
    sharded = run_pipeline(cfg, Run.open(tmp_path / "runs", "ray"), cluster=cluster)
    assert _steps(sharded) == _steps(serial)
    statuses = dict((n, st) for n, st, _ in _steps(sharded))
    assert statuses["quantize-w8a8"] == "failed" and statuses["report"] == "skipped"
