"""What a report shows, read from the run: evaluations, the comparison, failed steps, curves.

Nothing is recomputed except the paired bootstrap, and that only when no comparison saved in the run
covers its current evaluations. Every problem with the input is a :class:`YqtError` raised before
anything is written.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yqt.compare import MAX_DROP_METRIC, drop_sentence, within_max_drop
from yqt.errors import YqtError
from yqt.records import CompareConfig, CompareResult, CompareRow, ReportConfig, ReportRow, signed
from yqt.runs import MANIFEST_NAME, default_runs_dir, read_json

_FLOAT_BITS = {"fp32": 32.0, "fp16": 16.0}


@dataclass
class EvalDoc:
    """One ``<name>-coco/metrics.json`` and, when it has one, its ``curves.json``."""

    path: Path
    doc: dict[str, Any]
    curves: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return str(self.doc["name"])

    @property
    def meta(self) -> dict[str, Any]:
        return self.doc.get("model") or {}

    @functools.cached_property
    def graph_mode(self) -> str | None:
        """What the graph of a file another tool quantized holds (its metadata would say "fp32")."""
        from yqt.graph_label import graph_mode

        return graph_mode(self.doc)

    @property
    def mode(self) -> str:
        if self.graph_mode is not None:
            return self.graph_mode
        mode = str(self.meta.get("yqt.mode") or "unknown")
        precision = self.meta.get("yqt.precision")
        return f"{mode} {precision}" if mode == "baseline" and precision else mode

    @property
    def mean_weight_bits(self) -> float | None:
        if self.graph_mode is not None:
            return None
        bits = self.meta.get("yqt.mean_weight_bits")
        if isinstance(bits, (int, float)):
            return float(bits)
        return _FLOAT_BITS.get(str(self.meta.get("yqt.precision", "")).lower())


@dataclass
class FailedStep:
    step: str  # quantize-<mode> | eval-<name>
    error: str
    started: str | None


@dataclass
class RunData:
    """Everything the report is made of."""

    run_dir: Path
    run_id: str
    manifest: dict[str, Any]
    evals: list[EvalDoc]
    compare: CompareResult | None
    compare_json: Path | None
    compare_reused: bool
    failed: list[FailedStep]
    sensitivity_json: Path | None
    sensitivity_png: Path | None
    quantize_docs: dict[str, dict[str, Any]] = field(default_factory=dict)  # ONNX sha256 → quantize result JSON
    warnings: list[str] = field(default_factory=list)

    @property
    def baseline(self) -> EvalDoc:
        if self.compare is not None:
            wanted = self.compare.baseline.split("/")[-1]
            for e in self.evals:
                if e.name == wanted:
                    return e
        return next((e for e in self.evals if "-baseline-" in e.name), self.evals[0])


# ------------------------------------------------------------------------------------------ the run


def resolve_run_dir(run: str | Path, runs_dir: Path | None = None) -> Path:
    """A run id under ``runs_dir`` or a run folder → the folder; a one-line error otherwise."""
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    path = Path(run)
    for candidate in (path, runs_dir / str(run)):
        if candidate.is_dir() and (candidate / MANIFEST_NAME).is_file():
            return candidate
    if path.is_dir() or (runs_dir / str(run)).is_dir():
        folder = path if path.is_dir() else runs_dir / str(run)
        raise YqtError(f"{folder} is not a yqt run (no {MANIFEST_NAME})", "pass a run folder made by yqt")
    raise YqtError(f"no such run: {run}", f"pass a run id under {runs_dir} (or --runs-dir DIR), or a run folder")


def read_manifest(run_dir: Path) -> dict[str, Any]:
    manifest = read_json(run_dir / MANIFEST_NAME, "run manifest")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("steps"), list):
        raise YqtError(f"{run_dir / MANIFEST_NAME} is damaged (no list of steps)", "restore it, or re-run the steps")
    return manifest


def load_evals(run_dir: Path) -> tuple[list[EvalDoc], list[str]]:
    paths = sorted(run_dir.glob("*-coco/metrics.json"))
    if not paths:
        raise YqtError(
            f"run {run_dir.name} has no evaluations (no <name>-coco/metrics.json)",
            f"score a model into it first: yqt eval MODEL.onnx --run {run_dir.name}",
        )
    evals, missing = [], []
    for p in paths:
        doc = read_json(p, "metrics.json")
        if not isinstance(doc, dict) or "name" not in doc or "metrics" not in doc:
            raise YqtError(f"{p} is not a yqt metrics.json", "re-run yqt eval for this model")
        curves = None
        curves_path = p.with_name("curves.json")
        if curves_path.is_file():
            curves = read_json(curves_path, "curves.json")
            if curves.get("detections_sha256") != doc.get("detections_sha256"):
                curves = None  # from another evaluation of this name: not this metrics.json's curves
        if curves is None:
            missing.append(str(doc["name"]))
        evals.append(EvalDoc(p, doc, curves))
    warnings = []
    if missing:
        warnings.append(
            f"no per-class AP or PR curve for {', '.join(missing)}: made by a yqt before curves.json; "
            "re-run yqt eval on it to get those plots"
        )
    return evals, warnings


def latest_failures(manifest: dict[str, Any]) -> list[FailedStep]:
    """quantize-* and eval-* steps whose latest record failed, in the order they started."""
    latest: dict[str, tuple[Any, int, dict[str, Any]]] = {}
    for order, step in enumerate(manifest.get("steps", [])):
        name = str(step.get("name", ""))
        if not name.startswith(("quantize-", "eval-")):
            continue
        key = (_timestamp(step.get("started")), order)
        if name not in latest or _later(key, latest[name][:2]):
            latest[name] = (*key, step)
    failed = [
        FailedStep(name, _one_line(step.get("error") or "failed"), step.get("started"))
        for name, (_, _, step) in latest.items()
        if step.get("status") == "failed"
    ]
    return sorted(failed, key=lambda f: f.started or "")


def _later(a: tuple[Any, int], b: tuple[Any, int]) -> bool:
    if a[0] is not None and b[0] is not None and a[0] != b[0]:
        return a[0] > b[0]
    return a[1] > b[1]


def _timestamp(text: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None


def _one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# ------------------------------------------------------------------------------------------ compare


COMPARE_SCHEMAS = ("yqt/compare/1", "yqt/compare/2", "yqt/compare/3")


def _covers(doc: dict[str, Any], evals: Sequence[EvalDoc]) -> bool:
    """A saved comparison is still the word on the run: bootstrapped, and a row for every current
    evaluation on the baseline's image set, of the same model, images and mAP."""
    if not isinstance(doc, dict) or doc.get("schema") not in COMPARE_SCHEMAS or not doc.get("bootstrap"):
        return False
    rows = {r.get("name"): r for r in doc.get("rows", [])}
    base = next((r for r in doc.get("rows", []) if r.get("is_baseline")), None)
    if base is None:
        return False
    for e in evals:
        if e.doc.get("image_ids_sha256") != base.get("image_ids_sha256"):
            continue
        row = rows.get(e.name)
        if row is None or row.get("onnx_sha256") != e.doc.get("onnx_sha256"):
            return False
        value = (row.get("metrics") or {}).get(MAX_DROP_METRIC, {}).get("value")
        if value != e.doc["metrics"].get(MAX_DROP_METRIC):
            return False
    return True


def compare_from_json(doc: dict[str, Any]) -> CompareResult:
    """A saved ``yqt/compare/*`` document back into a record (the fields the report uses)."""
    from yqt.records import MetricDelta

    rows = []
    for r in doc["rows"]:
        metrics = {
            k: MetricDelta(
                value=m["value"],
                baseline=m["baseline"],
                delta_pt=m["delta_pt"],
                ci95_pt=tuple(m["ci95_pt"]) if m.get("ci95_pt") else None,
                ci_excludes_zero=m.get("ci_excludes_zero"),
            )
            for k, m in r["metrics"].items()
        }
        rows.append(
            CompareRow(
                label=r["label"],
                run_id=r.get("run_id"),
                name=r["name"],
                mode=r.get("mode", ""),
                providers_used=tuple(r.get("providers_used") or ()),
                onnx_sha256=r["onnx_sha256"],
                onnx_size_bytes=int(r.get("onnx_size_bytes") or 0),
                latency_median_ms=r.get("latency_median_ms")
                if r.get("latency_median_ms") is not None
                else float("nan"),
                num_images=int(r.get("num_images") or 0),
                image_ids_sha256=r["image_ids_sha256"],
                metrics_path=Path(r["metrics_path"]),
                is_baseline=bool(r["is_baseline"]),
                metrics=metrics,
                stale=bool(r.get("stale")),
                stale_reason=r.get("stale_reason"),
                model=r.get("model", ""),
                short_label=r.get("short_label") or "",
                mean_weight_bits=r.get("mean_weight_bits"),
                latency_source=r.get("latency_source") or "eval",
                latency_ratio=r.get("latency_ratio"),
                latency_ratio_ci95=tuple(r["latency_ratio_ci95"]) if r.get("latency_ratio_ci95") else None,
            )
        )
    return CompareResult(
        baseline=doc["baseline"], rows=tuple(rows), bootstrap=int(doc["bootstrap"]), seed=int(doc.get("seed", 0)),
        max_drop_pt=doc.get("max_drop_pt"), max_drop_metric=doc.get("max_drop_metric", MAX_DROP_METRIC),
        passed=bool(doc.get("passed", True)), warnings=tuple(doc.get("warnings") or ()),
        left_out=tuple(doc.get("left_out") or ()), latency_note=doc.get("latency_note") or "",
    )  # fmt: skip


def find_compare(run_dir: Path, evals: Sequence[EvalDoc]) -> tuple[CompareResult, Path] | None:
    """The newest comparison saved in the run, if it covers the run's current evaluations."""
    # The name holds the time it was saved (a copied run keeps it; mtimes it may not).
    saved = sorted((run_dir / "compare").glob("compare-*.json"), key=lambda p: (p.name, p.stat().st_mtime))
    for path in reversed(saved):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if _covers(doc, evals):
            try:
                return compare_from_json(doc), path
            except (KeyError, TypeError, ValueError):
                continue
        return None  # the newest one is out of date: a fresh one is due
    return None


def run_compare(run_dir: Path, cfg: ReportConfig) -> tuple[CompareResult, Path | None]:
    from yqt.compare import compare

    result = compare(
        CompareConfig(inputs=(str(run_dir),), bootstrap=cfg.bootstrap, seed=cfg.seed, max_drop_pt=cfg.max_drop_pt)
    )
    return result, result.saved


# ------------------------------------------------------------------------------------------ everything


def collect(cfg: ReportConfig) -> RunData:
    run_dir = Path(cfg.run)
    if not (run_dir / MANIFEST_NAME).is_file():
        raise YqtError(f"no such run: {run_dir}", "pass a run folder made by yqt")
    if cfg.bootstrap < 0:
        raise YqtError(f"--bootstrap must be >= 0, got {cfg.bootstrap}", "use 1000 (0 disables CIs)")
    if cfg.max_drop_pt is not None and cfg.max_drop_pt < 0:
        raise YqtError(f"--max-drop must be >= 0 mAP points, got {cfg.max_drop_pt:g}", "e.g. --max-drop 1.0")
    manifest = read_manifest(run_dir)
    evals, warnings = load_evals(run_dir)
    compare_result: CompareResult | None = None
    compare_json: Path | None = None
    reused = False
    if cfg.compare is not None:
        compare_json, reused = Path(cfg.compare), True
        compare_result = _given_compare(compare_json)
        names = {r.name for r in compare_result.rows}
        evals = [e for e in evals if e.name in names]
        warnings += list(compare_result.warnings)
    elif len(evals) > 1:
        found = find_compare(run_dir, evals) if cfg.bootstrap > 0 else None
        if found is not None:
            (compare_result, compare_json), reused = found, True
        else:
            compare_result, compare_json = run_compare(run_dir, cfg)
        warnings += list(compare_result.warnings)
        warnings += [f"left out {reason}" for reason in compare_result.left_out]
    sens_json, sens_png = _sensitivity(run_dir)
    quantize_docs = {}
    for p in sorted((run_dir / "quantize").glob("*.json")):
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and doc.get("mode"):
            for key in ("onnx", "onnx_opt"):  # a model is found by content: a sweep has one mode, many files
                made = doc.get(key) or {}
                if made.get("sha256"):
                    quantize_docs[str(made["sha256"])] = doc
    return RunData(
        run_dir=run_dir, run_id=run_dir.name, manifest=manifest, evals=evals,
        compare=compare_result, compare_json=compare_json, compare_reused=reused,
        failed=latest_failures(manifest), sensitivity_json=sens_json, sensitivity_png=sens_png,
        quantize_docs=quantize_docs, warnings=warnings,
    )  # fmt: skip


def _given_compare(path: Path) -> CompareResult:
    doc = read_json(path, "compare result")
    try:
        return compare_from_json(doc)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise YqtError(f"{path} is not a yqt compare result", "pass a compare/compare-*.json of this run") from None


def _sensitivity(run_dir: Path) -> tuple[Path | None, Path | None]:
    """The newest sensitivity ranking in the run, and its chart when ``yqt sensitivity`` drew one."""
    found = sorted((run_dir / "sensitivity").glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name))
    if not found:
        return None, None
    newest = found[-1]
    png = newest.with_suffix(".png")
    return newest, png if png.is_file() else None


# ------------------------------------------------------------------------------------------ rows


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: smaller or equal x (size, latency) with higher or
    equal y (mAP), better in at least one. Sorted by x."""
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 <= x and y2 >= y) and (x2 < x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def short_provider(name: str | None) -> str | None:
    return None if name is None else name.removesuffix("ExecutionProvider")


def build_rows(data: RunData, max_drop_pt: float | None) -> list[ReportRow]:
    """One row per model: the baseline first, then the compared models, then models that failed
    before they had an evaluation. A model whose latest quantize or eval step failed is FAILED."""
    base = data.baseline
    base_size = base.doc.get("onnx_size_bytes") or None
    base_latency = (base.doc.get("latency") or {}).get("median_ms")
    compare_rows = {r.name: r for r in data.compare.rows} if data.compare else {}
    shown = _shown(data)
    failures = {f.step: f for f in data.failed}
    used: set[str] = set()
    rows = []
    for e in shown:
        fail = failures.get(f"eval-{e.name}") or (failures.get(f"quantize-{e.mode}") if e is not base else None)
        if fail is not None:
            used.add(fail.step)
        rows.append(_eval_row(e, e is base, compare_rows.get(e.name), base_size, base_latency, max_drop_pt, fail))
    rows = _bench_latencies(rows, latency_pick(data))
    for f in data.failed:
        if f.step in used:
            continue
        kind, _, what = f.step.partition("-")
        rows.append(
            ReportRow(
                name=f.step,
                mode=what if kind == "quantize" else "unknown",
                status="failed",
                is_baseline=False,
                error=f.error,
                verdict="FAILED",
                verdict_detail=f"{f.step} failed: {f.error}",
            )
        )
    return rows


def _shown(data: RunData) -> list[EvalDoc]:
    """The evaluations the report has a row for: the baseline, then the compared ones."""
    base = data.baseline
    compare_rows = {r.name for r in data.compare.rows} if data.compare else set()
    return [base] + [e for e in data.evals if e is not base and (not compare_rows or e.name in compare_rows)]


def latency_pick(data: RunData) -> Any:
    """The latencies the report shows: a bench's, side by side, when one covers its models (see
    :mod:`yqt.bench_latency`), else each eval's own timing."""
    from yqt.bench_latency import pick_latency

    shown = _shown(data)
    return pick_latency([e.doc for e in shown], [e.path for e in shown], baseline=0)


def _bench_latencies(rows: list[ReportRow], pick: Any) -> list[ReportRow]:
    from dataclasses import replace

    if pick.source != "bench":
        return rows
    return [replace(r, latency_median_ms=pick.median_ms[i], latency_ratio=pick.ratio.get(i))
            if i in pick.median_ms else r for i, r in enumerate(rows)]  # fmt: skip


def _eval_row(
    e: EvalDoc,
    is_base: bool,
    row: CompareRow | None,
    base_size: int | None,
    base_latency: float | None,
    max_drop_pt: float | None,
    fail: FailedStep | None,
) -> ReportRow:
    size = e.doc.get("onnx_size_bytes")
    latency = (e.doc.get("latency") or {}).get("median_ms")
    m = row.metrics.get(MAX_DROP_METRIC) if row is not None else None
    delta = None if is_base or m is None else m.delta_pt
    ci = None if is_base or m is None else m.ci95_pt
    if fail is not None:
        verdict, detail = "FAILED", f"{fail.step} failed: {fail.error}"
        if delta is not None:
            detail += " (the numbers shown are from an earlier evaluation)"
    elif is_base:
        verdict, detail = "baseline", "the float model the others are measured against"
    elif delta is None:
        verdict, detail = "not judged", "not compared with the baseline (another image set)"
    elif max_drop_pt is None:
        verdict, detail = "not judged", f"ΔmAP50-95 {signed(delta)} pt; no --max-drop given"
    else:
        verdict = "PASS" if within_max_drop(delta, max_drop_pt) else "FAIL"
        detail = drop_sentence(delta, max_drop_pt)
        if ci is not None:
            noise = ci[0] <= 0 <= ci[1]
            detail += f"; 95% CI [{signed(ci[0], 1)}, {signed(ci[1], 1)}] " + (
                "includes 0 (may be noise)" if noise else "excludes 0"
            )
    providers = e.doc.get("providers_used") or []
    return ReportRow(
        name=e.name, mode=e.mode, status="failed" if fail else "ok", is_baseline=is_base,
        error=fail.error if fail else None, mean_weight_bits=e.mean_weight_bits, size_bytes=size,
        size_ratio=(base_size / size) if base_size and size else None,
        mAP_50_95=float(e.doc["metrics"]["mAP_50_95"]), delta_pt=delta, ci95_pt=ci,
        mAP_50=float(e.doc["metrics"]["mAP_50"]), latency_median_ms=latency,
        latency_ratio=(latency / base_latency) if latency and base_latency else None,
        provider=short_provider(providers[0]) if providers else None, verdict=verdict, verdict_detail=detail,
        metrics_path=e.path, onnx_sha256=e.doc.get("onnx_sha256"),
    )  # fmt: skip
