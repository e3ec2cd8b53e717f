"""The report's charts: matplotlib (Agg), each returned as PNG bytes so the page can inline it.

Every chart takes plain data (report rows, curves documents) and draws nothing it was not given.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from yqt.records import ReportRow
from yqt.report.collect import pareto_front

DPI = 110
BASE_COLOUR = "#222222"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#d62728")
PASS_COLOUR, FAIL_COLOUR, NEUTRAL_COLOUR = "#1e8449", "#c0392b", "#5d6d7e"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 9,
            "axes.titlesize": 11,
            "axes.titleweight": "bold",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "legend.fontsize": 8,
            "legend.framealpha": 0.9,
        }
    )
    return plt


def _png(fig: Any) -> bytes:
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return buf.getvalue()


def labels(rows: Sequence[ReportRow]) -> dict[str, str]:
    """A short label per model: its mode where that is unique in the run, else its evaluation name."""
    modes = [r.mode for r in rows]
    return {r.name: (r.mode if modes.count(r.mode) == 1 and r.mode != "unknown" else r.name) for r in rows}


def colours(rows: Sequence[ReportRow]) -> dict[str, str]:
    out, i = {}, 0
    for r in rows:
        if r.is_baseline:
            out[r.name] = BASE_COLOUR
        else:
            out[r.name] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


@dataclass(frozen=True)
class DeltaPoint:
    """One metric of one model against the baseline, as the Δ chart draws it."""

    label: str  # the model, as the caller names it on the axis
    metric: str  # e.g. "mAP50-95"
    delta_pt: float
    ci95_pt: tuple[float, float] | None
    verdict: str = ""  # PASS or FAIL colours the point when the chart has one metric


def report_points(rows: Sequence[ReportRow]) -> list[DeltaPoint]:
    names = labels(rows)
    return [
        DeltaPoint(names[r.name], "mAP50-95", r.delta_pt, r.ci95_pt, r.verdict)
        for r in rows
        if not r.is_baseline and r.delta_pt is not None
    ]


def delta_chart(points: Sequence[DeltaPoint], max_drop_pt: float | None, title: str = "") -> bytes | None:
    """Δ per model with its 95% CI, against the allowed drop: the one chart of ``yqt compare --plot``
    and of the report. With one metric a point is coloured by its verdict; with several, by metric."""
    if not points:
        return None
    plt = _plt()
    models = list(dict.fromkeys(p.label for p in points))
    metrics = list(dict.fromkeys(p.metric for p in points))
    step = 0.7 / len(metrics)
    fig, ax = plt.subplots(figsize=(7.5, (0.3 + 0.25 * len(metrics)) * len(models) + 1.6))
    for p in points:
        y = len(models) - 1 - models.index(p.label) + (len(metrics) - 1) / 2 * step - metrics.index(p.metric) * step
        if len(metrics) == 1:
            colour = {"PASS": PASS_COLOUR, "FAIL": FAIL_COLOUR}.get(p.verdict, NEUTRAL_COLOUR)
        else:
            colour = PALETTE[metrics.index(p.metric) % len(PALETTE)]
        lo, hi = p.ci95_pt if p.ci95_pt else (p.delta_pt, p.delta_pt)
        ax.errorbar(
            p.delta_pt, y, xerr=[[p.delta_pt - lo], [hi - p.delta_pt]], fmt="o", color=colour, ecolor=colour,
            capsize=5, markersize=7, linewidth=1.6, label=p.metric if len(metrics) > 1 else None,
        )  # fmt: skip
        ax.annotate(
            f"{p.delta_pt:+.2f}", (p.delta_pt, y), textcoords="offset points", xytext=(0, 7), ha="center",
            fontsize=8, color=colour,
        )  # fmt: skip
    ax.axvline(0, color="black", linewidth=0.8)
    if max_drop_pt is not None:
        ax.axvline(
            -max_drop_pt, color=FAIL_COLOUR, linestyle="--", linewidth=1, label=f"allowed drop −{max_drop_pt:g} pt"
        )
    handles, names = ax.get_legend_handles_labels()
    if handles:
        unique = dict(zip(names, handles, strict=True))  # one entry per metric, not one per point
        ax.legend(unique.values(), unique.keys(), loc="lower left", bbox_to_anchor=(0, 1.0), frameon=False,
                  borderaxespad=0.2, ncol=len(unique))  # fmt: skip
    ax.set_yticks(range(len(models)), list(reversed(models)))
    ax.set_ylim(-0.6, len(models) - 0.4)
    lows = [min((p.ci95_pt or (p.delta_pt,))[0], p.delta_pt) for p in points]
    highs = [max((p.ci95_pt or (0, p.delta_pt))[1], p.delta_pt) for p in points]
    left = min([*lows, 0.0] + ([-max_drop_pt] if max_drop_pt is not None else []))
    right = max([*highs, 0.0])
    pad = 0.12 * max(right - left, 0.5)
    ax.set_xlim(left - pad, right + pad)
    metric = metrics[0] if len(metrics) == 1 else "mAP"
    ax.set_xlabel(f"Δ{metric} vs baseline (mAP points), 95% paired bootstrap CI")
    ax.set_title(title or "Accuracy change per model", loc="left", pad=18 if handles else 6)
    ax.grid(axis="y", visible=False)
    return _png(fig)


def tradeoff_chart(rows: Sequence[ReportRow], x_of: str, xlabel: str, title: str, pareto: bool) -> bytes | None:
    """mAP50-95 against one cost (file size or latency) per model; ``pareto`` marks the front."""
    pts = [r for r in rows if r.mAP_50_95 is not None and getattr(r, x_of) is not None and r.status == "ok"]
    if not pts:
        return None
    plt = _plt()
    names, cols = labels(rows), colours(rows)
    scale = 1e6 if x_of == "size_bytes" else 1.0
    xy = [(getattr(r, x_of) / scale, r.mAP_50_95) for r in pts]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    if pareto and len(pts) > 1:
        front = pareto_front(xy)
        ax.step(
            [xy[i][0] for i in front], [xy[i][1] for i in front], where="post", color="#888888", linestyle="--",
            linewidth=1.2, zorder=1, label="Pareto front",
        )  # fmt: skip
        ax.scatter(
            [xy[i][0] for i in front], [xy[i][1] for i in front], s=260, facecolors="none", edgecolors="#888888",
            linewidths=1.4, zorder=2,
        )  # fmt: skip
    for r, (x, y) in zip(pts, xy, strict=True):
        ax.scatter([x], [y], s=70, color=cols[r.name], zorder=3)
        ax.annotate(
            names[r.name], (x, y), textcoords="offset points", xytext=(9, 6), fontsize=8.5, color=cols[r.name],
            zorder=4,
        )  # fmt: skip
    xs, ys = [p[0] for p in xy], [p[1] for p in xy]
    xpad = 0.15 * (max(xs) - min(xs) or max(xs) or 1.0)
    ypad = 0.18 * (max(ys) - min(ys) or 0.02)
    ax.set_xlim(max(0.0, min(xs) - xpad), max(xs) + 2 * xpad)  # room on the right for the labels
    ax.set_ylim(min(ys) - ypad, max(ys) + ypad)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mAP50-95")
    ax.set_title(title, loc="left")
    if pareto and len(pts) > 1:
        ax.legend(loc="best")
    return _png(fig)


def bits_curve(rows: Sequence[ReportRow]) -> bytes | None:
    """mAP50-95 against mean weight bits, a line through each mode's models in bits order; drawn only
    for a sweep (a mode with two or more models), with the baseline as a dashed line."""
    ok = [r for r in rows if r.status == "ok" and r.mAP_50_95 is not None and r.mean_weight_bits is not None]
    by_mode: dict[str, list[ReportRow]] = {}
    for r in ok:
        if not r.is_baseline:
            by_mode.setdefault(r.mode, []).append(r)
    if not any(len(v) > 1 for v in by_mode.values()):
        return None
    plt = _plt()
    names, cols = labels(rows), colours(rows)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for r in (r for r in ok if r.is_baseline):
        ax.axhline(r.mAP_50_95, color="#888888", linestyle="--", linewidth=1.2, label=f"{names[r.name]} (float)")
    for mode, members in by_mode.items():
        members.sort(key=lambda r: r.mean_weight_bits)
        xs, ys = [r.mean_weight_bits for r in members], [r.mAP_50_95 for r in members]
        colour = cols[members[0].name]
        ax.plot(xs, ys, marker="o", color=colour, linewidth=1.6, label=mode)
        for r in members:
            ax.annotate(f"{r.mean_weight_bits:.2f}", (r.mean_weight_bits, r.mAP_50_95), textcoords="offset points",
                        xytext=(0, 7), ha="center", fontsize=8, color=colour)  # fmt: skip
    ax.set_xlabel("mean weight bits (parameter-weighted)")
    ax.set_ylabel("mAP50-95")
    ax.set_title("Accuracy against weight bits", loc="left")
    ax.legend(loc="lower right")
    return _png(fig)


def per_class_chart(
    rows: Sequence[ReportRow], curves: dict[str, dict[str, Any]], baseline: str, top: int = 10
) -> bytes | None:
    """AP50-95 change against the baseline, per class, for the ``top`` classes that lost most."""
    base = curves.get(baseline)
    models = [r for r in rows if not r.is_baseline and r.name in curves and r.status == "ok"]
    if base is None or not models:
        return None
    base_ap = {c["category_id"]: (c["name"], c["ap_50_95"]) for c in base["classes"] if c["ap_50_95"] > -1}
    deltas: dict[str, dict[int, float]] = {}
    for r in models:
        mine = {c["category_id"]: c["ap_50_95"] for c in curves[r.name]["classes"]}
        deltas[r.name] = {k: 100 * (mine[k] - v) for k, (_, v) in base_ap.items() if mine.get(k, -1) > -1}
    worst = sorted(base_ap, key=lambda k: min(d.get(k, 0.0) for d in deltas.values()))[:top]
    if not worst:
        return None
    plt = _plt()
    names, cols = labels(rows), colours(rows)
    import numpy as np

    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(worst) * max(1, len(models)) ** 0.5 + 1.5))
    height = 0.8 / len(models)
    y = np.arange(len(worst))[::-1]
    for i, r in enumerate(models):
        vals = [deltas[r.name].get(k, 0.0) for k in worst]
        ax.barh(
            y + (len(models) - 1 - 2 * i) * height / 2, vals, height=height, color=cols[r.name], label=names[r.name]
        )
    ax.set_yticks(y, [f"{base_ap[k][0]}  (base {base_ap[k][1]:.2f})" for k in worst])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("ΔAP50-95 vs baseline (AP points)")
    ax.set_title(f"The {len(worst)} classes that lost most", loc="left")
    ax.grid(axis="y", visible=False)
    ax.margins(x=0.06)
    ax.legend(loc="lower left")
    return _png(fig)


def pr_chart(rows: Sequence[ReportRow], curves: dict[str, dict[str, Any]]) -> bytes | None:
    """Mean precision over classes against recall, at IoU 0.5 and averaged over 0.5:0.95."""
    shown = [r for r in rows if r.name in curves and r.status == "ok"]
    if not shown:
        return None
    plt = _plt()
    names, cols = labels(rows), colours(rows)
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.0), sharey=True)
    for ax, key, what in ((axes[0], "precision_50", "IoU 0.5"), (axes[1], "precision_50_95", "IoU 0.5:0.95")):
        for r in shown:
            c = curves[r.name]
            pts = [(x, p) for x, p in zip(c["recall"], c[key], strict=True) if p > -1]
            if not pts:
                continue
            style = {"linewidth": 2.2, "linestyle": "-"} if r.is_baseline else {"linewidth": 1.4, "linestyle": "--"}
            ax.plot([x for x, _ in pts], [p for _, p in pts], color=cols[r.name], label=names[r.name], **style)
        ax.set_title(f"Precision-recall, {what}", loc="left")
        ax.set_xlabel("recall")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("precision (mean over classes)")
    axes[1].legend(loc="upper right")
    fig.tight_layout()
    return _png(fig)


def sensitivity_chart(doc: dict[str, Any]) -> bytes | None:
    """A sensitivity ranking (``yqt/sensitivity/1``) as ``yqt sensitivity`` draws it, top 10 in red."""
    layers = doc.get("layers") or []
    if not layers:
        return None
    plt = _plt()
    top = {r["name"] for r in sorted(layers, key=lambda r: r["rank"])[:10]}
    fig, ax = plt.subplots(figsize=(10, 4.0))
    ax.bar(
        range(len(layers)), [max(r["score"], 1e-9) for r in layers],
        color=["#c0392b" if r["name"] in top else "#95a5a6" for r in layers],
    )  # fmt: skip
    ax.set_yscale("log")
    ax.set_xticks(range(len(layers)), [r["name"].removeprefix("model.") for r in layers], rotation=90, fontsize=5)
    for i, r in enumerate(layers):
        if r["name"] in top:
            ax.annotate(str(r["rank"]), (i, r["score"]), ha="center", va="bottom", fontsize=7)
    arch = (doc.get("model") or {}).get("arch", "model")
    ax.set_title(f"{arch}: head error with one layer at {doc.get('bits', '?')}-bit weights", loc="left")
    ax.set_ylabel("relative squared error (log)")
    ax.set_xlabel("layer, network order; red: the 10 most sensitive (rank above the bar)")
    ax.grid(axis="x", visible=False)
    return _png(fig)
