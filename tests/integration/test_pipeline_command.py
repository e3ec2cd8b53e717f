"""``yqt pipeline`` on the real yolov10n, real ORT and the real COCO dev set: end to end, resumable,
one failing mode not stopping the others, and what it does with no data at all."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, run_yqt
from yqt.runs import now_iso

pytestmark = pytest.mark.integration


def _statuses(doc: dict) -> dict[str, str]:
    return {s["name"]: s["status"] for s in doc["steps"]}


def _pipeline(runs: Path, run_id: str, *args: str):
    return run_yqt("pipeline", "--run", run_id, "--providers", "cpu", "--device", "cpu", "--json", *args,
                   runs_dir=runs)  # fmt: skip


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def full_run(coco_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """w8a16 and w8a8 from checkpoint to report, on the first 20 dev ids."""
    runs = tmp_path_factory.mktemp("pipeline-runs")
    args = ("--modes", "w8a16,w8a8", "--coco-root", str(coco_root), "--max-images", "20", "--calib-images", "8")
    result = _pipeline(runs, "full", *args)
    assert result.returncode == 0, result.stderr
    # Later tests rerun the pipeline in this run (another option, a changed file): keep what this
    # first run's bench wrote, for the test about it.
    shutil.copyfile(runs / "full" / "bench" / "bench.json", runs / "first-bench.json")
    return runs, args, json.loads(result.stdout)


@pytest.mark.slow
def test_the_first_run_does_every_step_and_ends_with_a_report(full_run):
    runs, _, doc = full_run
    statuses = _statuses(doc)
    assert set(statuses.values()) == {"done"}, statuses
    assert list(statuses)[:3] == ["export", "quantize-w8a16", "quantize-w8a8"]
    assert list(statuses)[-2:] == ["compare", "report"]
    assert sum(name.startswith("eval-") for name in statuses) == 3
    assert doc["passed"] and doc["compare"]["schema"].startswith("yqt/compare/")
    assert len(doc["compare"]["rows"]) == 3
    assert Path(doc["report"]).is_file() and Path(doc["report"]).name == "index.html"
    manifest = json.loads((runs / "full" / "run.json").read_text())
    fingerprints = {s["name"]: s.get("fingerprint") for s in manifest["steps"]}
    assert all(fingerprints[name] for name in statuses), fingerprints  # every step is resumable
    saved = json.loads((runs / "full" / "pipeline.json").read_text())
    assert _statuses(saved) == statuses


@pytest.mark.slow
def test_the_same_command_again_reuses_every_step(full_run):
    runs, args, first = full_run
    again = _pipeline(runs, "full", *args)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert set(_statuses(doc).values()) == {"reused"}, _statuses(doc)
    assert doc["compare"]["saved"] == first["compare"]["saved"]  # the same comparison, not a new one


@pytest.mark.slow
def test_a_changed_eval_option_reruns_evals_compare_and_report_only(full_run):
    runs, args, _ = full_run
    changed = [a if a != "20" else "12" for a in args]
    result = _pipeline(runs, "full", *changed)
    assert result.returncode == 0, result.stderr
    statuses = _statuses(json.loads(result.stdout))
    for name, status in statuses.items():
        expected = "done" if name.startswith("eval-") or name in ("compare", "report") else "reused"
        assert status == expected, (name, statuses)
    assert {r["num_images"] for r in json.loads(result.stdout)["compare"]["rows"]} == {12}


@pytest.mark.slow
def test_a_step_left_running_by_a_killed_process_is_rerun(full_run):
    runs, args, _ = full_run
    manifest_path = runs / "full" / "run.json"
    manifest = json.loads(manifest_path.read_text())
    smoke = next(s for s in reversed(manifest["steps"]) if s["name"].startswith("smoke-") and "w8a8" in s["name"])
    # As a rerun killed mid-step leaves it: started after the finished record, never ended.
    killed = {**smoke, "id": smoke["id"] + "-killed", "status": "running", "ended": None, "pid": _dead_pid(),
              "started": now_iso()}  # fmt: skip
    manifest["steps"].append(killed)
    manifest_path.write_text(json.dumps(manifest))
    result = _pipeline(runs, "full", *[a if a != "20" else "12" for a in args])
    assert result.returncode == 0, result.stderr
    steps = {s["name"]: s for s in json.loads(result.stdout)["steps"]}
    assert steps[smoke["name"]]["status"] == "done"
    assert "left running by process" in steps[smoke["name"]]["note"]
    others = {n: s["status"] for n, s in steps.items() if n != smoke["name"]}
    assert set(others.values()) == {"reused"}, others


@pytest.mark.slow
def test_a_step_running_in_a_live_process_is_not_started_twice(full_run):
    runs, args, _ = full_run
    manifest_path = runs / "full" / "run.json"
    manifest = json.loads(manifest_path.read_text())
    export = next(s for s in reversed(manifest["steps"]) if s["name"] == "export")
    busy = {**export, "id": export["id"] + "-busy", "status": "running", "ended": None, "pid": _live_pid(),
            "started": "2999-01-01T00:00:00+00:00"}  # fmt: skip
    manifest["steps"].append(busy)
    manifest_path.write_text(json.dumps(manifest))
    try:
        result = _pipeline(runs, "full", *[a if a != "20" else "12" for a in args])
    finally:
        manifest = json.loads(manifest_path.read_text())
        manifest["steps"] = [s for s in manifest["steps"] if s["id"] != busy["id"]]
        manifest_path.write_text(json.dumps(manifest))
    assert result.returncode == 1, result.stderr
    steps = {s["name"]: s for s in json.loads(result.stdout)["steps"]}
    assert steps["export"]["status"] == "failed"
    assert "is running now in process" in steps["export"]["reason"]
    assert steps["quantize-w8a8"]["status"] == "reused"  # quantize reads the weights, not the export


def _live_pid() -> int:
    import os

    return os.getpid()  # this test process: alive, and not the pipeline's own


@pytest.mark.slow
def test_one_failing_mode_does_not_stop_the_others(coco_root: Path, tmp_path: Path):
    empty = tmp_path / "no-images"
    empty.mkdir()
    result = _pipeline(
        tmp_path / "runs", "one-fails", "--modes", "w8a8,w8a16", "--coco-root", str(coco_root),
        "--calib-dir", str(empty), "--max-images", "8", "--bootstrap", "50",
    )  # fmt: skip
    assert result.returncode == 1
    steps = {s["name"]: s for s in json.loads(result.stdout)["steps"]}
    assert steps["quantize-w8a8"]["status"] == "failed"
    assert "no images in --calib-dir" in steps["quantize-w8a8"]["reason"]
    assert "\n" not in steps["quantize-w8a8"]["reason"]
    assert steps["smoke-w8a8"]["status"] == steps["eval-w8a8"]["status"] == "skipped"
    assert steps["quantize-w8a16"]["status"] == "done"
    assert steps["compare"]["status"] == steps["report"]["status"] == "done"
    manifest = json.loads((tmp_path / "runs" / "one-fails" / "run.json").read_text())
    failed = [s for s in manifest["steps"] if s["name"] == "quantize-w8a8"]
    assert failed and failed[-1]["status"] == "failed" and "no images" in failed[-1]["error"]
    html = Path(json.loads(result.stdout)["report"]).read_text()
    assert "quantize-w8a8" in html and "no images in --calib-dir" in html


@pytest.mark.slow
def test_without_coco_it_does_what_needs_no_data_and_says_what_to_pass(tmp_path: Path):
    result = _pipeline(tmp_path / "runs", "bare", "--modes", "w8a16,w8a8", "--coco-root", str(tmp_path / "absent"))
    assert result.returncode == 0, result.stderr
    steps = {s["name"]: s for s in json.loads(result.stdout)["steps"]}
    done = sorted(n for n, s in steps.items() if s["status"] == "done")
    assert done == ["export", "quantize-w8a16", "smoke-yolov10n-baseline-fp32", "smoke-yolov10n-w8a16-qcdq-ptq"]
    assert "--coco-root" in steps["quantize-w8a8"]["reason"] and "not found" in steps["quantize-w8a8"]["reason"]
    evals = [s for n, s in steps.items() if n.startswith("eval-") and "w8a8" not in n]
    assert len(evals) == 2 and all("val2017/" in s["reason"] for s in evals)
    assert steps["report"]["status"] == "skipped"

    # The same options without --coco-root and --json: the steps that ran are kept, and the text fits 80 columns.
    plain = run_yqt("pipeline", "--run", "bare", "--modes", "w8a16,w8a8", "--providers", "cpu", "--device", "cpu",
                    runs_dir=tmp_path / "runs")  # fmt: skip
    assert plain.returncode == 0, plain.stderr
    assert "PASSED" in plain.stdout
    assert sum(line.startswith("reused ") for line in plain.stdout.splitlines()) == 4, plain.stdout
    assert all(len(line) <= 80 for line in plain.stdout.splitlines()), plain.stdout


@pytest.mark.slow
def test_a_changed_file_is_caught_and_its_step_rerun(tmp_path: Path):
    runs = tmp_path / "runs"
    assert _pipeline(runs, "tamper", "--modes", "w8a16").returncode == 0
    onnx = next((runs / "tamper" / "onnx").glob("*w8a16*qcdq-ptq.onnx"))
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    again = _pipeline(runs, "tamper", "--modes", "w8a16")
    steps = {s["name"]: s for s in json.loads(again.stdout)["steps"]}
    assert steps["quantize-w8a16"]["status"] == "done"
    assert "is missing or changed" in steps["quantize-w8a16"]["note"]
    assert steps["export"]["status"] == "reused"


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--modes", "w8a16,w3a8"), ("unknown quantization mode 'w3a8'",)),
        (("--modes", "w8a16,w8a16"), ("names w8a16 twice",)),
        (("--modes", ""), ("--modes is empty",)),
        (("--max-images", "0"), ("--max-images must be at least 1",)),
        (("--max-images", "5", "--image-ids-list", "ids.txt"), ("both given",)),
        (("--target-bits", "4.5"), ("4-bit modes only",)),
        (("--modes", "w4a16", "--target-bits", "4.5,abc"), ("takes numbers separated by commas",)),
        (("--modes", "w4a16", "--target-bits", "5,5.0"), ("--target-bits names 5 twice",)),
        (("--weights", "missing.pt"), ("weights not found",)),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_run(tmp_path: Path, args, fragments):
    (tmp_path / "ids.txt").write_text("139\n")
    result = run_yqt("pipeline", "--run", "bad", *args, runs_dir=tmp_path / "runs", cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "runs" / "bad").exists()


@pytest.mark.slow
def test_the_pipeline_benches_its_models_and_compare_and_report_show_those_latencies(full_run):
    runs, _, doc = full_run
    assert list(_statuses(doc))[-3:] == ["bench", "compare", "report"]
    bench = json.loads((runs / "first-bench.json").read_text())
    assert bench["schema"] == "yqt/bench/1" and len(bench["cells"]) == 3
    medians = {c["model"]["sha256"]: c["median_ms"] for c in bench["cells"]}
    rows = doc["compare"]["rows"]
    assert {r["latency_source"] for r in rows} == {"bench"}
    assert all(r["latency_median_ms"] == medians[r["onnx_sha256"]] for r in rows)
    assert "yqt bench" in doc["compare"]["latency_note"] and "side by side" in doc["compare"]["latency_note"]
    assert "yqt bench" in (runs / "full" / "report" / "report.md").read_text()


@pytest.mark.slow
def test_a_target_bits_sweep_ranks_once_makes_a_model_per_target_and_draws_the_curve(coco_root: Path, tmp_path: Path):
    """Two targets of w4a16 (GPTQ on 8 images, scored on 12): one sensitivity step whose ranking both
    quantize steps read, two models side by side in one run, and the accuracy-size curve in the report."""
    runs = tmp_path / "runs"
    result = _pipeline(runs, "sweep", "--modes", "w4a16", "--target-bits", "4.5,6", "--coco-root", str(coco_root),
                       "--max-images", "12", "--calib-images", "8", "--bootstrap", "0")  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    statuses = _statuses(doc)
    assert list(statuses)[:4] == ["export", "sensitivity-w4", "quantize-w4a16-4.5bit", "quantize-w4a16-6bit"]
    assert set(statuses.values()) == {"done"}, statuses
    assert doc["config"]["target_bits"] == [4.5, 6.0]
    made = {t: json.loads((runs / "sweep" / "quantize" / f"yolov10n-w4a16-{t}bit-qcdq-ptq.json").read_text())
            for t in ("4.5", "6")}  # fmt: skip
    sweep = runs / "sweep" / "sensitivity" / "yolov10n-w4.json"
    assert {Path(m["config"]["sensitivity"]) for m in made.values()} == {sweep}
    assert made["4.5"]["mean_weight_bits"] <= 4.5 < made["6"]["mean_weight_bits"] <= 6.0
    assert made["4.5"]["onnx"]["sha256"] != made["6"]["onnx"]["sha256"]
    rows = {r["name"]: r for r in doc["compare"]["rows"]}
    assert {"yolov10n-w4a16-4.5bit-qcdq-ptq", "yolov10n-w4a16-6bit-qcdq-ptq"} <= set(rows)
    report = runs / "sweep" / "report"
    assert (report / "map_vs_bits.png").read_bytes().startswith(b"\x89PNG")
    assert 'id="plot-map_vs_bits"' in (report / "index.html").read_text()  # embedded, by its id
