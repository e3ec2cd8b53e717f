"""``yqt export`` and ``yqt smoke``: the device choice, the providers and the verification."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from yqt.records import (
    DeviceChoice,
    ExportResult,
    ExportVerification,
    ProviderReport,
    SmokeResult,
)
from yqt.ui.layout import Block, View, add_col, mb, new_table, result_block, runtime_rows, short_sha, shown, yes_no


def device_choice_table(choice: DeviceChoice) -> Table:
    half = {None: "auto", True: "on", False: "off"}[choice.requested_half]
    table = new_table(f"Export device (--device {choice.requested_device}, --half {half})")
    for col in ("device", "precision", "outcome", "why"):
        add_col(table, col)
    colours = {"chosen": "green", "failed": "red", "skipped": "yellow"}
    for a in choice.attempts:
        table.add_row(a.device, a.precision, f"[{colours.get(a.outcome, 'white')}]{a.outcome}[/]", escape(a.reason))
    return table


def providers_table(report: ProviderReport) -> Table:
    table = new_table("Execution providers")
    for col in ("provider", "requested", "attempted", "actually used"):
        add_col(table, col)
    names = list(dict.fromkeys([*report.requested, *report.attempted, *report.used]))
    for name in names:
        table.add_row(
            name.removesuffix("ExecutionProvider"),
            yes_no(name in report.requested, no="-"),
            yes_no(name in report.attempted, no="no"),
            yes_no(name in report.used, no="no"),
        )
    return table


def _provider_notes(view: View, report: ProviderReport) -> Block:
    block = Block(view)
    for note in report.notes:
        block.para(note, indent="  note: ", hanging="        ", style="yellow")
    return block


def model_cell(model: Any) -> str:
    head = f", {model.head} head" if model.head else ""
    return f"{model.arch} ({model.family or 'YOLO'}{head}; {model.source})"


def _verification_line(v: ExportVerification) -> str:
    c = v.columns
    return (
        f"on {c.compared_rows} {c.rows} rows: boxes {c.box_diff_px:.3g} px (≤ {c.box_tolerance_px:g}), scores "
        f"{c.score_diff:.3g} (≤ {c.score_tolerance:g}), {c.class_mismatches} classes differ (0 allowed); "
        f"whole output max |diff| {v.max_abs_diff:.3g}; {v.image.name} with {v.provider}"
    )


def render_export(result: ExportResult, view: View) -> list[Any]:
    v = result.verification
    details = Block(view).pairs([
        ("model", model_cell(result.model)),
        ("weights sha256", short_sha(result.model.sha256) if result.model.sha256 else "- (random init from config)"),
        *((("BatchNorm", result.model.batchnorm),) if result.model.batchnorm else ()),
        ("PyTorch vs ORT", _verification_line(v)),
        ("output contract", result.contract.detail),
    ], indent="")  # fmt: skip
    headline = f"float baseline exported on {result.device_choice.device} {result.device_choice.precision}"
    headline += ", verified against PyTorch" if result.passed else ", NOT verified against PyTorch"
    summary = result_block(view, result.passed, headline, [
        ("onnx", f"{shown(result.onnx.path)} ({mb(result.onnx.size_bytes)}, sha256 {short_sha(result.onnx.sha256)})"),
    ])  # fmt: skip
    return [device_choice_table(result.device_choice), details, summary]


def render_smoke(result: SmokeResult, view: View) -> list[Any]:
    lat = result.latency
    dets = new_table("Top detections")
    for col in ("class", "score", "box x1,y1,x2,y2 (px)"):
        add_col(dets, col)
    for d in result.top_detections:
        dets.add_row(d.class_name, f"{d.score:.3f}", ", ".join(f"{v:.0f}" for v in d.box_xyxy))
    details = Block(view).pairs([
        ("image", shown(result.image)),
        ("output contract", result.contract.detail),
        ("expected", f"at least {result.min_detections} detections at score >= {result.conf:g}: {result.expectation}"
                     if result.min_detections else f"no number of detections: {result.expectation}"),
        *runtime_rows(result.runtime),
        *(("session option", o) for o in result.providers.session_options),
    ], indent="")  # fmt: skip
    ran_on = ", ".join(p.removesuffix("ExecutionProvider") for p in result.providers.used)
    headline = (
        f"smoke of {result.onnx.path.name}: {result.num_detections} detections with score >= {result.conf:g}, "
        f"median {lat.median_ms:.1f} ms over {lat.n} runs on {ran_on}"
    )
    rows = [("failure", result.failure)] if result.failure else []
    return [providers_table(result.providers), _provider_notes(view, result.providers), dets, details,
            result_block(view, result.passed, headline, rows)]  # fmt: skip
