"""``yqt inspect-graph``: the Q/DQ census of a file."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from yqt.ui.layout import Block, View, add_col, fit_table, mb, new_table, result_block, short_sha, shown

_QDQ_STYLE = {"QuantizeLinear": "bold magenta", "DequantizeLinear": "bold cyan", "Clip": "bold yellow"}
_LAYER_COLUMNS = ("node", "op", "weight", "bits", "granularity", "act quant (scale, zp)", "module", "axis")


def _minority_bit_widths(layers: Sequence[Any]) -> dict[int, list[str]]:
    """Module names of every weight bit width but the most common one, when a model mixes them
    (a --target-bits model: its 8-bit layers beside the 4-bit majority)."""
    from yqt.graph import module_path

    groups: dict[int, list[str]] = {}
    for layer in layers:
        if layer.weight_quantized and layer.weight_bits is not None:
            groups.setdefault(layer.weight_bits, []).append(module_path(layer.name))
    if len(groups) < 2:
        return {}
    majority = max(groups, key=lambda b: len(groups[b]))
    return {b: names for b, names in sorted(groups.items()) if b != majority}


def render_graph(report: Any, view: View) -> list[Any]:
    s = report.summary
    ops = new_table(f"Op counts: {s.nodes} nodes")
    add_col(ops, "op")
    add_col(ops, "count", justify="right")
    for op, n in sorted(report.op_counts.items(), key=lambda kv: (kv[0] not in _QDQ_STYLE, -kv[1], kv[0])):
        style = _QDQ_STYLE.get(op)
        ops.add_row(f"[{style}]{op}[/]" if style else op, str(n))
    by_bits: dict[str, int] = {}
    for layer in report.layers:
        if layer.weight_quantized:
            key = f"{layer.weight_bits}-bit {layer.weight_dtype}"
            by_bits[key] = by_bits.get(key, 0) + 1
    summary = Block(view).pairs([
        *((("model", report.model),) if report.model else ()),
        *((("output", report.contract.detail),) if report.contract is not None else ()),
        ("opset", str(report.opset)),
        ("compute layers", f"{s.compute_layers} ({s.weight_layers} with weights)"),
        ("weights quantized", f"{s.quantized_layers}" + (
            " (" + ", ".join(f"{k}: {n}" for k, n in sorted(by_bits.items())) + ")" if by_bits else "")),
        *((f"{bits}-bit layers", ", ".join(names)) for bits, names in _minority_bit_widths(report.layers).items()),
        ("weights float", f"{s.float_layers}"),
        ("activations quantized", f"{s.act_quantized_layers} layer inputs"),
        ("detection head", f"{s.head_quantized_layers}/{s.head_layers} layers quantized"),
        ("initializers", f"int {mb(s.int_initializer_bytes)}, float {mb(s.float_initializer_bytes)}"),
    ], indent="")  # fmt: skip
    title = "Layers" + (f" (only {report.only})" if report.only else "")
    layers = fit_table(lambda cols: _graph_layers(report, title, cols), _LAYER_COLUMNS, 4, view.width)
    items: list[Any] = [ops, layers]
    if report.diff is not None:
        diff = new_table(f"Differences vs {shown(report.diff_against)}")
        for col in ("node", "change", "before", "after"):
            add_col(diff, col)
        for d in report.diff:
            diff.add_row(d.name, d.change, d.before, d.after)
        if not report.diff:
            diff.caption = "no per-layer differences"
        items.append(diff)
    headline = (
        f"{report.path.name}: {s.quantized_layers} of {s.weight_layers} weight layers quantized, "
        f"{s.act_quantized_layers} activation inputs quantized"
    )
    items += [summary, result_block(view, None, headline, [("model", f"{shown(report.path)} (sha256 "
                                                                      f"{short_sha(report.sha256)})")])]  # fmt: skip
    return items


def _graph_layers(report: Any, title: str, columns: Sequence[str]) -> Table:
    table = new_table(title)
    for col in columns:
        add_col(table, col)
    for layer in report.layers:
        if not layer.has_weight:
            weight = "[dim]none[/]"
        elif layer.weight_quantized:
            weight = f"[green]{layer.weight_dtype}[/]" + (" [red](fp32 stored)[/]" if layer.weight_stored_float else "")
        else:
            weight = f"[yellow]float ({layer.weight_dtype})[/]"
        cells = {
            "node": layer.name.strip("/"),
            "module": (layer.module or "-") + (" [yellow](head)[/]" if layer.head else ""),
            "op": layer.op_type,
            "weight": weight,
            "bits": str(layer.weight_bits or "-"),
            "granularity": (layer.granularity or "-").replace("_", "-"),
            "axis": "-" if layer.axis is None else str(layer.axis),
            "act quant (scale, zp)": f"{layer.act_scale:.4g}, {layer.act_zero_point}" if layer.act_quantized else "no",
        }
        table.add_row(*(cells[c] for c in columns))
    return table
