"""``yqt pipeline``: its steps and the compare table it ends with."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from yqt.ui.compare import fit_compare
from yqt.ui.layout import Block, View, result_block, shown, wrapped

_STEP_STYLE = {"done": "green", "reused": "cyan", "failed": "bold red", "skipped": "yellow"}


def step_lines(step: Any, view: View, reasons: bool = True) -> list[Text]:
    """``done    eval-yolov10n-w8a8   14.2 s`` and, under it, why it failed or was skipped."""
    status = step.status.value
    secs = f"{step.seconds:.1f} s" if status == "done" else ""
    head = Text(f"{status.upper() if status == 'failed' else status:<8}", style=_STEP_STYLE[status])
    name_width = max(view.width - 8 - 10, 20)
    head.append(f"{step.name:<{min(40, name_width)}} {secs:>8}".rstrip())
    lines = [head]
    for extra in (step.reason, step.note) if reasons else ():
        if extra:
            lines += [Text(ln) for ln in wrapped(extra, view.width, indent=" " * 8)]
    return lines


def render_pipeline(result: Any, view: View) -> list[Any]:
    steps = Block(view)
    steps.line("[bold]Steps[/]")
    for step in result.steps:
        steps.lines += step_lines(step, view)
    items: list[Any] = [steps]
    if result.compare:
        from yqt.report.collect import compare_from_json

        # The same table as yqt compare prints, from the comparison the pipeline saved.
        compared = compare_from_json(dict(result.compare))
        networks = len({r.model for r in compared.rows}) > 1
        items.append(fit_compare(compared, ("mAP_50_95", "mAP_50"), view.width, networks)[0])
    counts = ", ".join(
        f"{result.count(s)} {s.value}" for s in type(result.steps[0].status) if result.count(s)
    ) if result.steps else "no steps"  # fmt: skip
    headline = f"pipeline in run {result.run_id}: {counts}, {result.seconds:.1f} s"
    failed = [s.name for s in result.steps if s.status.value == "failed"]
    rows = [("run folder", shown(result.run_root))]
    if result.data is not None:
        rows.append(("data", result.data))
    if result.report is not None:
        rows.append(("report", shown(result.report)))
    if failed:
        rows.append(("failed", ", ".join(failed)))
    items.append(result_block(view, result.passed, headline, rows))
    return items
