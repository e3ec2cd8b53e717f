"""``yqt report``: one run's results as ``runs/<id>/report/`` (index.html, report.md, PNGs, report.json).

It recomputes nothing but the paired bootstrap, and that only when the run holds no comparison of its
current evaluations. Input is checked whole before anything is written; each file is written
atomically and ``index.html`` last, so a report that is there is a complete one.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from yqt.records import ReportConfig, ReportResult
from yqt.report.collect import RunData, build_rows, collect, pareto_front, resolve_run_dir
from yqt.report.model import Plot, ReportModel, provenance
from yqt.runs import Run, atomic_write_bytes, atomic_write_json, atomic_write_text, now_iso, read_json

__all__ = ["ReportConfig", "ReportResult", "pareto_front", "resolve_run_dir", "write_report"]

log = logging.getLogger(__name__)

REPORT_DIR = "report"


def write_report(cfg: ReportConfig) -> ReportResult:
    """Write the report of run folder ``cfg.run`` into its ``report/`` and record a ``report`` step."""
    data = collect(cfg)
    rows = build_rows(data, cfg.max_drop_pt)
    model = _model(data, rows, cfg)
    run = Run(data.run_dir, data.run_dir.name)
    out = data.run_dir / REPORT_DIR
    with run.step("report", cfg) as step:
        written = []
        for p in model.plots:
            written.append(atomic_write_bytes(out / p.file, p.png))
            step.add_artifact(written[-1], "report-plot")
        for old in out.glob("*.png"):  # charts of an earlier report that this one no longer has
            if old.name not in {p.file for p in model.plots}:
                old.unlink(missing_ok=True)
        from yqt.report import html, markdown

        md = atomic_write_text(out / "report.md", markdown.render(model))
        step.add_artifact(md, "report-markdown")
        result = ReportResult(
            run_id=data.run_id, run_dir=data.run_dir.resolve(), index_html=(out / "index.html").resolve(),
            markdown=md.resolve(), plots=tuple(p.resolve() for p in written), rows=tuple(rows),
            baseline=data.baseline.name, max_drop_pt=cfg.max_drop_pt,
            bootstrap=data.compare.bootstrap if data.compare else 0,
            compare_json=data.compare_json.resolve() if data.compare_json else None,
            compare_reused=data.compare_reused,
            passed=all(r.status == "ok" and r.verdict != "FAIL" for r in rows),
            warnings=tuple(model.notes + model.warnings), json_path=(out / "report.json").resolve(),
            created=model.created,
        )  # fmt: skip
        step.add_artifact(atomic_write_json(out / "report.json", result), "report-json")
        step.add_artifact(atomic_write_text(out / "index.html", html.render(model)), "report-html")  # last
        step.summary.update(rows=len(rows), passed=result.passed, compare_reused=data.compare_reused)
    log.info("wrote %s", result.index_html)
    if cfg.open_browser:
        result = replace(result, warnings=(*result.warnings, *_open(result.index_html)))
    return result


def _open(index: Path) -> list[str]:
    import webbrowser

    try:
        if webbrowser.open(index.as_uri()):
            return []
    except Exception as exc:  # no display, a broken browser entry: the report stands, unopened
        return [f"could not open a browser ({exc}); open {index} yourself"]
    return [f"no browser found; open {index} yourself"]


# ------------------------------------------------------------------------------------------ the model


def _model(data: RunData, rows: list[Any], cfg: ReportConfig) -> ReportModel:
    from yqt.report import plots

    base = data.baseline
    curves = {e.name: e.curves for e in data.evals if e.curves is not None}
    notes: list[str] = []
    charts: list[Plot] = []

    def add(file: str, title: str, caption: str, png: bytes | None) -> None:
        if png is not None:
            charts.append(Plot(file, title, caption, png))

    ci_note = (
        f"{data.compare.bootstrap} paired bootstrap resamples over images, seed {data.compare.seed}"
        if data.compare and data.compare.bootstrap
        else "no bootstrap"
    )
    add("delta_map.png", "ΔmAP50-95 per model",
        f"Dots: the change against the baseline; bars: the 95% CI ({ci_note}); dashed: the allowed drop.",
        plots.delta_chart(plots.report_points(rows), cfg.max_drop_pt))  # fmt: skip
    add("map_vs_size.png", "mAP vs file size",
        "Each model's mAP50-95 against its ONNX file size. Circled on the dashed line: the Pareto front, the "
        "models no other model beats on both size and accuracy.",
        plots.tradeoff_chart(rows, "size_bytes", "ONNX file size (MB)", "mAP50-95 vs file size",
                             pareto=True))  # fmt: skip
    add("map_vs_bits.png", "Accuracy-size curve",
        "mAP50-95 against the mean weight bits of each model, one line per mode: the models of a --target-bits "
        "sweep. Dashed: the float baseline.",
        plots.bits_curve(rows))  # fmt: skip
    from yqt.report.collect import latency_pick

    latency = latency_pick(data)
    notes.append(latency.note)
    latency_how = (
        "as yqt bench measured them side by side" if latency.source == "bench"
        else "as measured during each eval, not side by side: run yqt bench on the models to compare them"
    )  # fmt: skip
    add("map_vs_latency.png", "mAP vs latency",
        f"Each model's mAP50-95 against its median latency per image ({latency_how}).",
        plots.tradeoff_chart(rows, "latency_median_ms", "median ORT latency per image (ms)", "mAP50-95 vs latency",
                             pareto=False))  # fmt: skip
    add("per_class_ap.png", "Per-class AP change",
        "AP50-95 of each class against the baseline's, for the 10 classes with the largest drop in any model "
        "(baseline AP in brackets). Classes with few objects in the image set swing most.",
        plots.per_class_chart(rows, curves, base.name))  # fmt: skip
    add("pr_curves.png", "Precision-recall curves",
        "Mean interpolated precision over classes at COCO's 101 recall thresholds (area all, 100 detections), from "
        "COCOeval's precision array; solid: baseline.",
        plots.pr_chart(rows, curves))  # fmt: skip
    if data.sensitivity_json is not None:
        png = data.sensitivity_png.read_bytes() if data.sensitivity_png is not None else None
        if png is None:
            try:
                png = plots.sensitivity_chart(read_json(data.sensitivity_json, "sensitivity ranking"))
            except Exception as exc:  # a damaged ranking costs its chart, not the report
                notes.append(f"sensitivity chart left out: {data.sensitivity_json.name} unreadable ({exc})")
        add("sensitivity.png", "Layer sensitivity",
            f"Per-layer sensitivity ranking from {data.sensitivity_json.name}: how much low-bit weights in one layer "
            "alone move the detection head.", png)  # fmt: skip
    if data.compare is None:
        notes.append("only one evaluation in the run: no deltas, CIs or trade-off against a baseline")
    method = (
        f"95% CIs from {ci_note}"
        + (
            f" (reused from {data.compare_json.name})."
            if data.compare_reused and data.compare_json
            else " (computed now: no comparison in the run covered its current evaluations)."
        )
        if data.compare
        else ""
    )
    docs = {e.name: e.doc for e in data.evals}
    prov = {}
    for r in rows:
        q = data.quantize_docs.get(r.onnx_sha256 or "") if not r.is_baseline else None
        prov[r.name] = provenance(r, docs.get(r.name), q, lambda p: _rel(p, data.run_dir))
    return ReportModel(
        run_id=data.run_id, created=now_iso(), header=_header(data), rows=rows, plots=charts, notes=notes,
        warnings=list(data.warnings), provenance=prov, max_drop_pt=cfg.max_drop_pt, method=method,
    )  # fmt: skip


def _rel(path: Any, root: Path) -> str:
    if not path:
        return "–"
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _data_rows(doc: dict) -> list[tuple[str, str]]:
    """What the baseline was scored against: a dataset YAML's split, or a COCO annotations file."""
    ds = doc.get("dataset")
    annotations = f"{Path(str(doc.get('annotations_path') or '?')).name}, sha256 {doc.get('annotations_sha256')}"
    if not ds:
        return [("annotations", annotations)]
    return [
        ("dataset", f"{Path(ds['yaml_path']).name} ({ds['root']}), split {ds['split']}, {len(ds['names'])} classes, "
                    f"yaml sha256 {ds['yaml_sha256']}, labels sha256 {ds['labels_sha256']}"),
        ("ground truth", f"built from the YOLO labels: {annotations}"),
    ]  # fmt: skip


def _header(data: RunData) -> list[tuple[str, str]]:
    from yqt.models import model_label

    base = data.baseline
    doc, meta = base.doc, base.meta
    versions = doc.get("versions") or {}
    providers = sorted({p for e in data.evals for p in (e.doc.get("providers_used") or [])[:1]})
    differ = sorted({k for e in data.evals for k, v in (e.doc.get("versions") or {}).items() if versions.get(k) != v})
    shown = ("onnxruntime", "yqt", "torch", "brevitas", "ultralytics", "onnx", "pycocotools", "numpy", "python")
    version_text = ", ".join(f"{k} {versions[k]}" for k in shown if k in versions)
    if differ:
        version_text += f" (evaluations differ in: {', '.join(differ)}; see provenance)"
    weights = meta.get("yqt.weights")
    return [
        ("run", f"{data.run_id} ({data.run_dir.resolve()})"),
        ("model", model_label(meta, (doc.get("contract") or {}).get("kind")) or "unknown"),
        ("weights", f"{Path(weights).name if weights else 'unknown'}, "
                    f"sha256 {meta.get('yqt.weights_sha256', 'unknown')}"),
        ("image set", f"{doc.get('num_images')} images, ids sha256 {doc.get('image_ids_sha256')}"),
        *_data_rows(doc),
        ("providers used", ", ".join(p.removesuffix("ExecutionProvider") for p in providers) or "unknown"),
        ("versions", version_text or "unknown"),
        ("baseline", base.name),
    ]  # fmt: skip
