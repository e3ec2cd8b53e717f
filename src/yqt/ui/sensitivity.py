"""``yqt sensitivity``: the ranked layers and the check on labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from yqt.records import (
    signed,
)
from yqt.ui.layout import Block, View, add_col, fit_table, new_table, result_block, short_sha, shown

_SENSITIVITY_COLUMNS = ("rank", "layer", "score", "params", "8-bit costs")


def _sensitivity_table(result: Any, rows: Sequence[Any], columns: Sequence[str]) -> Table:
    probe = f"{result.bits}-bit weights" + (" + uint8 input" if result.act else "")
    table = new_table(f"Sensitivity: one layer at a time at {probe}")
    for col in columns:
        add_col(table, col, justify="left" if col == "layer" else "right")
    for r in rows:
        cells = {
            "rank": str(r.rank), "layer": r.name, "score": f"{r.score:.3g}", "params": f"{r.params:,}",
            "8-bit costs": f"{r.bytes_to_keep_8bit / 1024:.1f} KiB",
        }  # fmt: skip
        table.add_row(*(cells[c] for c in columns))
    return table


def verification_table(check: Any) -> Table:
    table = new_table(f"Proxy vs real mAP: float {check.float_mAP_50_95:.4f} on {check.images} labelled images")
    for col in ("proxy rank", "layer", "mAP50-95", "drop pt", "drop rank"):
        add_col(table, col, justify="left" if col == "layer" else "right")
    for v in check.layers:
        table.add_row(str(v.rank), v.name, f"{v.mAP_50_95:.4f}", signed(v.drop_pt), str(v.drop_rank))
    return table


def render_sensitivity(result: Any, view: View, top: int = 20) -> list[Any]:
    ranked = result.ranked()
    rows = ranked if top <= 0 else ranked[:top]
    table = fit_table(lambda cols: _sensitivity_table(result, rows, cols), _SENSITIVITY_COLUMNS, 3, view.width)
    items: list[Any] = [table]
    if result.verification is not None:
        items.append(verification_table(result.verification))
    t = result.timings
    where = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in t.items() if k != "total_s")
    images = result.images
    details = Block(view).pairs([
        ("score", result.score),
        ("images", f"{len(images.images)} from {shown(images.folder)} (sha256 {short_sha(images.sha256)})"),
        ("time", f"{t.get('total_s', 0.0):.1f} s: {where}"),
        *((("rows", f"top {top} of {len(ranked)} (--top 0 shows all)"),) if 0 < top < len(ranked) else ()),
        *((("check on labels", result.verification.verdict),) if result.verification is not None else ()),
    ], indent="")  # fmt: skip
    made = [(label, shown(path)) for label, path in (("ranking", result.json_path), ("chart", result.plot_path))
            if path is not None]  # fmt: skip
    head = ", ".join(r.name for r in ranked[:3])
    headline = f"ranked {len(ranked)} layers of {result.model.arch}; most sensitive: {head}"
    return [*items, details, result_block(view, None, headline, made)]
