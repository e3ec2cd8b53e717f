"""``index.html``: one self-contained page. CSS inline, charts as base64 data URIs, no script and no
network address anywhere, so it opens the same from a CI artifact, a mail or an air-gapped box."""

from __future__ import annotations

import base64
from html import escape

from yqt.records import ReportRow
from yqt.report.model import COLUMNS, ReportModel, cells

CSS = """
:root { --fg:#1d2327; --muted:#5f6b76; --line:#dde3e8; --head:#f4f6f8; --pass:#1e8449; --fail:#c0392b;
        --accent:#2c5282; }
* { box-sizing: border-box; }
body { font: 14px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg);
       margin: 0; background: #fafbfc; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 48px; background: #fff; min-height: 100vh;
       box-shadow: 0 0 0 1px var(--line); }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 36px 0 12px; padding-bottom: 6px; border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 22px 0 8px; }
.sub { color: var(--muted); margin: 0 0 18px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
dl.facts dt { color: var(--muted); font-weight: 600; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; }
table.summary { font-size: 13px; }
table.summary th, table.summary td { padding: 7px 9px; border-bottom: 1px solid var(--line); white-space: nowrap; }
table.summary thead th { background: var(--head); text-align: left; font-weight: 600;
                         border-bottom: 2px solid #c9d1d9; }
table.summary th.num, table.summary td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.summary tbody tr:hover { background: #f7f9fb; }
table.summary tr.baseline td { background: #f3f6fa; }
table.summary tr.failed td { background: #fdf1f0; }
td.model { font-weight: 600; }
.verdict { display: inline-block; padding: 1px 9px; border-radius: 10px; font-weight: 700; font-size: 12px; }
.v-pass { background: #e3f4ea; color: var(--pass); }
.v-fail, .v-failed { background: #fbe5e2; color: var(--fail); }
.v-baseline, .v-not-judged { background: #eceff3; color: var(--muted); }
.error { color: var(--fail); font-size: 12px; font-weight: 400; white-space: normal; max-width: 340px; }
.legend { color: var(--muted); font-size: 12.5px; margin: 8px 0 0; }
.notes { background: #fff8e6; border-left: 4px solid #e0a800; padding: 8px 14px; margin: 16px 0; }
.notes p { margin: 2px 0; }
figure { margin: 0 0 26px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; display: block; }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 6px; }
.plots { display: grid; grid-template-columns: 1fr; gap: 6px; }
table.prov { font-size: 12.5px; margin-bottom: 8px; }
table.prov th { text-align: left; color: var(--muted); font-weight: 600; width: 130px; vertical-align: top;
                padding: 3px 12px 3px 0; }
table.prov td { padding: 3px 0; overflow-wrap: anywhere; }
footer { color: var(--muted); font-size: 12px; margin-top: 40px; border-top: 1px solid var(--line); padding-top: 10px; }
"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _row_html(r: ReportRow) -> str:
    text = cells(r)
    css = "baseline" if r.is_baseline else ("failed" if r.status == "failed" else "")
    tds = []
    for key, _, numeric in COLUMNS:
        if key == "verdict":
            cls = "v-" + r.verdict.lower().replace(" ", "-")
            inner = f'<span class="verdict {_e(cls)}" title="{_e(r.verdict_detail)}">{_e(r.verdict)}</span>'
            tds.append(f"<td>{inner}</td>")
        elif key == "model" and r.error:  # the one-line reason under the name, where there is room
            tds.append(f'<td class="model">{_e(text[key])}<div class="error">{_e(r.error)}</div></td>')
        else:
            klass = " ".join(c for c in ("num" if numeric else "", "model" if key == "model" else "") if c)
            tds.append(f'<td class="{klass}">{_e(text[key])}</td>' if klass else f"<td>{_e(text[key])}</td>")
    return f'<tr class="{css}">' + "".join(tds) + "</tr>" if css else "<tr>" + "".join(tds) + "</tr>"


def render(model: ReportModel) -> str:
    head = "".join(f'<th class="num">{_e(t)}</th>' if n else f"<th>{_e(t)}</th>" for _, t, n in COLUMNS)
    body = "\n".join(_row_html(r) for r in model.rows)
    facts = "\n".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in model.header)
    notes = ""
    if model.notes or model.warnings:
        notes = '<div class="notes">' + "".join(f"<p>{_e(n)}</p>" for n in [*model.notes, *model.warnings]) + "</div>"
    rule = (
        f"Verdict: PASS when ΔmAP50-95 ≥ −{model.max_drop_pt:g} pt (--max-drop {model.max_drop_pt:g})."
        if model.max_drop_pt is not None
        else "Verdict: not judged (no --max-drop)."
    )
    legend = (
        f"{rule} Δ in mAP points (1 pt = 0.01 mAP) against the baseline. {model.method} "
        "× smaller: baseline file size / this one. × float: this median latency / the baseline's."
    )
    figures = "\n".join(
        f'<figure id="plot-{_e(p.file.removesuffix(".png"))}">'
        f'<img src="{data_uri(p.png)}" alt="{_e(p.title)}"><figcaption>{_e(p.caption)}</figcaption></figure>'
        for p in model.plots
    )
    prov = []
    for r in model.rows:
        rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in model.provenance.get(r.name, []))
        prov.append(f'<h3>{_e(r.name)}</h3><table class="prov">{rows}</table>')
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>yqt report: {_e(model.run_id)}</title>
<style>{CSS}</style>
</head>
<body>
<main>
<h1>Quantization report</h1>
<p class="sub">run <code>{_e(model.run_id)}</code> · written {_e(model.created)} by yqt report</p>
<section id="header"><dl class="facts">
{facts}
</dl></section>
{notes}
<h2>Summary</h2>
<div class="table-wrap"><table class="summary" id="summary">
<thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody>
</table></div>
<p class="legend">{_e(legend)}</p>
<h2>Plots</h2>
<div class="plots">
{figures or "<p>No plots: the run has no comparison to draw.</p>"}
</div>
<h2>Provenance</h2>
{"".join(prov)}
<footer>Self-contained: every chart is embedded in this file; it loads nothing from the network.</footer>
</main>
</body>
</html>
"""
