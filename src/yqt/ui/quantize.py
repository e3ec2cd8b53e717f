"""``yqt quantize``: layers, gate, parity, mixed precision and which file to ship."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from yqt.records import (
    GateReport,
    QuantizeResult,
)
from yqt.ui.export import device_choice_table, model_cell, render_smoke
from yqt.ui.layout import Block, View, add_col, mb, new_table, result_block, short_sha, shown, yes_no


def _bits_label(d: Any) -> str:
    return "float" if d.bits is None else f"int{d.bits}"


def layer_groups(result: QuantizeResult, most: int = 8) -> list[str]:
    """One line per (bits, reason) group, largest first. The mode's own group is a count; every other
    group is an exception and names its layers, e.g. ``1 kept float: model.23.dfl.conv (DFL ...)``.
    Past ``most`` groups (say, one per layer when each reason carries its own score) the rest are
    counted, and ``--verbose`` lists them."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for d in result.layers:
        groups.setdefault((_bits_label(d), d.reason), []).append(d)
    lines = []
    for (bits, reason), rows in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        kinds = "convs" if all(d.kind == "Conv2d" for d in rows) else "layers"
        mode_prefix = f"{result.mode}: "
        if reason.startswith(mode_prefix):
            lines.append(f"{len(rows)} {kinds}: {bits} ({reason.removeprefix(mode_prefix)})")
            continue
        names = ", ".join(d.name for d in rows[:6]) + (f" and {len(rows) - 6} more" if len(rows) > 6 else "")
        what = "kept float" if bits == "float" else f"at {bits}"
        lines.append(f"{len(rows)} {what}: {names} ({reason})")
    if len(lines) > most:
        hidden = lines[most - 1 :]
        lines = [*lines[: most - 1], f"and {len(hidden)} more groups of layers (--verbose lists every layer)"]
    return lines


def layers_table(result: QuantizeResult) -> Table:
    """Every layer, for --verbose."""
    quantized = sum(d.quantized for d in result.layers)
    table = new_table(f"Layers: {quantized} quantized ({result.mode}), {len(result.layers) - quantized} kept float")
    for col in ("layer", "shape", "weights", "why"):
        add_col(table, col)
    for d in result.layers:
        style = "green" if d.bits is not None else "yellow"
        table.add_row(d.name, d.shape, f"[{style}]{_bits_label(d)}[/]", escape(d.reason))
    return table


def gate_table(gate: GateReport) -> Table:
    table = new_table(f"Validation gate: {gate.target}")
    add_col(table, "check")
    add_col(table, "result")
    add_col(table, "detail")
    for c in gate.checks:
        table.add_row(c.name, yes_no(c.passed, "pass", "FAIL"), escape(c.detail))
    return table


def _gate_line(gate: GateReport) -> str:
    passed = sum(c.passed for c in gate.checks)
    failed = [f"{c.name} ({c.detail})" for c in gate.checks if not c.passed]
    text = f"{passed}/{len(gate.checks)} checks passed on {gate.target}"
    return text + (": FAILED " + "; ".join(failed) if failed else "")


def render_quantize(result: QuantizeResult, view: View) -> list[Any]:
    items: list[Any] = []
    if view.verbose:
        items.append(layers_table(result))
        if result.mixed_precision is not None:
            items.append(mixed_precision_table(result))
        items += [device_choice_table(result.device_choice), gate_table(result.gate)]
        if result.gate_opt is not None:
            items.append(gate_table(result.gate_opt))
    block = Block(view).line(f"[bold]Layers ({result.mode})[/]")
    for line in layer_groups(result):
        block.para(line, indent="  ", hanging="    ")
    block.line("[bold]Checks[/]").pairs(_check_rows(result))
    block.line("[bold]Details[/]" + ("" if view.verbose else " (all layers and checks: --verbose)"))
    block.pairs(_quantize_rows(result))
    items.append(block)
    if view.verbose and result.smoke is not None:
        items += render_smoke(result.smoke, view)[:-1]  # its tables; the quantize result block says the rest
    items.append(_quantize_result(result, view))
    return items


def _check_rows(result: QuantizeResult) -> list[tuple[str, str]]:
    rows = [("gate", _gate_line(result.gate))]
    if result.gate_opt is not None:
        rows.append(("gate -opt", _gate_line(result.gate_opt)))
    if result.parity is not None:
        p = result.parity
        rows.append((
            "parity",
            f"{p.counts()}, at score ≥ {p.score_threshold}, IoU ≥ {p.iou_threshold} "
            f"on {p.images} images ({p.provider.removesuffix('ExecutionProvider')})"
            + (f"; {p.note}" if p.note else ""),
        ))  # fmt: skip
    if result.smoke is not None:
        s = result.smoke
        ran_on = ", ".join(p.removesuffix("ExecutionProvider") for p in s.providers.used)
        rows.append(("smoke", f"{s.num_detections} detections on {s.image.name}, median {s.latency.median_ms:.1f} ms "
                              f"on {ran_on}" + ("" if s.passed else f": FAILED {s.failure}")))  # fmt: skip
    return rows


def _quantize_rows(result: QuantizeResult) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = [("model", model_cell(result.model))]
    choice = result.device_choice
    rows.append(("exported on", f"{choice.device} {choice.precision}"))
    if result.mean_weight_bits is not None:
        rows.append(("mean weight bits", f"{result.mean_weight_bits:.2f} (parameter-weighted; float layers count 32)"))
    if result.mixed_precision is not None:
        rows.append(("mixed precision", _mixed_text(result.mixed_precision)))
    if result.storage is not None:
        rows.append(("weight storage", f"{result.storage.format}, opset {result.storage.opset}: {result.storage.note}"))
    if result.calibration is not None:
        c = result.calibration
        rows.append(("calibration", f"{len(c.images)} images from {shown(c.folder)} (sha256 {short_sha(c.sha256)})"))
    if result.activations is not None:
        a = result.activations
        fused = f"{a.int8_convs_fused} convs fused into int8 kernels by ORT CPU"
        if a.int8_convs_expected is not None:
            fused += f" ({a.int8_convs_expected} expected)"
        rows.append(("activations", f"int8, layout {a.layout}, {a.quantized_tensors} tensors calibrated; {fused}"))
        rows.append(("kept float", a.excluded_reason))
    if result.size is not None:
        s = result.size
        rows.append(("size", f"{mb(s.qcdq_bytes)} vs {mb(s.float_bytes)} float: {s.ratio:.2f}x smaller "
                             f"({s.float_source})"))  # fmt: skip
    times = {k: v for k, v in result.timings.items() if k in ("gptq_s", "calibration_s", "export_s", "total_s")}
    if times:
        threads = f" (torch on {result.torch_threads} threads)" if result.torch_threads else ""
        rows.append(("time", ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in times.items()) + threads))
    return rows


def _mixed_text(m: Any) -> str:
    top = sorted(m.promoted, key=lambda p: (p.rank or 0, p.name))
    shown_names = ", ".join(f"{p.name} (#{p.rank})" for p in top[:5]) + (" …" if len(top) > 5 else "")
    source = shown(m.sensitivity) if m.sensitivity else f"measured now (sha256 {short_sha(m.sensitivity_sha256)})"
    return (
        f"--target-bits {m.target_bits:g}: {len(m.promoted)} layers kept at 8 bits for a mean of {m.mean_bits:.3f} "
        f"bits (all 4-bit: {m.floor_bits:.3f}); most sensitive: {shown_names or 'none'}; ranking: {source}"
    )


def mixed_precision_table(result: QuantizeResult) -> Table:
    """The 8-bit layers --target-bits chose, with their sensitivity rank and score (for --verbose)."""
    m = result.mixed_precision
    table = new_table(f"Kept at 8 bits by --target-bits {m.target_bits:g}: {len(m.promoted)} layers")
    for col in ("layer", "rank", "score", "params"):
        add_col(table, col, justify="left" if col == "layer" else "right")
    for p in sorted(m.promoted, key=lambda p: (p.rank or 0, p.name)):
        table.add_row(p.name, str(p.rank), f"{p.score:.3g}", f"{p.params:,}")
    return table


def _quantize_result(result: QuantizeResult, view: View) -> Block:
    """Which file to ship and why the other exists; or why nothing was published."""
    if not result.passed or result.onnx is None:
        rows = [("failure", f) for f in result.failures]
        if result.onnx is not None:  # smoke runs on the published file, so only it can fail after publishing
            rows.append(("published", f"{shown(result.onnx.path)}, but its smoke check failed: do not ship it"))
        else:
            rows.append(("published", "nothing: a file that failed a check is never published"))
        return result_block(view, False, f"quantize {result.mode}", rows)
    rows = [
        ("ship", f"{shown(result.onnx.path)} ({mb(result.onnx.size_bytes)}, sha256 {short_sha(result.onnx.sha256)})")
    ]
    if result.onnx_opt is not None:
        simplifier = result.config.simplifier.value if result.config is not None else "the simplifier"
        rows.append((
            "also", f"{shown(result.onnx_opt.path)}: the same model simplified by {simplifier}, for tools that "
                    "want fewer nodes; gated like the main file, but parity and smoke ran on the main file only",
        ))  # fmt: skip
    if result.openvino_ir is not None:
        rows.append((
            "OpenVINO", f"{shown(result.openvino_ir.path)} (+ .bin): the same model as an OpenVINO IR, gated by the "
                        "int8 convs OpenVINO compiles from it",
        ))  # fmt: skip
    headline = f"quantize {result.mode}: gate, parity and smoke passed; evaluate and deploy the ship file"
    return result_block(view, True, headline, rows)
