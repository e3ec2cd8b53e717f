"""``yqt compare``: the table fitted to the terminal, and the verdicts."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from yqt.records import (
    METRIC_LABELS,
    mode_with_bits,
    signed,
)
from yqt.ui.layout import Block, View, result_block, short_sha, shown

_LABEL_HEAD = "model"
_MIN_LABEL = 12  # below this a label is squeezed no further: columns go instead


@dataclass(frozen=True)
class _ComparePlan:
    metrics: tuple[str, ...]
    extras: tuple[str, ...]  # "lat ms", "size MB"
    # "ci": the first metric with Δ and CI, the others with Δ; "delta": all with Δ; "first": only the
    # first with Δ; "value": values alone
    detail: str
    label_width: int | None = None  # None: labels whole


def _metric_cells(rows: Sequence[Any], metric: str, with_delta: bool, with_ci: bool) -> list[Text]:
    """Value, Δ (points) and CI of one metric, padded so the parts line up down the column."""
    from yqt.compare import ci_text

    parts = []
    for r in rows:
        md = r.metrics.get(metric)
        if md is None:
            parts.append(("-", "", "", ""))
            continue
        delta = "" if r.is_baseline or not with_delta else signed(md.delta_pt)
        ci = "" if r.is_baseline or not with_ci else ci_text(md.ci95_pt)
        colour = "green" if md.delta_pt > 0 else "red" if md.delta_pt < 0 else ""
        parts.append((f"{md.value:.4f}", delta, ci, colour))
    dw = max(len(p[1]) for p in parts)
    cw = max(len(p[2]) for p in parts)
    cells = []
    for value, delta, ci, colour in parts:
        cell = Text(value.ljust(6))
        if dw:
            cell.append(" " + delta.rjust(dw), style=colour if delta else "")
        if cw:
            cell.append(" " + ci.ljust(cw), style="dim")
        cells.append(cell)
    return cells


def _compare_table(result: Any, plan: _ComparePlan, networks: bool) -> Table:
    from rich import box

    from yqt.compare import compare_labels, row_label, squeeze

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1))
    rows = result.rows
    labels = compare_labels(rows, plan.label_width) or [squeeze(row_label(r), plan.label_width or 1) for r in rows]
    columns: list[tuple[str, list[Any], str]] = [(_LABEL_HEAD, [Text(lb) for lb in labels], "left")]
    if networks:
        columns.append(("network", [Text(r.model or "-") for r in rows], "left"))
    columns.append(("mode", [Text(mode_with_bits(r.mode, r.mean_weight_bits)) for r in rows], "left"))
    for i, m in enumerate(plan.metrics):
        with_delta = plan.detail in ("ci", "delta") or (plan.detail == "first" and i == 0)
        with_ci = plan.detail == "ci" and i == 0
        columns.append((METRIC_LABELS[m], _metric_cells(rows, m, with_delta, with_ci), "left"))
    extra = {
        "lat ms": [Text(f"{r.latency_median_ms:.1f}") for r in rows],
        "size MB": [Text(f"{r.onnx_size_bytes / 1e6:.2f}") for r in rows],
    }
    columns += [(name, extra[name], "right") for name in plan.extras]
    for name, _, justify in columns:
        table.add_column(name, justify=justify, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]
    for i in range(len(rows)):
        table.add_row(*(cells[i] for _, cells, _ in columns))
    return table


def _compare_plans(metrics: Sequence[str], extras: bool) -> Iterator[_ComparePlan]:
    """From the fullest table down: lose the size and latency columns, then the CI, then Δ (but the
    first metric's, in the first table), then metric columns from the end. Labels are squeezed before
    anything goes."""
    metrics = tuple(metrics)
    for detail in ("ci", "delta", "first", "value") if extras else ("ci", "delta", "value"):
        for kept in (("lat ms", "size MB"), ("lat ms",), ()) if extras else ((),):
            yield _ComparePlan(metrics, kept, detail)
    for n in range(len(metrics) - 1, 0, -1):
        yield _ComparePlan(metrics[:n], (), "value")


def fit_compare(
    result: Any, metrics: Sequence[str], width: int, networks: bool, extras: bool = True
) -> tuple[Table, _ComparePlan]:
    """The fullest compare table that fits ``width`` without wrapping, labels squeezed before columns go."""
    from yqt.compare import compare_labels, row_label

    console = Console(width=10_000, file=io.StringIO())
    longest = max(len(row_label(r)) for r in result.rows)
    plan = None
    for plan in _compare_plans(metrics, extras):
        table = _compare_table(result, plan, networks)
        if console.measure(table).maximum <= width:
            return table, plan
        bare = _compare_table(result, replace(plan, label_width=0), networks)
        room = width - console.measure(bare).maximum + len(_LABEL_HEAD)
        if room >= min(_MIN_LABEL, longest) and compare_labels(result.rows, room) is not None:
            plan = replace(plan, label_width=room)
            return _compare_table(result, plan, networks), plan
    assert plan is not None
    plan = replace(plan, label_width=_MIN_LABEL)
    return _compare_table(result, plan, networks), plan


def render_compare(result: Any, view: View) -> list[Any]:
    networks = len({r.model for r in result.rows}) > 1
    # Past six metric columns (--all), the mAPs and the ARs get a table each.
    groups = [result.columns[i : i + 6] for i in range(0, len(result.columns), 6)]
    base = next(r for r in result.rows if r.is_baseline)
    head = Block(view).para(
        f"Compare vs {base.short_label or base.label} (first row): mAP as fractions, Δ in mAP points, "
        f"[95% CI] from a paired bootstrap of {result.bootstrap} resamples"
        if result.bootstrap
        else f"Compare vs {base.short_label or base.label} (first row): mAP as fractions, Δ in mAP points "
        "(no CI: --bootstrap 0)",
        style="bold",
    )
    items: list[Any] = [head]
    missing: list[str] = []
    plans = [fit_compare(result, metrics, view.width, networks, extras=g == 0)[1] for g, metrics in enumerate(groups)]
    squeezed = [p.label_width for p in plans if p.label_width is not None]
    if squeezed:  # one label width, so the tables' labels read the same
        plans = [replace(p, label_width=min(squeezed)) for p in plans]
    for g, (metrics, plan) in enumerate(zip(groups, plans, strict=True)):
        items.append(_compare_table(result, plan, networks))
        missing += [METRIC_LABELS[m] for m in metrics if m not in plan.metrics]
        missing += [e for e in ("lat ms", "size MB") if e not in plan.extras and g == 0]
        if plan.detail != "ci" and g == 0:
            missing.append({"delta": "CI", "first": "Δ past the first metric", "value": "Δ"}[plan.detail])
        elif plan.detail == "value":
            missing.append(f"Δ of {METRIC_LABELS[metrics[0]]} to {METRIC_LABELS[metrics[-1]]}")
    notes = Block(view)
    if missing:
        notes.para(
            f"not shown at {view.width} columns: {', '.join(missing)}; widen the terminal, or use --markdown or --json",
            indent="  note: ", hanging="        ", style="yellow",
        )  # fmt: skip
    notes.pairs(_compare_details(result), indent="")
    from yqt.compare import compare_labels, row_label

    # Each verdict under the label its row has in the table.
    shown_as = compare_labels(result.rows, plans[0].label_width) or [row_label(r) for r in result.rows]
    verdicts = Block(view).line("[bold]Verdict[/]")
    for r, label in zip(result.rows, shown_as, strict=True):
        if not r.is_baseline:
            verdicts.para(f"{label.removesuffix(' (stale)')}: {r.verdict}", indent="  ", hanging="    ")
    for r, label in zip(result.rows, shown_as, strict=True):
        if r.is_baseline and r.stale:
            verdicts.para(f"{label.removesuffix(' (stale)')} (baseline): STALE: {r.stale_reason}.", indent="  ",
                          hanging="    ")  # fmt: skip
    return [*items, notes, verdicts, _compare_result(result, view)]


def _compare_details(result: Any) -> list[tuple[str, str]]:
    """What every row shares, said once; what differs, per row."""
    rows = result.rows
    details: list[tuple[str, str]] = []
    by_run: dict[str, list[str]] = {}
    for r in rows:
        by_run.setdefault(r.run_id or "(no run)", []).append(r.name)
    # The names whole, by run, at any width: each a word of its own, never split.
    details.append(("runs", "; ".join(f"{run}: {', '.join(names)}" for run, names in by_run.items())))
    networks = {r.model for r in rows}
    if len(networks) == 1 and next(iter(networks)):
        details.append(("network", next(iter(networks))))
    images = {(r.num_images, r.image_ids_sha256) for r in rows}
    if len(images) == 1:
        n, sha = next(iter(images))
        details.append(("images", f"{n}, ids sha256 {short_sha(sha)}"))
    else:
        details.append(("images", "; ".join(f"{r.short_label or r.label}: {r.num_images}, ids sha256 "
                                            f"{short_sha(r.image_ids_sha256)}" for r in rows)))  # fmt: skip
    providers = {", ".join(p.removesuffix("ExecutionProvider") for p in r.providers_used) for r in rows}
    if len(providers) == 1:
        details.append(("providers", next(iter(providers))))
    else:
        details.append(("providers", "; ".join(
            f"{r.short_label or r.label}: {', '.join(p.removesuffix('ExecutionProvider') for p in r.providers_used)}"
            for r in rows)))  # fmt: skip
    details.append(("columns", "lat ms: median latency per image; size MB: the ONNX file"))
    details += _latency_details(result)
    return details


def _latency_details(result: Any) -> list[tuple[str, str]]:
    """Where ``lat ms`` comes from (a bench, side by side, or each eval's own timing) and, for a
    bench, each model's latency against the baseline's with its CI over rounds."""
    note = getattr(result, "latency_note", "")
    if not note:
        return []
    rows = [("latency", note.removeprefix("latency: "))]
    ratios = [
        f"{r.short_label or r.label} {r.latency_ratio:.3f}x [{lo:.3f}, {hi:.3f}]"
        for r in result.rows
        if not r.is_baseline and r.latency_source == "bench" and r.latency_ratio is not None
        for lo, hi in [r.latency_ratio_ci95 or (r.latency_ratio, r.latency_ratio)]
    ]
    if ratios:
        rows.append(("x base", "; ".join(ratios)))
    return rows


def _compare_result(result: Any, view: View) -> Block:
    compared = [r for r in result.rows if not r.is_baseline]
    stale = [r.label for r in result.rows if r.stale]
    rows: list[tuple[str, str]] = []
    if stale:
        rows.append(("stale", ", ".join(stale) + ": a later eval of the model failed; rerun yqt eval"))
    for label, path in (("saved", result.saved), ("markdown", result.markdown), ("plot", result.plot)):
        if path is not None:
            rows.append((label, shown(path)))
    if result.max_drop_pt is None:
        headline = f"{len(compared)} evaluation(s) against {result.baseline}; nothing judged (no --max-drop)"
        return result_block(view, None, headline, rows)
    rule = f"ΔmAP50-95 ≥ {signed(-result.max_drop_pt)} pt (--max-drop {result.max_drop_pt:g})"
    below = [r.label for r in compared if r.within_max_drop is False]
    if below:
        headline = f"{len(below)} of {len(compared)} below the allowed {rule}: {', '.join(below)}"
    else:
        headline = f"{len(compared)} of {len(compared)} within the allowed {rule}"
    return result_block(view, result.passed, headline, rows)
