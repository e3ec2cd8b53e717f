"""Run folders under parallel use and faults: locking, honest step status, saved results, interrupts,
compare reading the right files, and COCO-format data with other categories."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, run_yqt

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _env(runs: Path) -> dict[str, str]:
    env = {**os.environ, "YQT_RUNS_DIR": str(runs), "PYTHONWARNINGS": "ignore"}
    env.pop("YQT_DEBUG", None)
    return env


def _spawn(args: list[str], runs: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "yqt", *args], env=_env(runs), cwd=runs.parent,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_eight_parallel_processes_record_every_step_in_one_run(baseline_onnx: Path, tmp_path: Path):
    runs = tmp_path / "runs"
    procs = [
        _spawn(["smoke", str(baseline_onnx), "--providers", "cpu", "-n", "1", "--run", "par", "--json"], runs)
        for _ in range(8)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    manifest = json.loads((runs / "par" / "run.json").read_text())
    steps = manifest["steps"]
    assert len(steps) == 8 and {s["status"] for s in steps} == {"ok"}
    assert len({s["id"] for s in steps}) == 8


def test_two_default_runs_started_in_the_same_second_get_distinct_ids(baseline_onnx: Path, tmp_path: Path):
    model = tmp_path / "loose.onnx"  # outside any run, so each smoke makes a new default-id run
    shutil.copy(baseline_onnx, model)
    runs = tmp_path / "runs"
    procs = [_spawn(["smoke", str(model), "--providers", "cpu", "-n", "1"], runs) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    created = sorted(p for p in runs.iterdir() if not p.name.startswith("."))
    assert len(created) == 2
    for run in created:
        assert len(json.loads((run / "run.json").read_text())["steps"]) == 1


def test_published_files_follow_the_umask(baseline_export):
    run = Path(baseline_export.onnx.path).parents[1]
    for path in (run / "run.json", baseline_export.onnx.path, next((run / "export").glob("*.json"))):
        assert path.stat().st_mode & 0o777 == 0o666 & ~_umask(), path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_failed_check_leaves_the_step_failed_with_its_reason_and_the_saved_result(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    from yqt.quant import parity
    from yqt.quantize import quantize
    from yqt.records import QuantizeConfig
    from yqt.runs import Run

    # An unreachable bar (more than all detections matched) makes the real parity check fail.
    monkeypatch.setattr(parity, "tolerance_for", lambda mode: parity.ParityTolerance(iou=0.99, required_fraction=1.01))
    run = Run.open(tmp_path / "runs", "failing")
    result = quantize(QuantizeConfig(providers=("cpu",), device="cpu"), run)
    assert not result.passed and result.onnx is None
    step = json.loads(run.manifest_path.read_text())["steps"][-1]
    assert step["name"] == "quantize-w8a16" and step["status"] == "failed"
    assert step["error"].startswith("parity:") and "101%" in step["error"]
    saved = json.loads((run.root / "quantize" / "yolov10n-w8a16-qcdq-ptq.json").read_text())
    assert saved["passed"] is False and saved["failures"] == [step["error"]]
    assert saved["gate"]["checks"] and saved["parity"]["required_fraction"] == 1.01
    assert not list(run.onnx_dir.glob("*.onnx"))


def test_export_saves_its_device_choice_and_the_census_is_saved_whole(baseline_export, tmp_path: Path):
    run = Path(baseline_export.onnx.path).parents[1]
    saved = json.loads((run / "export" / "yolov10n-baseline-fp32.json").read_text())
    assert saved["device_choice"]["attempts"][-1]["outcome"] == "chosen"
    runs = tmp_path / "runs"
    out = run_yqt("inspect-graph", str(baseline_export.onnx.path), "--only", "quantized", "--run", "g", runs_dir=runs)
    assert out.returncode == 0, out.stderr
    census = json.loads((runs / "g" / "graph" / "yolov10n-baseline-fp32.json").read_text())
    assert len(census["layers"]) >= 83 and census["only"] is None  # 83 convs, none quantized, all saved


def test_detections_json_holds_only_coco_result_fields(baseline_eval):
    dets = json.loads(Path(baseline_eval.detections_path).read_text())
    assert dets and {k for d in dets for k in d} == {"image_id", "category_id", "bbox", "score"}


def _interrupted_eval(onnx: Path, coco_root: Path, runs: Path, run_id: str, *extra: str) -> tuple[str, str]:
    """Start an eval of all 128 dev images in ``run_id``, Ctrl-C it mid-loop; returns (stdout, stderr)."""
    args = ["eval", str(onnx), "--coco-root", str(coco_root), "--providers", "cpu", "--run", run_id, *extra]
    manifest = runs / run_id / "run.json"
    before = len(json.loads(manifest.read_text())["steps"]) if manifest.is_file() else 0
    proc = _spawn(args, runs)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        steps = json.loads(manifest.read_text())["steps"] if manifest.is_file() else []
        if len(steps) > before and steps[-1]["status"] == "running":
            break
        time.sleep(0.05)
    time.sleep(1.0)  # well inside the 128-image loop
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    return out, err


def test_sigint_during_eval_leaves_failed_interrupted_and_no_metrics(baseline_onnx: Path, coco_root: Path, tmp_path):
    runs = tmp_path / "runs"
    out, err = _interrupted_eval(baseline_onnx, coco_root, runs, "sig", "--json")
    last = err.splitlines()[-1]
    assert "Traceback" not in err and last.startswith("yqt: interrupted: step eval-yolov10n-baseline-fp32 in run")
    assert "recorded as failed (interrupted)" in last and "; rerun: yqt eval " in last  # what was left, what to do
    error = json.loads(out)  # --json still gets one document, with the same exit code
    assert error["schema"] == "yqt/error/1" and error["exit_code"] == 130
    assert error["hint"].startswith("rerun: yqt eval")
    (step,) = json.loads((runs / "sig" / "run.json").read_text())["steps"]
    assert step["status"] == "failed" and step["error"] == "interrupted"
    assert not list((runs / "sig").rglob("metrics.json")) and not list((runs / "sig").rglob("*.partial"))


def test_an_interrupted_eval_makes_the_models_older_result_stale_in_compare(
    two_evals, baseline_onnx: Path, coco_root: Path, tmp_path: Path
):
    runs = tmp_path / "runs"
    copied = _copy_run(Path(two_evals[0].metrics_path).parents[1], runs, "stale")
    fresh = run_yqt("compare", "stale", "--bootstrap", "0", "--json", runs_dir=runs)
    assert not any(r["stale"] for r in json.loads(fresh.stdout)["rows"])
    _interrupted_eval(baseline_onnx, coco_root, runs, "stale")  # the same model, same eval name, Ctrl-C
    assert (copied / "yolov10n-baseline-fp32-coco" / "metrics.json").is_file()  # the older result is still there
    doc = json.loads(run_yqt("compare", "stale", "--bootstrap", "0", "--json", runs_dir=runs).stdout)
    rows = {r["name"]: r for r in doc["rows"]}
    old = rows["yolov10n-baseline-fp32"]
    assert old["stale"] is True and "was interrupted" in old["stale_reason"]
    assert rows["yolov10n-w8a16-qcdq-ptq"]["stale"] is False
    page = run_yqt("compare", "stale", "--bootstrap", "0", runs_dir=runs).stdout
    assert "STALE" in page and "a later eval of the model failed" in " ".join(page.split())


# ------------------------------------------------------------------------------------ compare


def _copy_run(src: Path, runs: Path, run_id: str) -> Path:
    """A whole run folder copied elsewhere, as a user would move it."""
    dst = runs / run_id
    shutil.copytree(src, dst)
    return dst


def _eval_on(onnx: Path, coco_root: Path, run, max_images: int, name: str | None = None):
    from yqt.evaluate import evaluate
    from yqt.records import EvalConfig

    cfg = EvalConfig(onnx=onnx, coco_root=coco_root, max_images=max_images, providers=("cpu",), name=name)
    return evaluate(cfg, run)


@pytest.fixture(scope="module")
def two_evals(baseline_onnx: Path, w8a16, coco_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """The baseline and w8a16 scored on the first 20 ids, in a run of this module's own."""
    from yqt.runs import Run

    run = Run.open(tmp_path_factory.mktemp("reliability-runs"), "own")
    return _eval_on(baseline_onnx, coco_root, run, 20), _eval_on(w8a16.onnx.path, coco_root, run, 20)


def test_a_copied_run_compares_with_its_own_detections_and_alterations_are_caught(two_evals, tmp_path: Path):
    from yqt.compare import compare
    from yqt.errors import YqtError
    from yqt.records import CompareConfig

    original = Path(two_evals[0].metrics_path).parents[1]
    copied = _copy_run(original, tmp_path / "runs", "moved")
    for det in copied.rglob("detections.json"):  # metrics.json still names the original's files
        assert str(det) != json.loads(det.with_name("metrics.json").read_text())["detections_path"]
    result = compare(CompareConfig(inputs=(str(copied),), bootstrap=50))
    assert len(result.rows) == 2 and result.saved is not None and result.saved.is_relative_to(copied.resolve())
    assert not list(original.glob("compare/*.json"))  # the copy's comparison stays in the copy
    victim = next(copied.glob("*w8a16*-coco/detections.json"))
    dets = json.loads(victim.read_text())
    dets[0]["score"] = 0.999
    victim.write_text(json.dumps(dets))
    with pytest.raises(YqtError, match="does not match the detections_sha256"):
        compare(CompareConfig(inputs=(str(copied),), bootstrap=50))


def test_explicit_evaluations_on_different_sets_are_refused_naming_both(
    two_evals, w8a16, coco_root: Path, tmp_path: Path
):
    from yqt.runs import Run

    run = Run.open(tmp_path / "runs", "sets")
    small = _eval_on(w8a16.onnx.path, coco_root, run, 10, "w8a16-10")
    args = ["compare", str(two_evals[0].metrics_path), str(small.metrics_path), "--bootstrap", "50"]
    refused = run_yqt(*args, runs_dir=tmp_path / "runs")
    assert_one_line_error(refused, "sets/w8a16-10 was scored on 10 images", "on 20 images", "--force")
    forced = run_yqt(*args, "--force", "--json", runs_dir=tmp_path / "runs")
    assert forced.returncode == 0, forced.stderr
    row = next(r for r in json.loads(forced.stdout)["rows"] if not r["is_baseline"])
    assert row["num_images"] == 10 and row["metrics"]["mAP_50_95"]["ci95_pt"] is None
    assert row["metrics"]["mAP_50_95"]["delta_pt"] != 0


def test_evaluations_compare_leaves_out_are_listed_with_the_reason(
    two_evals, baseline_onnx: Path, coco_root: Path, tmp_path: Path
):
    from yqt.compare import compare
    from yqt.records import CompareConfig
    from yqt.runs import Run

    run_dir = _copy_run(Path(two_evals[0].metrics_path).parents[1], tmp_path / "runs", "mixed")
    _eval_on(baseline_onnx, coco_root, Run.open(tmp_path / "runs", "mixed"), 10, "baseline-on-10")
    result = compare(CompareConfig(inputs=(str(run_dir),), bootstrap=50))
    assert any("baseline-on-10: scored on 10 images" in r for r in result.left_out)
    assert {r.name for r in result.rows} == {"yolov10n-baseline-fp32", "yolov10n-w8a16-qcdq-ptq"}


# ------------------------------------------------------------------------------------ custom COCO data


def _renamed_dataset(coco_root: Path, folder: Path, names: dict[str, str]) -> Path:
    """A COCO-format dataset of two categories taken from the dev set, with new ids and given names."""
    src = json.loads((coco_root / "annotations" / "instances_val2017.json").read_text())
    by_name = {c["name"]: c for c in src["categories"]}
    new_ids = {by_name[old]["id"]: i + 1 for i, old in enumerate(names)}
    anns = [dict(a, category_id=new_ids[a["category_id"]]) for a in src["annotations"] if a["category_id"] in new_ids]
    image_ids = sorted({a["image_id"] for a in anns})[:20]
    dataset = {
        "images": [i for i in src["images"] if i["id"] in image_ids],
        "annotations": [a for a in anns if a["image_id"] in image_ids],
        "categories": [{"id": i + 1, "name": new, "supercategory": "x"} for i, new in enumerate(names.values())],
    }
    folder.mkdir(parents=True)
    path = folder / "custom.json"
    path.write_text(json.dumps(dataset))
    return path


def test_custom_categories_are_mapped_by_name_or_refused_in_one_line(baseline_onnx: Path, coco_root, tmp_path):
    same = _renamed_dataset(coco_root, tmp_path / "same", {"person": "person", "car": "car"})
    args = ["eval", str(baseline_onnx), "--images-dir", str(coco_root / "val2017"), "--providers", "cpu", "--json"]
    out = run_yqt(*args, "--annotations", str(same), "--run", "custom", runs_dir=tmp_path / "runs")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["category_ids"][0] == 1 and doc["category_ids"][2] == 2 and doc["category_ids"].count(None) == 78
    assert doc["metrics"]["mAP_50_95"] > 0.3
    dets = json.loads(Path(doc["detections_path"]).read_text())
    assert {d["category_id"] for d in dets} == {1, 2}
    renamed = _renamed_dataset(coco_root, tmp_path / "renamed", {"person": "human", "car": "automobile"})
    refused = run_yqt(*args, "--annotations", str(renamed), "--run", "renamed", runs_dir=tmp_path / "runs")
    assert_one_line_error(refused, "2 of the dataset's 2 categories match no class of the model", "'automobile'")
    assert not (tmp_path / "runs" / "renamed").exists()
