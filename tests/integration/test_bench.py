"""``yqt bench`` on the real float yolov10n: an A/A bench reads as the same speed, and the table, the
JSON document and the run record say what ran."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, run_yqt
from tests.markers import openvino_or_skip

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_the_same_model_listed_twice_runs_at_the_same_speed(baseline_onnx: Path):
    from yqt.bench import bench
    from yqt.records import BenchConfig

    # 40 paired rounds hold an A/A ratio within 3% even on a loaded 2-core machine (measured at load 7-9).
    result = bench(BenchConfig(models=(baseline_onnx, baseline_onnx), threads=2, rounds=40, runs_per_round=3))
    first, second = result.cells
    assert first.ratio == 1.0 and first.ratio_ci95 == (1.0, 1.0)
    assert 0.97 <= second.ratio <= 1.03, (second.ratio, second.ratio_ci95, result.host)
    assert second.ratio_ci95[0] <= second.ratio <= second.ratio_ci95[1]
    assert first.n == second.n == 120 and len(second.round_ms) == 40
    assert second.runtime.kernels.int8_convs == 0 and second.runtime.kernels.convs == 83
    assert "intra_op_num_threads=2" in second.session_options


@pytest.mark.slow
def test_bench_json_table_and_run_record(baseline_onnx: Path, tmp_path: Path):
    openvino_or_skip()
    runs = tmp_path / "runs"
    args = ("bench", str(baseline_onnx), "--runtime", "ort,openvino", "--threads", "2", "--rounds", "3",
            "--runs-per-round", "1", "--warmup", "1", "--run", "b")  # fmt: skip
    result = run_yqt(*args, "--json", runs_dir=runs)  # run_yqt validates the document against yqt/bench/1
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [c["runtime"]["runtime"] for c in doc["cells"]] == ["ort", "openvino"]
    assert doc["reference"] == f"{baseline_onnx.stem} on ort" and doc["config"]["threads"] == 2
    assert all(c["runtime"]["kernels"]["convs"] == 83 for c in doc["cells"])
    saved = runs / "b" / "bench" / "bench.json"
    assert json.loads(saved.read_text())["cells"] == doc["cells"]
    manifest = json.loads((runs / "b" / "run.json").read_text())
    step = next(s for s in manifest["steps"] if s["name"] == "bench")
    assert step["status"] == "ok" and step["summary"]["threads"] == 2

    table = run_yqt(*args, runs_dir=runs)
    assert table.returncode == 0, table.stderr
    for fragment in ("median ms", "ratio", "ORT f32", "OpenVINO", "OK: bench of 2 cell(s)", "bench/bench.json"):
        assert fragment in table.stdout, (fragment, table.stdout)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--threads", "0"), ("--threads must be at least 1, got 0",)),
        (("--rounds", "1"), ("--rounds must be at least 2",)),
        (("--runtime", "ort,tensorrt"), ("unknown --runtime 'tensorrt'",)),
    ],
)
def test_bench_bad_options(args: tuple[str, ...], fragments: tuple[str, ...], tmp_path: Path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"\x08\x07")
    assert_one_line_error(run_yqt("bench", str(model), *args, runs_dir=tmp_path / "runs"), *fragments)
    assert not (tmp_path / "runs").exists()


def test_bench_refuses_an_ir_on_ort(tmp_path: Path):
    xml = tmp_path / "model.xml"
    xml.write_bytes(b'<?xml version="1.0"?>\n<net name="x" version="11">\n</net>\n')
    result = run_yqt("bench", str(xml), "--runtime", "ort", runs_dir=tmp_path / "runs")
    assert_one_line_error(result, "model.xml is an OpenVINO IR (.xml)", "--runtime openvino")


@pytest.mark.slow
def test_compare_and_report_show_a_bench_that_covers_the_models_else_label_eval_timings(
    baseline_onnx: Path, coco_root: Path, tmp_path: Path
):
    openvino_or_skip()
    from yqt.bench import bench
    from yqt.compare import compare
    from yqt.evaluate import evaluate
    from yqt.records import BenchConfig, CompareConfig, EvalConfig, ReportConfig, Runtime
    from yqt.report import write_report
    from yqt.runs import Run

    run = Run.open(tmp_path / "runs", "lat")
    for runtime in (Runtime.ORT, Runtime.OPENVINO):  # one file, two runtimes: two evaluations
        evaluate(EvalConfig(onnx=baseline_onnx, coco_root=coco_root, max_images=8, runtime=runtime), run)
    ccfg = CompareConfig(inputs=(str(run.root),), bootstrap=0, baseline=baseline_onnx.stem)
    before = compare(ccfg)
    assert {r.latency_source for r in before.rows} == {"eval"} and "not side by side" in before.latency_note

    result = bench(BenchConfig(models=(baseline_onnx,), runtimes=(Runtime.ORT, Runtime.OPENVINO), threads=2,
                               rounds=3, runs_per_round=1, warmup=1), run)  # fmt: skip
    after = compare(ccfg)
    cells = {c.runtime.runtime.value: c for c in result.cells}
    rows = {r.name: r for r in after.rows}
    assert {r.latency_source for r in after.rows} == {"bench"} and "yqt bench" in after.latency_note
    assert rows[baseline_onnx.stem].latency_median_ms == cells["ort"].median_ms
    assert rows[f"{baseline_onnx.stem}-openvino"].latency_median_ms == cells["openvino"].median_ms
    assert rows[f"{baseline_onnx.stem}-openvino"].latency_ratio == pytest.approx(cells["openvino"].ratio)
    report = write_report(ReportConfig(run=run.root, bootstrap=0))
    assert any("yqt bench" in w for w in report.warnings)
    assert {r.name: r.latency_median_ms for r in report.rows}[baseline_onnx.stem] == cells["ort"].median_ms
