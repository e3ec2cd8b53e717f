"""``yqt bench``: latency per model and runtime, side by side."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from yqt.ui.layout import Block, View, add_col, fit_table, new_table, result_block, shown


def _bench_table(result: Any, columns: Sequence[str]) -> Table:
    threads = result.config.threads
    table = new_table(
        f"Latency side by side: {len(result.config.models)} model(s) x {len(result.config.runtimes)} runtime(s), "
        f"batch {result.config.batch}, {threads or 'default'} threads, {result.config.rounds} rounds"
    )
    for col in columns:
        add_col(table, col, justify="left" if col in ("model", "runtime") else "right")
    for c in result.cells:
        k = c.runtime.kernels
        lo, hi = c.ratio_ci95
        cells = {
            "model": c.name,
            "runtime": f"{'OpenVINO' if c.runtime.runtime.value == 'openvino' else 'ORT'} {c.runtime.precision}",
            "int8 convs": f"{k.int8_convs}/{k.convs}" if k is not None else "-",
            "median ms": f"{c.median_ms:.1f}",
            "IQR ms": f"{c.iqr_ms:.1f}",
            "img/s": f"{c.throughput_ips:.1f}",
            "ratio": f"{c.ratio:.3f}",
            "95% CI": f"[{lo:.3f}, {hi:.3f}]",
        }
        table.add_row(*(cells[col] for col in columns))
    return table


BENCH_COLUMNS = ("model", "runtime", "median ms", "ratio", "int8 convs", "95% CI", "IQR ms", "img/s")


def render_bench(result: Any, view: View) -> list[Any]:
    table = fit_table(lambda cols: _bench_table(result, cols), BENCH_COLUMNS, 4, view.width)
    host = result.host
    details = Block(view).pairs([
        ("reference", f"{result.reference} (ratio < 1: faster)"),
        ("image", shown(result.image)),
        ("host", f"{host.cpu_count} CPUs, {host.cpu}; load {host.load_before[0]:.2f} before, "
                 f"{host.load_after[0]:.2f} after"),
        *((f"cell {c.index + 1}", f"{c.label}: {', '.join(c.session_options)}") for c in result.cells
          if view.verbose),
        *(("not run", s) for s in result.skipped),
    ], indent="")  # fmt: skip
    fastest = min(result.cells, key=lambda c: c.ratio)
    headline = (
        f"bench of {len(result.cells)} cell(s) in {result.seconds:.0f} s: fastest {fastest.label} at "
        f"{fastest.ratio:.3f}x the reference ({fastest.median_ms:.1f} ms)"
    )
    rows = [("bench", shown(result.bench_path))] if result.bench_path else []
    return [table, details, result_block(view, None, headline, rows)]
