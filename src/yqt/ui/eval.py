"""``yqt eval``: the COCO metrics and what produced them."""

from __future__ import annotations

from typing import Any

from yqt.records import (
    EvalResult,
    to_jsonable,
)
from yqt.ui.layout import Block, View, add_col, new_table, result_block, runtime_rows, short_sha, shown


def render_eval(result: EvalResult, view: View) -> list[Any]:
    metrics = new_table(f"COCO bbox, {result.num_images} images (fractions, as pycocotools gives them)")
    add_col(metrics, "metric")
    add_col(metrics, "value", justify="right")
    for name, value in to_jsonable(result.metrics).items():
        metrics.add_row(name, f"{value:.4f}")
    lat, t = result.latency, result.timing
    used = ", ".join(p.removesuffix("ExecutionProvider") for p in result.providers_used)
    requested = ", ".join(p.removesuffix("ExecutionProvider") for p in result.providers_requested)
    details = Block(view).pairs([
        *_dataset_rows(result),
        ("image ids", f"{result.num_images}, sha256 {short_sha(result.image_ids_sha256)}"),
        ("onnx sha256", short_sha(result.onnx_sha256)),
        *((("contract", result.contract.detail),) if result.contract is not None else ()),
        *((("NMS", _nms_text(result.nms)),) if result.nms is not None else ()),
        ("providers", f"{used} (requested {requested})"),
        *runtime_rows(result.runtime),
        *(("note", n) for n in result.provider_notes),
        ("latency", f"median {lat.median_ms:.1f} ms, mean {lat.mean_ms:.1f}, p90 {lat.p90_ms:.1f}"),
        ("time", f"{t.total_s:.1f} s total, inference {t.inference_wall_s:.1f} s (session.run "
                 f"{t.session_run_s:.1f} s{f', NMS {t.nms_s:.2f} s' if result.nms is not None else ''}), "
                 f"COCOeval {t.cocoeval_s:.1f} s"),
    ], indent="")  # fmt: skip
    m = result.metrics
    headline = f"scored {result.name} on {result.num_images} images: mAP50-95 {m.mAP_50_95:.4f}, mAP50 {m.mAP_50:.4f}"
    rows = [("metrics", shown(result.metrics_path))] if result.metrics_path else []
    return [metrics, details, result_block(view, None, headline, rows)]


def _dataset_rows(result: EvalResult) -> list[tuple[str, str]]:
    """Where a YOLO-format ground truth came from: the YAML, the root it resolved to, the split."""
    ds = result.dataset
    if ds is None:
        return []
    rows = [
        ("dataset", f"{ds.yaml_path.name}, split {ds.split}, {ds.split_images} images, {len(ds.names)} classes"),
        ("root", str(ds.root)),
    ]
    if ds.bad_label_files:
        rows.append(("bad labels", f"{len(ds.bad_label_files)} image(s) left out (--skip-bad-labels)"))
    if result.dropped_detections:
        rows.append(("not scored", f"{result.dropped_detections} detections of classes the dataset lacks"))
    return rows


def _nms_text(n: Any) -> str:
    return f"yqt ({n.implementation}), per class, IoU {n.iou:g}, conf {n.conf:g}, max {n.max_det}"
