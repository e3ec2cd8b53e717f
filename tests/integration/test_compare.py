"""compare: exact deltas, a correct paired bootstrap, verdicts and every bad input."""

from __future__ import annotations

import json
import re
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


# compare.py's docstring: on w8a8 the resampled mAP is within this of pycocotools on the physical
# resample. benchmarks/bootstrap_ties.py on the suite's w8a8 eval, seeds 0-9 x 10 resamples: worst
# 4.15e-3 (mAP50-95) and 5.08e-3 (mAP50); the 3 resamples here are the first of seed 0.
W8A8_TIE_BOUND = 5.1e-3


@pytest.mark.slow
def test_w8a8_resamples_are_within_the_documented_bound_of_pycocotools(w8a8_eval):
    """The one inexact case, same-score detections of one image and class, on a real int8 model."""
    from collections import Counter

    from tests.unit.test_bootstrap_resample import pycocotools_on_physical_resample
    from yqt.compare import _map_pair, bootstrap_weights, load_metrics, per_image_matches

    ev = load_metrics(Path(w8a8_eval.metrics_path))
    detections = json.loads(Path(w8a8_eval.metrics_path).with_name("detections.json").read_text())
    ties = Counter((d["image_id"], d["category_id"], d["score"]) for d in detections)
    assert sum(n for n in ties.values() if n > 1) > 0, "want within-image ties: the case the bound is about"
    dataset = json.loads(Path(ev.doc["annotations_path"]).read_text())
    matches = per_image_matches(ev)
    for counts in bootstrap_weights(matches.n_images, 3, seed=0):  # compare's default seed
        maps = _map_pair(matches, counts[None, :])
        want_5095, want_50 = pycocotools_on_physical_resample(dataset, detections, list(ev.doc["image_ids"]), counts)
        assert abs(float(maps["mAP_50_95"][0]) - want_5095) <= W8A8_TIE_BOUND
        assert abs(float(maps["mAP_50"][0]) - want_50) <= W8A8_TIE_BOUND


def _copy_eval_into_run(metrics_path: Path, runs: Path, run_id: str) -> Path:
    run = runs / run_id
    run.mkdir(parents=True)
    (run / "run.json").write_text(empty_manifest(run_id))
    shutil.copytree(metrics_path.parent, run / metrics_path.parent.name)
    return run


@pytest.mark.slow
def test_run_against_itself_is_zero_with_zero_ci(baseline_eval, tmp_path: Path):
    a = _copy_eval_into_run(Path(baseline_eval.metrics_path), tmp_path, "a")
    b = _copy_eval_into_run(Path(baseline_eval.metrics_path), tmp_path, "b")
    result = _compare(str(a), str(b), baseline="a", bootstrap=200)
    row = next(r for r in result.rows if not r.is_baseline)
    assert row.metrics["mAP_50_95"].delta_pt == 0.0
    assert row.metrics["mAP_50_95"].ci95_pt == (0.0, 0.0)
    assert row.metrics["mAP_50_95"].ci_excludes_zero is False


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert re.search(r"\| 0\.\d{4} −\d+\.\d\d \[−\d+\.\d\d, [+−]\d+\.\d\d\] \|", (tmp_path / "d.md").read_text())


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


@pytest.mark.slow
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
    doc = json.loads(out.stdout)  # run_yqt has validated it against yqt/compare/2
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


# ------------------------------------------------------------------------------------ the table


_SWEEP = "2026-11-29_04-55-11-a-long-sweep-of-quantization-modes"
_ABLATION = "2026-12-01_10-12-44-ablation-gptq-groupsize"


def _eval_as(src: Path, runs: Path, run_id: str, name: str, mode: str | None, bits: float | None) -> None:
    """A real evaluation (metrics.json and its detections) copied under another name, mode and bit width."""
    run = runs / run_id
    if not run.is_dir():
        run.mkdir(parents=True)
        (run / "run.json").write_text(empty_manifest(run_id))
    folder = run / f"{name}-coco"
    shutil.copytree(src.parent, folder)
    doc = json.loads((folder / "metrics.json").read_text())
    doc["name"] = name
    if mode is not None:
        doc["model"]["yqt.mode"] = mode
    if bits is not None:
        doc["model"]["yqt.mean_weight_bits"] = bits
    (folder / "metrics.json").write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def five_models(baseline_eval, w8a16_eval, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Five real evaluations in two runs with long ids: the baseline, w8a16, and copies posing as others."""
    runs = tmp_path_factory.mktemp("five") / "runs"
    base, w8 = Path(baseline_eval.metrics_path), Path(w8a16_eval.metrics_path)
    _eval_as(base, runs, _SWEEP, "yolov10n-baseline-fp32", None, None)
    _eval_as(w8, runs, _SWEEP, "yolov10n-w8a16-qcdq-ptq", None, None)
    _eval_as(w8, runs, _SWEEP, "yolov10n-w8a8-qcdq-ptq-percentile", "w8a8", 8.0)
    _eval_as(w8, runs, _SWEEP, "yolov10n-w4a16-gptq-mixed-target-4.5", "w4a16", 4.5012)
    _eval_as(w8, runs, _ABLATION, "yolov10n-w4a16-gptq-g64", "w4a16", 4.0)
    return runs, [_SWEEP, _ABLATION]


def _page(monkeypatch: pytest.MonkeyPatch, runs: Path, inputs: list[str], columns: int, *extra: str):
    monkeypatch.setenv("COLUMNS", str(columns))
    monkeypatch.setenv("NO_COLOR", "1")
    return run_yqt("compare", *inputs, "--bootstrap", "50", *extra, runs_dir=runs)


_VALUE = re.compile(r"\b[01]\.\d{4}\b")  # an mAP fraction: only table rows print them


def _unsaved(text: str) -> str:
    """The page without its "saved:" line, whose file name has the time in it."""
    return "\n".join(ln for ln in text.splitlines() if "saved: " not in ln)


def _table_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if _VALUE.search(ln)]


@pytest.mark.slow
def test_table_at_100_columns_is_one_line_per_model(five_models, monkeypatch: pytest.MonkeyPatch):
    from tests.integration.test_output import broken_words, overlong_lines

    runs, inputs = five_models
    out = _page(monkeypatch, runs, inputs, 100, "--max-drop", "0.5")
    assert out.returncode == 0, out.stderr
    assert "\x1b[" not in out.stdout + out.stderr  # NO_COLOR, piped: plain text
    assert overlong_lines(out.stdout, 100) == [], out.stdout  # past 100: only a long path on its own
    rows = _table_lines(out.stdout)
    assert [ln for ln in rows if len(ln) > 100] == [], out.stdout
    assert len(rows) == 5, out.stdout  # one line per model, the label not wrapped onto a second
    header = next(ln for ln in out.stdout.splitlines() if "mAP50-95" in ln)
    assert header.split() == ["model", "mode", "mAP50-95", "mAP50", "lat", "ms", "size", "MB"], header
    assert "fp32" in rows[0] and "w4a16 4.50b" in out.stdout and "w8a8 8b" in out.stdout
    assert re.search(r"0\.\d{4} [+−]\d\.\d\d \[[+−]\d+\.\d,[+−]\d+\.\d\]", rows[1]), rows[1]  # value, Δ, CI
    assert _SWEEP not in "\n".join(rows)  # short labels; the full ones are listed once below
    wide = _page(monkeypatch, runs, inputs, 400, "--max-drop", "0.5").stdout
    assert broken_words(_unsaved(out.stdout), _unsaved(wide)) == [], out.stdout
    assert "PASSED" in out.stdout.strip().splitlines()[-2]


@pytest.mark.slow
def test_table_at_80_columns_breaks_no_word(five_models, monkeypatch: pytest.MonkeyPatch):
    from tests.integration.test_output import broken_words, overlong_lines

    runs, inputs = five_models
    narrow = _unsaved(_page(monkeypatch, runs, inputs, 80).stdout)
    wide = _unsaved(_page(monkeypatch, runs, inputs, 400).stdout)
    assert overlong_lines(narrow, 80) == [], narrow
    assert len(_table_lines(narrow)) == 5 and max(map(len, _table_lines(narrow))) <= 80, narrow
    note = "note: not shown at 80 columns: size MB; widen the terminal, or use --markdown or --json"
    assert note in " ".join(narrow.split())
    assert broken_words(narrow, f"{wide}\n{note}") == [], narrow


@pytest.mark.slow
def test_metrics_and_all_pick_the_columns(five_models, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from yqt.records import METRIC_LABELS

    runs, inputs = five_models
    picked = _page(monkeypatch, runs, inputs, 100, "--metrics", "mAP_50_95,mAP_75,AR_100")
    assert picked.returncode == 0, picked.stderr
    header = next(ln for ln in picked.stdout.splitlines() if "mAP50-95" in ln).split()
    assert header[2:5] == ["mAP50-95", "mAP75", "AR100"] and "mAP50" not in header, header
    everything = _page(monkeypatch, runs, inputs, 100, "--all", "--markdown", str(tmp_path / "all.md"))
    assert everything.returncode == 0, everything.stderr
    words = everything.stdout.split()
    assert all(label in words for label in METRIC_LABELS.values()), everything.stdout
    assert max(map(len, _table_lines(everything.stdout))) <= 100, everything.stdout
    assert len(_table_lines(everything.stdout)) == 10  # the mAPs and the ARs: a table each, a line per model
    md_header = (tmp_path / "all.md").read_text().splitlines()[0]
    assert all(f" {label} " in md_header for label in METRIC_LABELS.values()), md_header
    doc = json.loads(run_yqt("compare", *inputs, "--bootstrap", "50", "--json", runs_dir=runs).stdout)
    assert all(set(row["metrics"]) == set(METRIC_LABELS) for row in doc["rows"])
    assert doc["columns"] == ["mAP_50_95", "mAP_50"]
    bits = {row["name"]: row["mean_weight_bits"] for row in doc["rows"]}
    assert bits["yolov10n-baseline-fp32"] == 32 and bits["yolov10n-w4a16-gptq-g64"] == 4.0
    assert {row["short_label"] for row in doc["rows"]} == {row["label"] for row in doc["rows"]}  # two runs: whole


@pytest.mark.slow
def test_bad_metrics_name_is_one_line(five_models, monkeypatch: pytest.MonkeyPatch):
    runs, inputs = five_models
    bad = _page(monkeypatch, runs, inputs, 100, "--metrics", "mAP_50_95,mAP_99")
    assert_one_line_error(bad, "--metrics: unknown metric mAP_99", "mAP_50_95, mAP_50, mAP_75", "AR_large")
    assert bad.stdout == ""
    both = _page(monkeypatch, runs, inputs, 100, "--metrics", "mAP_50", "--all")
    assert_one_line_error(both, "--metrics and --all")


@pytest.mark.slow
def test_plot_is_a_readme_sized_png(five_models, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from PIL import Image

    runs, inputs = five_models
    png = tmp_path / "compare.png"
    out = _page(monkeypatch, runs, inputs, 100, "--plot", str(png), "--max-drop", "0.5")
    assert out.returncode == 0, out.stderr
    with Image.open(png) as image:
        image.load()  # decodes
        width, height = image.size
        assert 800 <= width <= 1100 and 300 <= height < width, image.size  # fits a README or a PR, landscape
    assert not list(tmp_path.glob(".*"))  # written atomically: no temporary left


@pytest.mark.slow
def test_one_run_drops_the_run_from_the_labels(five_models):
    runs, _ = five_models
    result = _compare(str(runs / _SWEEP), bootstrap=0)
    shorts = [r.short_label for r in result.rows]
    assert shorts[:2] == ["yolov10n-baseline-fp32", "yolov10n-w4a16-gptq-mixed-target-4.5"]
    assert all(r.label.startswith(f"{_SWEEP}/") for r in result.rows)
