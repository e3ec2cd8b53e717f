"""compare: exact deltas, a correct paired bootstrap, verdicts and every bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_one_line_error, empty_manifest, run_yqt

pytestmark = pytest.mark.integration


def _compare(*inputs: str, **kw):
    from yqt.compare import compare
    from yqt.records import CompareConfig

    return compare(CompareConfig(inputs=tuple(inputs), **kw))


def test_deltas_are_exact_and_ci_contains_them(baseline_eval, w8a16_eval):
    run_dir = Path(baseline_eval.metrics_path).parents[1]
    result = _compare(str(run_dir), bootstrap=300, seed=1)
    base = json.loads(Path(baseline_eval.metrics_path).read_text())["metrics"]
    quant = json.loads(Path(w8a16_eval.metrics_path).read_text())["metrics"]
    (row,) = [r for r in result.rows if not r.is_baseline]
    for metric in ("mAP_50_95", "mAP_50", "mAP_75"):
        assert row.metrics[metric].delta_pt == (quant[metric] - base[metric]) * 100  # points, from fractions
    lo, hi = row.metrics["mAP_50_95"].ci95_pt
    assert lo <= row.metrics["mAP_50_95"].delta_pt <= hi
    (base_row,) = [r for r in result.rows if r.is_baseline]  # the baseline has no CI, not [0, 0]
    assert all(m.ci95_pt is None and m.ci_excludes_zero is None for m in base_row.metrics.values())


def test_full_set_reaccumulation_equals_pycocotools(baseline_eval):
    from yqt.compare import _map_pair, load_metrics, per_image_matches

    ev = load_metrics(Path(baseline_eval.metrics_path))
    matches = per_image_matches(ev)
    maps = _map_pair(matches, np.ones((1, matches.n_images)))
    assert abs(maps["mAP_50_95"][0] - baseline_eval.metrics.mAP_50_95) < 1e-9
    assert abs(maps["mAP_50"][0] - baseline_eval.metrics.mAP_50) < 1e-9


def _copy_eval_into_run(metrics_path: Path, runs: Path, run_id: str) -> Path:
    run = runs / run_id
    run.mkdir(parents=True)
    (run / "run.json").write_text(empty_manifest(run_id))
    shutil.copytree(metrics_path.parent, run / metrics_path.parent.name)
    return run


def test_run_against_itself_is_zero_with_zero_ci(baseline_eval, tmp_path: Path):
    a = _copy_eval_into_run(Path(baseline_eval.metrics_path), tmp_path, "a")
    b = _copy_eval_into_run(Path(baseline_eval.metrics_path), tmp_path, "b")
    result = _compare(str(a), str(b), baseline="a", bootstrap=200)
    row = next(r for r in result.rows if not r.is_baseline)
    assert row.metrics["mAP_50_95"].delta_pt == 0.0
    assert row.metrics["mAP_50_95"].ci95_pt == (0.0, 0.0)
    assert row.metrics["mAP_50_95"].ci_excludes_zero is False


def test_seeded_bootstrap_is_reproducible(baseline_eval, w8a16_eval):
    run_dir = str(Path(baseline_eval.metrics_path).parents[1])
    first = _compare(run_dir, bootstrap=200, seed=7)
    again = _compare(run_dir, bootstrap=200, seed=7)
    other = _compare(run_dir, bootstrap=200, seed=8)
    ci = lambda r: [x.metrics["mAP_50_95"].ci95_pt for x in r.rows]  # noqa: E731
    assert ci(first) == ci(again)
    assert ci(first) != ci(other)


def _degraded_run(baseline_eval, runs: Path) -> Path:
    """The baseline's detections with every box shifted by 20% of its width: a real, known loss."""
    from yqt.data import load_coco
    from yqt.evaluate import run_cocoeval
    from yqt.records import CocoMetrics, to_jsonable

    doc = json.loads(Path(baseline_eval.metrics_path).read_text())
    dets = json.loads(Path(doc["detections_path"]).read_text())
    for d in dets:
        d["bbox"][0] += 0.2 * d["bbox"][2]
    folder = runs / "degraded" / "yolov10n-degraded-coco"
    folder.mkdir(parents=True)
    (runs / "degraded" / "run.json").write_text(empty_manifest("degraded"))
    (folder / "detections.json").write_text(json.dumps(dets))
    evaluator, _ = run_cocoeval(load_coco(Path(doc["annotations_path"])), dets, doc["image_ids"])
    from yqt.runs import sha256_file

    doc.update(
        name="yolov10n-degraded",
        detections_path=str(folder / "detections.json"),
        detections_sha256=sha256_file(folder / "detections.json"),
    )
    doc["metrics"] = to_jsonable(CocoMetrics.from_stats(evaluator.stats))
    (folder / "metrics.json").write_text(json.dumps(doc))
    return runs / "degraded"


def test_degraded_detections_give_a_ci_below_zero_and_fail_max_drop(baseline_eval, tmp_path: Path):
    degraded = _degraded_run(baseline_eval, tmp_path / "runs")
    baseline_metrics = str(baseline_eval.metrics_path)
    out = run_yqt(
        "compare", baseline_metrics, str(degraded), "--max-drop", "0.5", "--json", "--bootstrap", "300",
        "--plot", str(tmp_path / "d.png"), "--markdown", str(tmp_path / "d.md"), runs_dir=tmp_path / "runs",
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout)
    row = next(r for r in doc["rows"] if not r["is_baseline"])
    assert row["metrics"]["mAP_50_95"]["ci95_pt"][1] < 0
    assert row["metrics"]["mAP_50_95"]["ci_excludes_zero"] is True and row["within_max_drop"] is False
    for key in ("value", "baseline", "delta_pt", "ci95_pt", "ci_excludes_zero"):
        assert key in row["metrics"]["mAP_50"]
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "CI [" in (tmp_path / "d.md").read_text()


def test_compare_passes_max_drop_for_w8a16(baseline_eval, w8a16_eval, tmp_path: Path):
    run_dir = Path(baseline_eval.metrics_path).parents[1]
    out = run_yqt("compare", str(run_dir), "--max-drop", "0.5", "--bootstrap", "100", "--json", runs_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["passed"] and [r["within_max_drop"] for r in doc["rows"]] == [True, True]


def test_bad_inputs(baseline_eval, tmp_path: Path):
    runs = tmp_path / "runs"
    runs.mkdir()
    assert_one_line_error(run_yqt("compare", "nope", "nada", runs_dir=runs), "unknown run or metrics file: nope")
    empty = runs / "empty"
    empty.mkdir()
    (empty / "run.json").write_text(empty_manifest("empty"))
    assert_one_line_error(
        run_yqt("compare", "empty", str(baseline_eval.metrics_path), runs_dir=runs), "has no evaluations"
    )
    single = _copy_eval_into_run(Path(baseline_eval.metrics_path), runs, "single")
    assert_one_line_error(run_yqt("compare", "single", runs_dir=runs), "at least two evaluations, got 1")
    corrupt = runs / "corrupt.json"
    corrupt.write_text('{"name": "x", "metrics": {')
    assert_one_line_error(
        run_yqt("compare", str(corrupt), str(baseline_eval.metrics_path), runs_dir=runs), "not valid JSON"
    )
    other = _copy_eval_into_run(Path(baseline_eval.metrics_path), runs, "other-set")
    metrics = next(other.glob("*-coco/metrics.json"))
    doc = json.loads(metrics.read_text())
    doc.update(name="yolov10n-w8a16-other", image_ids=doc["image_ids"][:50], image_ids_sha256="0" * 64, num_images=50)
    doc["onnx_sha256"] = "f" * 64  # another model, scored on another set
    metrics.write_text(json.dumps(doc))
    assert_one_line_error(run_yqt("compare", str(single), "other-set", runs_dir=runs), "different image set", "--force")
    forced = run_yqt("compare", str(single), "other-set", "--force", "--json", runs_dir=runs)
    assert forced.returncode == 0, forced.stderr
    assert "--force" in forced.stderr


def ci_gate(doc: dict) -> int:
    """The check a CI script writes from the schema alone: fail when any delta_pt < -max_drop_pt."""
    metric, limit = doc["max_drop_metric"], doc["max_drop_pt"]
    return 1 if any(row["metrics"][metric]["delta_pt"] < -limit for row in doc["rows"]) else 0


@pytest.mark.parametrize("case", ["pass", "fail", "no-ci"])
def test_max_drop_in_points_agrees_with_delta_pt_and_the_exit_code(case, baseline_eval, w8a16_eval, tmp_path: Path):
    """w8a16 gains 0.76 pt (pass); shifted boxes lose many points (fail); without a CI the rule is the same."""
    baseline_run = str(Path(baseline_eval.metrics_path).parents[1])
    inputs = [baseline_run]
    if case != "pass":
        inputs = [str(baseline_eval.metrics_path), str(_degraded_run(baseline_eval, tmp_path / "runs"))]
    bootstrap = "0" if case == "no-ci" else "100"
    args = ["compare", *inputs, "--max-drop", "0.5", "--bootstrap", bootstrap]
    out = run_yqt(*args, "--json", runs_dir=tmp_path / "runs")
    doc = json.loads(out.stdout)  # run_yqt has validated it against yqt/compare/1
    assert doc["max_drop_pt"] == 0.5 and doc["max_drop_metric"] == "mAP_50_95"
    assert out.returncode == ci_gate(doc) == (0 if case == "pass" else 1), out.stderr
    assert doc["passed"] is (out.returncode == 0)
    row = next(r for r in doc["rows"] if not r["is_baseline"])
    assert row["within_max_drop"] is (out.returncode == 0)
    assert row["verdict"].startswith("PASS: " if case == "pass" else "FAIL: ")
    if case == "no-ci":
        assert all(m["ci95_pt"] is None and m["ci_excludes_zero"] is None for m in row["metrics"].values())
        assert "No CI" in row["verdict"]
    table = run_yqt(*args, runs_dir=tmp_path / "runs")  # the same rule and outcome on the page
    assert table.returncode == out.returncode
    page = " ".join(table.stdout.split())
    assert row["verdict"].split(". ")[0] in page and "--max-drop 0.5" in page
    result_lines = table.stdout.strip().splitlines()[-4:]
    assert any(ln.startswith("PASSED:" if case == "pass" else "FAILED:") for ln in result_lines), table.stdout
