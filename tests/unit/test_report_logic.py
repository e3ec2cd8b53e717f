"""yqt report's pure logic: the Pareto front, which step failure counts, and the table cells. No torch."""

from __future__ import annotations

from yqt.records import ReportRow
from yqt.report.collect import latest_failures, pareto_front
from yqt.report.model import cells


def test_pareto_front_keeps_only_models_nothing_beats_on_both_axes():
    # (size MB, mAP): fp32 9.4/0.48, w8a16 2.7/0.48, w8a8 2.7/0.45, w4a16 1.6/0.44, a dominated 3.0/0.40
    points = [(9.4, 0.48), (2.7, 0.481), (2.7, 0.45), (1.6, 0.44), (3.0, 0.40)]
    assert pareto_front(points) == [3, 1]  # smallest first: w4a16, then w8a16 (smaller than fp32, as accurate)


def test_pareto_front_ties_and_single_points():
    assert pareto_front([(1.0, 0.5)]) == [0]
    assert pareto_front([(1.0, 0.5), (1.0, 0.5)]) == [0, 1]  # identical points do not beat each other
    assert pareto_front([(1.0, 0.5), (2.0, 0.5)]) == [0]  # same mAP, bigger: beaten
    assert pareto_front([]) == []


def _step(name: str, status: str, started: str, error: str | None = None) -> dict:
    return {"name": name, "status": status, "started": started, "error": error}


def test_only_the_latest_record_of_a_step_counts():
    manifest = {
        "steps": [
            _step("quantize-w8a8", "failed", "2026-01-01T10:00:00+00:00", "gate: boom"),
            _step("quantize-w8a8", "ok", "2026-01-01T11:00:00+00:00"),  # fixed by a rerun
            _step("quantize-w4a16", "ok", "2026-01-01T10:00:00+00:00"),
            _step("quantize-w4a16", "failed", "2026-01-01T12:00:00+00:00", "parity:\n 1/9 matched"),
            _step("compare", "failed", "2026-01-01T12:00:00+00:00", "not a model step"),
            _step("eval-x", "running", "2026-01-01T12:00:00+00:00"),
        ]
    }
    (failed,) = latest_failures(manifest)
    assert failed.step == "quantize-w4a16" and failed.error == "parity: 1/9 matched"  # one line


def test_cells_of_a_failed_row_and_a_compared_row():
    failed = ReportRow(name="quantize-w8a8", mode="w8a8", status="failed", is_baseline=False, error="x",
                       verdict="FAILED")  # fmt: skip
    text = cells(failed)
    assert text["verdict"] == "FAILED" and text["map"] == "–" and text["delta"] == "–"
    row = ReportRow(name="m", mode="w8a16", status="ok", is_baseline=False, delta_pt=-0.5, ci95_pt=(-1.25, 0.3),
                    size_bytes=2_690_000, size_ratio=3.51, mAP_50_95=0.48, verdict="PASS")  # fmt: skip
    text = cells(row)
    assert text["delta"] == "−0.50 [−1.25, +0.30]" and text["size"] == "2.69 MB" and text["smaller"] == "3.51×"


def test_the_bits_curve_is_drawn_for_a_sweep_only():
    from yqt.report.plots import bits_curve

    def row(name: str, mode: str, bits: float, value: float, baseline: bool = False) -> ReportRow:
        return ReportRow(name=name, mode=mode, status="ok", is_baseline=baseline, mean_weight_bits=bits,
                         mAP_50_95=value)  # fmt: skip

    base = row("yolov10n", "baseline fp32", 32.0, 0.45, baseline=True)
    single = [base, row("a", "w4a16", 4.5, 0.42), row("b", "w8a16", 8.0, 0.45)]
    assert bits_curve(single) is None  # one model per mode: no curve to draw
    png = bits_curve([*single, row("c", "w4a16", 5.0, 0.44)])
    assert png is not None and png.startswith(b"\x89PNG")
