"""``report.md``: the summary and provenance tables for a pull request, the charts as links."""

from __future__ import annotations

from collections.abc import Sequence

from yqt.report.model import COLUMNS, ReportModel, cells


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]) -> list[str]:
    """A Markdown pipe table: numeric columns right-aligned, pipes and line breaks in cells escaped.
    The one table writer of ``yqt compare --markdown`` and ``report.md``."""
    lines = ["| " + " | ".join(_cell(h) for h in head) + " |"]
    lines.append("|" + "".join("---:|" if n else "---|" for n in numeric))
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def render(model: ReportModel) -> str:
    lines = [f"# Quantization report: run `{model.run_id}`", ""]
    lines += [f"- **{_cell(k)}**: {_cell(v)}" for k, v in model.header]
    lines.append("")
    for note in [*model.notes, *model.warnings]:
        lines.append(f"> {_cell(note)}")
    if model.notes or model.warnings:
        lines.append("")
    lines += ["## Summary", ""]
    rows = []
    for r in model.rows:
        text = cells(r)
        verdict = f"**{text['verdict']}**" + (f": {r.error}" if r.error else "")
        rows.append([text[k] if k != "verdict" else verdict for k, _, _ in COLUMNS])
    lines += table([t for _, t, _ in COLUMNS], rows, [n for _, _, n in COLUMNS])
    lines.append("")
    rule = (
        f"Verdict: PASS when ΔmAP50-95 ≥ −{model.max_drop_pt:g} pt (--max-drop {model.max_drop_pt:g})."
        if model.max_drop_pt is not None
        else "Verdict: not judged (no --max-drop)."
    )
    lines += [f"{rule} Δ in mAP points against the baseline. {model.method}", ""]
    if model.plots:
        lines += ["## Plots", ""]
        lines += [f"- [{p.title}]({p.file}): {p.caption}" for p in model.plots]
        lines.append("")
    lines += ["## Provenance", ""]
    for r in model.rows:
        lines += [f"### {r.name}", ""]
        lines += table(["", ""], model.provenance.get(r.name, []), [False, False])
        lines.append("")
    return "\n".join(lines)
