"""The report as data, shared by the HTML and Markdown writers: header facts, rows, plots, provenance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from yqt.records import ReportRow, signed


@dataclass(frozen=True)
class Plot:
    file: str  # name under report/
    title: str
    caption: str
    png: bytes


@dataclass
class ReportModel:
    run_id: str
    created: str
    header: list[tuple[str, str]]
    rows: list[ReportRow]
    plots: list[Plot]
    notes: list[str]  # one line each: what is missing and why
    warnings: list[str]
    provenance: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # row name → (key, value)
    max_drop_pt: float | None = None
    method: str = ""  # where the deltas and CIs come from, in one sentence


COLUMNS = (
    ("model", "Model", False),
    ("mode", "Mode", False),
    ("bits", "W bits (mean)", True),
    ("size", "File size", True),
    ("smaller", "× smaller", True),
    ("map", "mAP50-95", True),
    ("delta", "Δ pt [95% CI]", True),
    ("map50", "mAP50", True),
    ("latency", "ORT latency", True),
    ("xfloat", "× float", True),
    ("provider", "Provider", False),
    ("verdict", "Verdict", False),
)


def fmt_size(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def cells(r: ReportRow) -> dict[str, str]:
    """The summary table's text, one entry per column key (the same for HTML and Markdown)."""
    dash = "–"
    if r.delta_pt is None:
        delta = dash if not r.is_baseline else "0 (ref)"
    else:
        delta = signed(r.delta_pt)
        if r.ci95_pt is not None:
            delta += f" [{signed(r.ci95_pt[0])}, {signed(r.ci95_pt[1])}]"
    return {
        "model": r.name,
        "mode": r.mode,
        "bits": dash if r.mean_weight_bits is None else f"{r.mean_weight_bits:.2f}",
        "size": fmt_size(r.size_bytes),
        "smaller": dash if r.size_ratio is None else f"{r.size_ratio:.2f}×",
        "map": dash if r.mAP_50_95 is None else f"{r.mAP_50_95:.4f}",
        "delta": delta,
        "map50": dash if r.mAP_50 is None else f"{r.mAP_50:.4f}",
        "latency": dash if r.latency_median_ms is None else f"{r.latency_median_ms:.1f} ms",
        "xfloat": dash if r.latency_ratio is None else f"{r.latency_ratio:.2f}×",
        "provider": r.provider or dash,
        "verdict": r.verdict,
    }


def provenance(
    row: ReportRow, doc: dict[str, Any] | None, quantize: dict[str, Any] | None, rel: Any
) -> list[tuple[str, str]]:
    """What produced one row's numbers: files by content, settings, software, and the quantize recipe."""
    out: list[tuple[str, str]] = [("status", row.status + (f": {row.error}" if row.error else ""))]
    out.append(("verdict", row.verdict_detail))
    if doc is not None:
        meta = doc.get("model") or {}
        lat = doc.get("latency") or {}
        out += [
            ("ONNX", f"{rel(doc.get('onnx_path'))} (sha256 {doc.get('onnx_sha256', '?')}, "
             f"{fmt_size(doc.get('onnx_size_bytes'))})"),
            ("metrics", rel(row.metrics_path)),
            ("evaluated", str(doc.get("created", "?"))),
            ("image set", f"{doc.get('num_images')} images, ids sha256 {doc.get('image_ids_sha256')}"),
            ("settings", f"imgsz {doc.get('imgsz')}, conf {doc.get('conf')}, max_det {doc.get('max_det')}"
             + (f", NMS IoU {doc['nms']['iou']}" if doc.get("nms") else "")),
            ("providers", f"requested {', '.join(doc.get('providers_requested') or [])}; "
             f"used {', '.join(doc.get('providers_used') or [])}"),
            ("latency", f"median {lat.get('median_ms', 0):.1f} ms, p90 {lat.get('p90_ms', 0):.1f} ms "
             f"over {lat.get('n')} runs"),
            ("precision", f"{meta.get('yqt.precision', '?')}; weight storage "
             f"{meta.get('yqt.weight_storage', 'float')}; activations {meta.get('yqt.activations', 'float')}"),
        ]  # fmt: skip
        calib = meta.get("yqt.calibration")
        if isinstance(calib, dict):
            out.append(
                ("calibration", f"{calib.get('count')} images from {calib.get('folder')}, sha256 {calib.get('sha256')}")
            )
        for w in doc.get("warnings") or []:
            out.append(("eval warning", str(w)))
    if quantize is not None:
        cfg = quantize.get("config") or {}
        parts = [f"mode {quantize.get('mode')}"]
        if cfg:
            # What was applied, not what was asked: GPTQ runs on low-bit layers only, and only
            # modes with int8 activations have a layout or calibrate.
            solved = int(quantize.get("gptq_layers") or 0)
            parts.append(f"GPTQ on {solved} layers" if solved else "no GPTQ")
            if quantize.get("activations"):
                parts.append(f"layout {cfg.get('layout')}")
            calib_set = quantize.get("calibration") or {}
            if calib_set.get("images"):
                parts.append(f"{len(calib_set['images'])} calibration images")
            if cfg.get("target_bits") is not None:
                parts.append(f"target {cfg['target_bits']} bits")
        parity = quantize.get("parity") or {}
        if parity:
            parts.append(f"parity {parity.get('matched')}/{parity.get('reference_detections')} detections matched"
                         + (f", {parity['ort_matched']}/{parity.get('ort_detections')} of ORT's"
                            if "ort_matched" in parity else ""))  # fmt: skip
        gate = quantize.get("gate") or {}
        if gate:
            parts.append("gate " + ("passed" if gate.get("passed") else "FAILED"))
        out.append(("quantize", "; ".join(parts)))
        mixed = quantize.get("mixed_precision") or {}
        if mixed:
            out.append(
                (
                    "mixed precision",
                    f"{len(mixed.get('promoted') or [])} layers kept at 8 bits: {mixed.get('rule', '')}",
                )
            )
    return out
