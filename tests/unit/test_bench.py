"""bench's statistics and rendering, on made-up numbers: no model, no runtime."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from yqt.bench import ratio_stats, round_order
from yqt.records import (
    BenchCell,
    BenchConfig,
    BenchHost,
    BenchResult,
    FileArtifact,
    KernelCensus,
    Runtime,
    RuntimeInfo,
    document,
)


def test_round_order_puts_every_cell_in_every_position():
    orders = [round_order(3, r) for r in range(6)]
    assert all(sorted(o) == [0, 1, 2] for o in orders)
    for position in range(3):
        assert {o[position] for o in orders} == {0, 1, 2}


def test_ratio_is_paired_by_round_so_a_drift_cancels():
    ref = [100.0, 200.0, 300.0, 400.0]  # the machine slows down round by round
    cell = [50.0, 100.0, 150.0, 200.0]  # always half the reference
    ratio, lo, hi = ratio_stats(cell, ref, seed=0)
    assert (ratio, lo, hi) == (0.5, 0.5, 0.5)
    assert ratio_stats(ref, ref, seed=0) == (1.0, 1.0, 1.0)
    noisy = [101.0, 198.0, 305.0, 396.0]
    ratio, lo, hi = ratio_stats(noisy, ref, seed=0)
    assert lo <= ratio <= hi and 0.98 < ratio < 1.02


def _cell(index: int, runtime: Runtime, ratio: float, int8: int) -> BenchCell:
    kernels = KernelCensus(convs=83, int8_convs=int8, precisions={"int8": int8}, source="test")
    info = RuntimeInfo(runtime=runtime, version="1.0", device="CPU", precision="f32", threads=2, kernels=kernels)
    return BenchCell(
        index=index, name="yolov10n-w8a8-qcdq-ptq", model=FileArtifact(Path("/m.onnx"), "ab" * 32, 1), runtime=info,
        session_options=("x=1",), batch=1, n=10, median_ms=50.0 * ratio, q1_ms=49.0, q3_ms=52.0, iqr_ms=3.0,
        mean_ms=50.5, throughput_ips=20.0, ratio=ratio, ratio_ci95=(ratio - 0.01, ratio + 0.01), round_ms=(50.0,),
    )  # fmt: skip


def _result() -> BenchResult:
    cells = (_cell(0, Runtime.ORT, 1.0, 0), _cell(1, Runtime.OPENVINO, 0.46, 82))
    return BenchResult(
        config=BenchConfig(models=(Path("/m.onnx"),), runtimes=(Runtime.ORT, Runtime.OPENVINO), threads=2),
        cells=cells, reference="yolov10n-w8a8-qcdq-ptq on ort", image=Path("/bus.jpg"),
        host=BenchHost(cpu_count=2, cpu="Xeon", load_before=(1.0, 1.0, 1.0), load_after=(1.5, 1.0, 1.0)),
        seconds=12.0, created="2026-01-01T00:00:00Z", versions={"yqt": "0.1.0"},
    )  # fmt: skip


def test_bench_table_fits_80_columns_and_names_what_ran():
    from yqt.ui import View, render_bench

    console = Console(width=80, file=io.StringIO(), highlight=False)
    for item in render_bench(_result(), View(width=80)):
        console.print(item, soft_wrap=True)
    text = console.file.getvalue()
    assert all(len(line) <= 80 for line in text.splitlines()), text
    for fragment in ("median ms", "ratio", "int8 convs", "OpenVINO f32", "82/83", "0.460", "load 1.00 before"):
        assert fragment in text, (fragment, text)
    assert "OK: bench of 2 cell(s)" in text and "yolov10n-w8a8-qcdq-ptq on openvino" in text


def test_bench_document_validates_against_its_schema():
    from yqt.schema import validate

    doc = document(_result())
    validate(doc)
    assert doc["schema"] == "yqt/bench/1" and doc["cells"][1]["runtime"]["kernels"]["int8_convs"] == 82
