"""``yqt report``: the summary table and where the report is."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from yqt.ui.layout import View, add_col, fit_table, new_table, result_block, shown

_REPORT_COLUMNS = ("model", "Δ pt [95% CI]", "mAP50-95", "mode", "bits", "size", "latency", "provider")


def _report_table(result: Any, columns: Sequence[str]) -> Table:
    from yqt.report.model import cells

    table = new_table(f"run {result.run_id}: one row per model")
    keys = {"model": "model", "mode": "mode", "bits": "bits", "mAP50-95": "map", "Δ pt [95% CI]": "delta",
            "size": "size", "latency": "latency", "provider": "provider"}  # fmt: skip
    for c in columns:
        add_col(table, c, justify="left" if c in ("model", "mode", "provider") else "right")
    add_col(table, "verdict")
    colour = {"PASS": "green", "FAIL": "red", "FAILED": "red"}
    for r in result.rows:
        text = cells(r)
        verdict = f"[bold {colour[r.verdict]}]{r.verdict}[/]" if r.verdict in colour else r.verdict
        if r.error:
            verdict += f": {escape(r.error)}"
        table.add_row(*(escape(text[keys[c]]) for c in columns), verdict)
    return table


def render_report(result: Any, view: View) -> list[Any]:
    table = fit_table(lambda cols: _report_table(result, cols), _REPORT_COLUMNS, 2, view.width)
    failed = [r.name for r in result.rows if r.status == "failed"]
    below = [r.name for r in result.rows if r.verdict == "FAIL"]
    parts = [f"report of {len(result.rows)} model(s) written"]
    if failed:
        parts.append(f"{len(failed)} failed ({', '.join(failed)})")
    if below:
        parts.append(f"{len(below)} below the allowed drop of {result.max_drop_pt:g} pt ({', '.join(below)})")
    source = "reused from the run" if result.compare_reused else "computed now"
    rows = [
        ("html", shown(result.index_html)),
        ("markdown", shown(result.markdown)),
        ("plots", f"{len(result.plots)} PNG(s) in {shown(Path(result.index_html).parent)}"),
    ]
    if result.compare_json is not None:
        rows.append(("CIs", f"{result.bootstrap} bootstrap resamples, {source}: {shown(result.compare_json)}"))
    return [table, result_block(view, result.passed, "; ".join(parts), rows)]
