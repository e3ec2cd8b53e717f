"""``report.md``: the summary and provenance tables for a pull request, the charts as links."""

from __future__ import annotations

from yqt.report.model import COLUMNS, ReportModel, cells


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(model: ReportModel) -> str:
    lines = [f"# Quantization report: run `{model.run_id}`", ""]
    lines += [f"- **{_cell(k)}**: {_cell(v)}" for k, v in model.header]
    lines.append("")
    for note in [*model.notes, *model.warnings]:
        lines.append(f"> {_cell(note)}")
    if model.notes or model.warnings:
        lines.append("")
    lines += ["## Summary", ""]
    lines.append("| " + " | ".join(t for _, t, _ in COLUMNS) + " |")
    lines.append("|" + "".join("---:|" if n else "---|" for _, _, n in COLUMNS))
    for r in model.rows:
        text = cells(r)
        verdict = f"**{text['verdict']}**" + (f": {r.error}" if r.error else "")
        row = [text[k] if k != "verdict" else verdict for k, _, _ in COLUMNS]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
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
        lines += [f"### {r.name}", "", "| | |", "|---|---|"]
        lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in model.provenance.get(r.name, [])]
        lines.append("")
    return "\n".join(lines)
