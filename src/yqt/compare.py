"""Runs side by side: deltas against the baseline with paired bootstrap confidence intervals.

The bootstrap resamples image ids with replacement and recomputes both runs' mAP on the same
resample. pycocotools' per-image matching runs once per evaluation; each resample then only
re-accumulates. An image drawn c times weighs c, and precision/recall are weighted cumulative
sums over the fixed score order, so with every weight 1 the result is pycocotools' own number.
Interpolated precision at recall r is the best precision at any true positive whose recall is at
least r, so only true-positive positions are needed per resample, which keeps it vectorised.

One exception, tested in tests/unit/test_bootstrap_resample.py: two detections of one image and
class with exactly the same score. pycocotools, on a physically duplicated image, interleaves the
copies (a1 a2 a1 a2); the weights count each in place (a1 a1 a2 a2). Int8 models have such ties;
measured on w8a8 (benchmarks/bootstrap_ties.py: 100 resamples of the first 100 dev ids, 8,631 of
15,830 detections tied) the resampled mAP differs by at most 5.1e-3 (0.5 pt; 4.2e-3 for mAP50-95),
inside a CI of a couple of points but not negligible. The w8a8 of an earlier session measured 5.3e-4
(8,553 of 15,723 tied); why today's w8a8 (attention probabilities at [0, 1], every activation range
calibrated) is ten times further off is not yet known.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from yqt.errors import YqtError
from yqt.records import (
    METRIC_LABELS,
    CocoMetrics,
    CompareConfig,
    CompareResult,
    CompareRow,
    MetricDelta,
    mode_with_bits,
    points,
    signed,
)
from yqt.runs import (
    MANIFEST_NAME,
    Run,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    default_runs_dir,
    now_iso,
    read_json,
)

log = logging.getLogger(__name__)

ALL_METRICS = tuple(f.name for f in dataclasses.fields(CocoMetrics))  # the 12, each row carries them all
DEFAULT_COLUMNS = ("mAP_50_95", "mAP_50")  # what the table shows without --metrics / --all
CI_METRICS = ("mAP_50_95", "mAP_50", "mAP_75")  # area all, 100 detections: what the bootstrap re-accumulates
MAX_DROP_METRIC = "mAP_50_95"  # what --max-drop judges
_REQUIRED_KEYS = ("name", "metrics", "image_ids", "image_ids_sha256", "onnx_sha256", "providers_used")


@dataclass(frozen=True)
class Evaluation:
    """One metrics.json and where it came from."""

    label: str
    run_id: str | None
    path: Path
    doc: dict[str, Any]
    explicit: bool = False  # named as a metrics.json path, not found by reading a run

    @property
    def image_set(self) -> str:
        count = self.doc.get("num_images", len(self.doc["image_ids"]))
        truth = self.doc.get("annotations_sha256") or "?"
        return f"{count} images, sha256 {self.doc['image_ids_sha256'][:12]}, ground truth {truth[:12]}"

    @property
    def scored_set(self) -> tuple[str, str | None]:
        """What an mAP is of: the image ids and the ground truth they were scored against. The same
        COCO ids under another dataset's labels (a YOLO YAML of other classes) are another set."""
        return self.doc["image_ids_sha256"], self.doc.get("annotations_sha256")

    @property
    def name(self) -> str:
        return str(self.doc["name"])

    @property
    def mode(self) -> str:
        graph = self.graph_mode
        if graph is not None:  # quantized by another tool: its metadata would call it float
            return graph
        model = self.doc.get("model") or {}
        mode = model.get("yqt.mode", "")
        precision = model.get("yqt.precision", "")
        return f"{mode} {precision}".strip() or "unknown"

    @functools.cached_property
    def graph_mode(self) -> str | None:
        from yqt.graph_label import graph_mode

        return graph_mode(self.doc)

    @property
    def mean_weight_bits(self) -> float | None:
        """The model's parameter-weighted weight bits; a float model's precision (32 or 16) when it has none."""
        if self.graph_mode is not None:
            return None  # the metadata's precision is the float file's, not this one's
        model = self.doc.get("model") or {}
        bits = model.get("yqt.mean_weight_bits")
        if isinstance(bits, (int, float)) and not isinstance(bits, bool):
            return float(bits)
        return {"fp32": 32.0, "fp16": 16.0}.get(str(model.get("yqt.precision", "")))

    @property
    def model(self) -> str:
        """Architecture and head (``yolov10n, nms head``), so two heads of one model tell apart."""
        from yqt.models import model_label

        return model_label(self.doc.get("model") or {}, (self.doc.get("contract") or {}).get("kind"))


# ------------------------------------------------------------------------------------ loading


def load_metrics(path: Path, run_id: str | None = None, explicit: bool = False) -> Evaluation:
    doc = read_json(path, "metrics.json")
    missing = [k for k in _REQUIRED_KEYS if not isinstance(doc, dict) or k not in doc]
    if missing:
        raise YqtError(f"{path} is not a yqt metrics.json (missing {', '.join(missing)})", "re-run yqt eval")
    label = f"{run_id}/{doc['name']}" if run_id else str(doc["name"])
    return Evaluation(label=label, run_id=run_id, path=Path(path), doc=doc, explicit=explicit)


def _run_evaluations(run_dir: Path) -> list[Evaluation]:
    paths = sorted(run_dir.glob("*-coco/metrics.json"))
    if not paths:
        raise YqtError(
            f"run {run_dir.name} has no evaluations (no <name>-coco/metrics.json)",
            f"score a model into it first: yqt eval MODEL.onnx --run {run_dir.name}",
        )
    return [load_metrics(p, run_dir.name) for p in paths]


def resolve_inputs(inputs: Sequence[str], runs_dir: Path | None) -> list[Evaluation]:
    """Run ids, run folders or metrics.json paths → evaluations."""
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    found: list[Evaluation] = []
    for item in inputs:
        path = Path(item)
        if path.is_file():
            run_dir = path.parent.parent
            found.append(load_metrics(path, run_dir.name if (run_dir / MANIFEST_NAME).is_file() else None, True))
        elif path.is_dir() and (path / MANIFEST_NAME).is_file():
            found.extend(_run_evaluations(path))
        elif (runs_dir / item / MANIFEST_NAME).is_file():
            found.extend(_run_evaluations(runs_dir / item))
        else:
            raise YqtError(
                f"unknown run or metrics file: {item}",
                f"pass a run id under {runs_dir}, a run folder, or a metrics.json path",
            )
    unique = list({e.path.resolve(): e for e in found}.values())
    if len(unique) < 2:
        raise YqtError(
            f"compare needs at least two evaluations, got {len(unique)}",
            "pass a second run (or a run holding both the baseline and a quantized evaluation)",
        )
    return unique


def choose_baseline(evals: list[Evaluation], wanted: str | None) -> tuple[Evaluation, list[str]]:
    """The baseline, and a warning when several candidates were there to choose from."""
    if wanted is not None:
        hits = [e for e in evals if wanted in (e.label, e.name, e.run_id, str(e.path))]
        if len(hits) != 1:
            names = ", ".join(e.label for e in evals)
            raise YqtError(f"--baseline {wanted!r} matches {len(hits)} evaluations", f"pick one of: {names}")
        return hits[0], []
    hits = [e for e in evals if "-baseline-" in e.name]
    if not hits:
        raise YqtError(
            "no baseline: no evaluation of a *-baseline-* model", "pass --baseline NAME (a run id or evaluation name)"
        )
    if len(hits) > 1:
        others = ", ".join(e.label for e in hits[1:])
        return hits[0], [f"{len(hits)} baseline evaluations; using {hits[0].label} (not {others}): pass --baseline"]
    return hits[0], []


def pair_by_image_set(
    evals: list[Evaluation], baseline: Evaluation, force: bool
) -> tuple[list[Evaluation], list[str], list[str]]:
    """Keep the evaluations on the baseline's image set. Returns (kept, warnings, left out with reasons).

    An evaluation on another set is left out, with its reason, when its model has an evaluation on
    the baseline's set in the comparison anyway. Otherwise it is refused (named explicitly, or the
    only evaluation of its model), unless ``force``: then it gets a delta and no CI.
    """
    key = baseline.scored_set
    same = [e for e in evals if e.scored_set == key]
    paired_models = {e.doc["onnx_sha256"] for e in same}
    warnings: list[str] = []
    left_out: list[str] = []
    forced: list[Evaluation] = []
    for e in (e for e in evals if e.scored_set != key):
        if not e.explicit and e.doc["onnx_sha256"] in paired_models:
            left_out.append(f"{e.label}: scored on {e.image_set}, not the baseline's {baseline.image_set}; "
                            "the same model's evaluation on the baseline's set is compared instead")  # fmt: skip
        elif force:
            forced.append(e)
        else:
            raise YqtError(
                f"{e.label} was scored on {e.image_set}, {baseline.label} on {baseline.image_set}: "
                "mAPs of different image sets are not comparable",
                "evaluate both on the same data and ids (--max-images / --image-ids-list), or pass --force",
            )
    if forced:
        warnings.append(f"--force: {len(forced)} evaluation(s) on other image sets get deltas but no CI")
        same += forced
    for e in same:
        for field in ("imgsz", "conf"):
            if e.doc.get(field) != baseline.doc.get(field):
                warnings.append(
                    f"{e.label}: {field} {e.doc.get(field)} differs from baseline's {baseline.doc.get(field)}"
                )
    providers = {tuple(e.doc["providers_used"])[:1] for e in same}
    if len(providers) > 1:
        warnings.append(
            "mixed execution providers: " + ", ".join(f"{e.label}: {e.doc['providers_used'][0]}" for e in same)
        )
    return same, warnings, left_out


# ------------------------------------------------------------------------------------ bootstrap


@dataclass
class _CategoryMatches:
    image: np.ndarray  # (D,) image index of each detection, in pycocotools' score order
    tp: np.ndarray  # (T, D) bool
    ignored: np.ndarray  # (T, D) bool
    gt_per_image: np.ndarray  # (I,) non-ignored ground truths per image


class PerImageMatches:
    """pycocotools' matching of one evaluation (area all, maxDets 100), kept per image."""

    def __init__(self, evaluator: Any) -> None:
        params = evaluator.params
        n_img = len(params.imgIds)
        n_area = len(params.areaRng)
        max_det = params.maxDets[-1]
        self.n_images = n_img
        self.iou_thresholds = np.asarray(params.iouThrs)
        self.rec_thresholds = np.asarray(params.recThrs)
        self.categories: list[_CategoryMatches] = []
        n_t = len(params.iouThrs)
        for k in range(len(params.catIds)):
            base = k * n_area * n_img  # area index 0 = "all"
            images, scores, tps, igns = [], [], [], []
            gts = np.zeros(n_img, dtype=np.float64)
            for i in range(n_img):
                e = evaluator.evalImgs[base + i]
                if e is None:
                    continue
                d = len(e["dtScores"][:max_det])
                images.append(np.full(d, i))
                scores.append(np.asarray(e["dtScores"][:max_det], dtype=np.float64))
                tps.append(np.asarray(e["dtMatches"])[:, :max_det] > 0)
                igns.append(np.asarray(e["dtIgnore"])[:, :max_det].astype(bool))
                gts[i] = np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)
            if not images:
                self.categories.append(
                    _CategoryMatches(np.zeros(0, int), np.zeros((n_t, 0), bool), np.zeros((n_t, 0), bool), gts)
                )
                continue
            score = np.concatenate(scores)
            order = np.argsort(-score, kind="mergesort")  # pycocotools' order, ties included
            self.categories.append(
                _CategoryMatches(
                    image=np.concatenate(images)[order],
                    tp=np.concatenate(tps, axis=1)[:, order],
                    ignored=np.concatenate(igns, axis=1)[:, order],
                    gt_per_image=gts,
                )
            )

    def mean_ap(self, weights: np.ndarray) -> np.ndarray:
        """mAP per resample for every IoU threshold: (B, T). ``weights`` is (B, I) image counts."""
        n_b = weights.shape[0]
        n_t = len(self.iou_thresholds)
        total = np.zeros((n_b, n_t))
        valid = np.zeros((n_b, 1))
        for cat in self.categories:
            npig = weights @ cat.gt_per_image  # (B,)
            ok = npig > 0
            if not ok.any():
                continue
            valid[:, 0] += ok
            if not len(cat.image):
                continue  # ground truth but no detections: AP 0 where valid
            w = weights[:, cat.image]  # (B, D)
            w_cum = np.cumsum(w, axis=1)
            for t in range(n_t):
                total[:, t] += np.where(ok, self._ap(cat, t, w, w_cum, npig), 0.0)
        # pycocotools reports -1 when no category has ground truth in the (re)sample.
        return np.where(valid > 0, total / np.maximum(valid, 1), -1.0)

    def _ap(self, cat: _CategoryMatches, t: int, w: np.ndarray, w_cum: np.ndarray, npig: np.ndarray) -> np.ndarray:
        pos = np.flatnonzero(cat.tp[t] & ~cat.ignored[t])
        if not len(pos):
            return np.zeros(w.shape[0])
        tp_cum = np.cumsum(w[:, pos], axis=1)
        ign = np.flatnonzero(cat.ignored[t])
        seen = w_cum[:, pos]
        if len(ign):
            ign_cum = np.concatenate([np.zeros((w.shape[0], 1)), np.cumsum(w[:, ign], axis=1)], axis=1)
            seen = seen - ign_cum[:, np.searchsorted(ign, pos)]
        fp_cum = seen - tp_cum
        precision = tp_cum / (fp_cum + tp_cum + np.spacing(1))
        recall = tp_cum / np.maximum(npig, 1e-12)[:, None]
        best_after = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        # First TP whose recall reaches each threshold, row by row: offset rows so one sorted search does all.
        n_b, n_p = recall.shape
        offsets = np.arange(n_b)[:, None] * 4.0
        idx = np.searchsorted((recall + offsets).ravel(), (self.rec_thresholds[None, :] + offsets).ravel(), "left")
        idx = idx.reshape(n_b, -1) - np.arange(n_b)[:, None] * n_p
        reached = idx < n_p
        q = np.where(reached, np.take_along_axis(best_after, np.minimum(idx, n_p - 1), axis=1), 0.0)
        return q.mean(axis=1)


def per_image_matches(ev: Evaluation) -> PerImageMatches:
    from yqt.data import load_coco
    from yqt.evaluate import cocoeval_for

    # The file beside metrics.json first: a run folder copied elsewhere reads its own detections.
    beside = ev.path.with_name("detections.json")
    det_path = beside if beside.is_file() else Path(ev.doc.get("detections_path") or beside)
    ann_path = ev.doc.get("annotations_path")
    if not det_path.is_file():
        raise YqtError(f"{ev.label}: detections file missing: {det_path}", "re-run yqt eval for this model")
    if not ann_path or not Path(ann_path).is_file():
        raise YqtError(f"{ev.label}: annotations file missing: {ann_path}", "keep the COCO data where eval found it")
    raw = det_path.read_bytes()  # hashed and parsed from the same bytes
    recorded = ev.doc.get("detections_sha256")
    if recorded and hashlib.sha256(raw).hexdigest() != recorded:
        raise YqtError(
            f"{ev.label}: {det_path} does not match the detections_sha256 in its metrics.json (altered or replaced)",
            "re-run yqt eval for this model",
        )
    try:
        detections = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise YqtError(f"detections.json is not valid JSON: {det_path} ({exc})", "re-run yqt eval") from None
    coco = load_coco(Path(ann_path))
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = cocoeval_for(coco, detections, ev.doc["image_ids"])
        evaluator.evaluate()
    return PerImageMatches(evaluator)


def bootstrap_weights(n_images: int, n_resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_images, size=(n_resamples, n_images))
    weights = np.zeros((n_resamples, n_images))
    np.add.at(weights, (np.arange(n_resamples)[:, None], draws), 1.0)
    return weights


def _map_pair(matches: PerImageMatches, weights: np.ndarray) -> dict[str, np.ndarray]:
    per_t = matches.mean_ap(weights)
    at = {round(float(t), 2): i for i, t in enumerate(matches.iou_thresholds)}
    return {"mAP_50_95": per_t.mean(axis=1), "mAP_50": per_t[:, at[0.5]], "mAP_75": per_t[:, at[0.75]]}


# ------------------------------------------------------------------------------------ columns


def _metric_key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def table_columns(cfg: CompareConfig) -> tuple[str, ...]:
    """The metric columns asked for: ``--metrics`` names (``mAP_75`` or ``mAP75``, any case), or ``--all``."""
    if cfg.all_metrics and cfg.metrics:
        raise YqtError("--metrics and --all both given", "pass one: --all shows all 12 metrics")
    if cfg.all_metrics:
        return ALL_METRICS
    if not cfg.metrics:
        return DEFAULT_COLUMNS
    known = {_metric_key(m): m for m in ALL_METRICS} | {_metric_key(v): m for m, v in METRIC_LABELS.items()}
    names = [n.strip() for item in cfg.metrics for n in item.split(",") if n.strip()]
    bad = [n for n in names if _metric_key(n) not in known]
    if bad or not names:
        raise YqtError(
            f"--metrics: unknown metric {', '.join(bad) or '(none given)'}", f"pick from {', '.join(ALL_METRICS)}"
        )
    return tuple(dict.fromkeys(known[_metric_key(n)] for n in names))


def short_labels(evals: Sequence[Evaluation]) -> list[str]:
    """Labels without the run when every evaluation is of one run, or only the run when every one is of
    the same evaluation name; the full label when shortening would make two alike."""
    runs = {e.run_id for e in evals}
    names = {e.name for e in evals}
    if len(runs) == 1:
        short = [e.name for e in evals]
    elif len(names) == 1 and None not in runs:
        short = [str(e.run_id) for e in evals]
    else:
        short = [e.label for e in evals]
    return short if len(set(short)) == len(short) else [e.label for e in evals]


# ------------------------------------------------------------------------------------ the command


def compare(cfg: CompareConfig) -> CompareResult:
    if cfg.bootstrap < 0:
        raise YqtError(f"--bootstrap must be >= 0, got {cfg.bootstrap}", "use --bootstrap 1000 (0 disables CIs)")
    columns = table_columns(cfg)
    evals = resolve_inputs(cfg.inputs, cfg.runs_dir)
    baseline, warnings = choose_baseline(evals, cfg.baseline)
    evals, pairing_warnings, left_out = pair_by_image_set(evals, baseline, cfg.force)
    warnings += pairing_warnings
    if len(evals) < 2:
        raise YqtError(
            f"nothing to compare with {baseline.label}: " + ("; ".join(left_out) or "no other evaluation"),
            "pass evaluations scored on the baseline's image set",
        )
    ordered = [baseline] + [e for e in evals if e is not baseline]
    cis = _confidence_intervals(ordered, cfg) if cfg.bootstrap > 0 else {}
    shorts = short_labels(ordered)
    rows = tuple(
        replace(_row(e, baseline, cis.get(e.label), cfg.max_drop_pt), short_label=short)
        for e, short in zip(ordered, shorts, strict=True)
    )
    rows, latency_note = _with_latencies(rows, ordered)
    passed = all(r.within_max_drop is not False for r in rows)
    result = CompareResult(
        baseline=baseline.label, rows=rows, bootstrap=cfg.bootstrap, seed=cfg.seed, max_drop_pt=cfg.max_drop_pt,
        max_drop_metric=MAX_DROP_METRIC, passed=passed, warnings=tuple(warnings), plot=cfg.plot,
        markdown=cfg.markdown, left_out=tuple(left_out), columns=columns, latency_note=latency_note,
    )  # fmt: skip
    if cfg.markdown is not None:
        atomic_write_text(cfg.markdown, to_markdown(result))
    if cfg.plot is not None and not write_plot(result, cfg.plot):
        nothing = "--plot: no model besides the baseline, so no chart was written"
        result = replace(result, plot=None, warnings=(*result.warnings, nothing))
    return _save_in_baseline_run(result, baseline, cfg)


def _with_latencies(rows: tuple[CompareRow, ...], ordered: list[Evaluation]) -> tuple[tuple[CompareRow, ...], str]:
    """A bench's side-by-side latencies where one covers every row, else each eval's own (labelled)."""
    from yqt.bench_latency import pick_latency

    pick = pick_latency([e.doc for e in ordered], [e.path for e in ordered], baseline=0)
    out = []
    for i, row in enumerate(rows):
        ms = pick.median_ms.get(i)
        out.append(replace(
            row, latency_median_ms=float("nan") if ms is None else float(ms), latency_source=pick.source,
            latency_ratio=pick.ratio.get(i), latency_ratio_ci95=pick.ratio_ci95.get(i),
        ))  # fmt: skip
    return tuple(out), pick.note


def _save_in_baseline_run(result: CompareResult, baseline: Evaluation, cfg: CompareConfig) -> CompareResult:
    """Keep the comparison in the baseline's run (when it has one), as a step with its JSON."""
    run_dir = baseline.path.parent.parent
    if not (run_dir / MANIFEST_NAME).is_file():
        return result
    run = Run(run_dir, run_dir.name)
    stamp = now_iso().replace(":", "-")
    path = run.root / "compare" / f"compare-{stamp}-{uuid.uuid4().hex[:6]}.json"
    try:
        with run.step("compare", cfg) as step:
            saved = replace(result, saved=path.resolve())
            step.add_artifact(atomic_write_json(path, saved), "compare-result")
            step.summary.update(passed=result.passed, rows=len(result.rows), left_out=len(result.left_out))
    except OSError as exc:  # a teammate's read-only run: the comparison still stands, unsaved
        return replace(result, warnings=(*result.warnings, f"not saved in {run_dir}: {exc.strerror or exc}"))
    return saved


def _confidence_intervals(ordered: list[Evaluation], cfg: CompareConfig) -> dict[str, dict[str, tuple[float, float]]]:
    baseline = ordered[0]
    key = baseline.doc["image_ids_sha256"]
    weights = bootstrap_weights(len(baseline.doc["image_ids"]), cfg.bootstrap, cfg.seed)
    base_maps = _map_pair(per_image_matches(baseline), weights)
    cis: dict[str, dict[str, tuple[float, float]]] = {}
    for ev in ordered:
        if ev.doc["image_ids_sha256"] != key:
            continue
        maps = base_maps if ev is baseline else _map_pair(per_image_matches(ev), weights)
        cis[ev.label] = {
            m: tuple(float(v) for v in np.percentile(maps[m] - base_maps[m], [2.5, 97.5]))  # type: ignore[misc]
            for m in CI_METRICS
        }
    return cis


def _row(
    ev: Evaluation, baseline: Evaluation, ci: dict[str, tuple[float, float]] | None, max_drop_pt: float | None
) -> CompareRow:
    is_baseline = ev is baseline
    metrics = {}
    for m in (m for m in ALL_METRICS if m in ev.doc["metrics"] and m in baseline.doc["metrics"]):
        value, base = float(ev.doc["metrics"][m]), float(baseline.doc["metrics"][m])
        # The baseline against itself has no interval worth showing: null, like a metric without a CI.
        ci_pt = None if is_baseline or ci is None or m not in ci else (points(ci[m][0]), points(ci[m][1]))
        excludes = None if ci_pt is None else bool(ci_pt[0] > 0 or ci_pt[1] < 0)
        metrics[m] = MetricDelta(
            value=value, baseline=base, delta_pt=points(value - base), ci95_pt=ci_pt, ci_excludes_zero=excludes
        )
    within = within_max_drop(metrics[MAX_DROP_METRIC].delta_pt, max_drop_pt)
    stale_reason = later_failed_eval(ev)
    latency = (ev.doc.get("latency") or {}).get("median_ms", float("nan"))
    row = CompareRow(
        label=ev.label, run_id=ev.run_id, name=ev.name, mode=ev.mode,
        providers_used=tuple(ev.doc["providers_used"]), onnx_sha256=ev.doc["onnx_sha256"],
        onnx_size_bytes=int(ev.doc.get("onnx_size_bytes") or 0), latency_median_ms=float(latency),
        num_images=int(ev.doc.get("num_images", len(ev.doc["image_ids"]))),
        image_ids_sha256=ev.doc["image_ids_sha256"], metrics_path=ev.path, is_baseline=is_baseline,
        metrics=metrics, within_max_drop=within, stale=stale_reason is not None, stale_reason=stale_reason,
        model=ev.model, short_label=ev.label, mean_weight_bits=ev.mean_weight_bits,
    )  # fmt: skip
    return replace(row, verdict=verdict(row, max_drop_pt))


def within_max_drop(delta_pt: float, max_drop_pt: float | None) -> bool | None:
    """The one PASS/FAIL rule, for compare, the pipeline and the report: a model fails when its Δ is
    below −max_drop_pt mAP points (the check a script writes from the schema). None: not judged."""
    return None if max_drop_pt is None else not delta_pt < -max_drop_pt


def drop_sentence(delta_pt: float, max_drop_pt: float) -> str:
    """``ΔmAP50-95 −0.67 pt is below the −0.50 pt allowed``: the rule's outcome in words."""
    outcome = "within" if within_max_drop(delta_pt, max_drop_pt) else "below"
    return f"ΔmAP50-95 {signed(delta_pt)} pt is {outcome} the {signed(-max_drop_pt)} pt allowed"


def verdict(row: CompareRow, max_drop_pt: float | None) -> str:
    """One sentence with the rule and the outcome, e.g. ``FAIL: ΔmAP50-95 −0.67 pt is below the −0.50 pt
    allowed (--max-drop 0.5). The 95% CI [−2.4, +0.2] includes 0, so the drop may be noise; ...``."""
    if row.is_baseline:
        return "baseline"
    d = row.metrics[MAX_DROP_METRIC]
    if max_drop_pt is None:
        head = f"ΔmAP50-95 {signed(d.delta_pt)} pt (not judged: no --max-drop)."
    else:
        outcome = "PASS" if row.within_max_drop else "FAIL"
        head = f"{outcome}: {drop_sentence(d.delta_pt, max_drop_pt)} (--max-drop {max_drop_pt:g})."
    if d.ci95_pt is None:
        tail = " No CI (bootstrap off, or another image set), so noise cannot be ruled out."
    else:
        ci = f"[{signed(d.ci95_pt[0], 1)}, {signed(d.ci95_pt[1], 1)}]"
        change = "drop" if d.delta_pt < 0 else "gain" if d.delta_pt > 0 else "difference"
        if d.ci_excludes_zero:
            tail = f" The 95% CI {ci} excludes 0, so the {change} is not noise."
        else:
            tail = f" The 95% CI {ci} includes 0, so the {change} may be noise; score more images to tell."
    stale = f" STALE: {row.stale_reason}." if row.stale_reason else ""
    return head + tail + stale


def later_failed_eval(ev: Evaluation) -> str | None:
    """Why this evaluation may be out of date: a later eval step of the same model in its run failed,
    was interrupted, or never finished. ``None`` when the evaluation is the latest word."""
    run_dir = ev.path.parent.parent
    if ev.run_id is None or not (run_dir / MANIFEST_NAME).is_file():
        return None
    created = _timestamp(ev.doc.get("created"))
    try:
        steps = read_json(run_dir / MANIFEST_NAME, "run manifest").get("steps", [])
    except YqtError:
        return None  # compare judges metrics; a damaged manifest is reported by the command that uses it
    for step in reversed(steps):
        if step.get("status") == "ok" or not _same_model_eval(step, ev):
            continue
        started = _timestamp(step.get("started"))
        if created is not None and started is not None and started < created:
            continue
        what = "was interrupted" if step.get("error") == "interrupted" else (
            "failed" if step.get("status") == "failed" else "never finished (still running, or killed)"
        )  # fmt: skip
        return f"a later eval of this model {what} ({step.get('started')}); rerun yqt eval"
    return None


def _same_model_eval(step: dict[str, Any], ev: Evaluation) -> bool:
    if not str(step.get("name", "")).startswith("eval-"):
        return False
    if step["name"] == f"eval-{ev.name}":
        return True
    onnx, recorded = (step.get("config") or {}).get("onnx"), ev.doc.get("onnx_path")
    return bool(onnx and recorded) and Path(onnx).resolve() == Path(recorded).resolve()


def _timestamp(text: Any) -> Any:
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        return None


def ci_text(ci: tuple[float, float] | None, digits: int = 1, sep: str = ",") -> str:
    return "" if ci is None else f"[{signed(ci[0], digits)}{sep}{signed(ci[1], digits)}]"


def to_markdown(result: CompareResult) -> str:
    """The terminal table's columns as Markdown, for a PR: value, Δ in points and (first column) its CI."""
    from yqt.report.markdown import table

    networks = {r.model for r in result.rows}
    head = ["model", *(["network"] if len(networks) > 1 else []), "mode",
            *(METRIC_LABELS[m] for m in result.columns), "latency ms", "size MB"]  # fmt: skip
    rows = []
    for r in result.rows:
        cells = [r.short_label or r.label, *([r.model or "-"] if len(networks) > 1 else [])]
        cells.append(mode_with_bits(r.mode, r.mean_weight_bits))
        for i, m in enumerate(result.columns):
            md = r.metrics.get(m)
            cell = "-" if md is None else f"{md.value:.4f}"
            if md is not None and not r.is_baseline:
                cell += f" {signed(md.delta_pt)}"
                cell += f" {ci_text(md.ci95_pt, 2, ', ')}" if i == 0 and md.ci95_pt else ""
            cells.append(cell)
        cells += [f"{r.latency_median_ms:.1f}", f"{r.onnx_size_bytes / 1e6:.2f}"]
        rows.append(cells)
    lines = table(head, rows, numeric=[i >= 2 for i in range(len(head))])
    network = f"Network: {next(iter(networks))}. " if len(networks) == 1 and next(iter(networks)) else ""
    note = (
        f"{network}Baseline: {result.baseline} (first row). mAP values are fractions; Δ in mAP points vs the "
        f"baseline; [95% CI] from a paired bootstrap over images, {result.bootstrap} resamples, seed {result.seed}. "
        "Latency: median per image; size: the ONNX file."
    )
    verdicts = [f"- {r.short_label or r.label}: {r.verdict}" for r in result.rows if not r.is_baseline]
    return "\n".join([*lines, "", note, "", *verdicts, ""])


def squeeze(text: str, width: int) -> str:
    """``text`` in ``width`` characters: its start and its end (where names differ) around one "…"."""
    if len(text) <= width:
        return text
    tail = (width - 1) * 2 // 3
    return text[: width - 1 - tail] + "…" + text[len(text) - tail :]


def row_label(r: Any) -> str:
    return (r.short_label or r.label) + (" (stale)" if r.stale else "")


def _common_prefix(texts: Sequence[str]) -> str:
    """The start every text shares, up to and with its last ``-``/``_`` (``yolov10n-``); every text keeps
    something after it."""
    if len(texts) < 2:
        return ""
    prefix = texts[0]
    for text in texts[1:]:
        while not text.startswith(prefix):
            prefix = prefix[:-1]
    cut = max(prefix.rfind("-"), prefix.rfind("_"))
    prefix = prefix[: cut + 1]
    return prefix if all(len(t) > len(prefix) for t in texts) else ""


def compare_labels(rows: Sequence[Any], width: int | None) -> list[str] | None:
    """The rows' labels in ``width`` characters: whole if they fit; else without the start their names
    share (``yolov10n-``), the run id squeezed, then dropped; else squeezed in the middle. ``None``
    when no way keeps them apart."""
    full = [row_label(r) for r in rows]
    if width is None or max(map(len, full)) <= width:
        return full
    parts = []
    for r in rows:
        short = r.short_label or r.label
        split = r.run_id is not None and short == f"{r.run_id}/{r.name}"
        parts.append((r.run_id if split else None, r.name if split or short == r.name else short))
    prefix = _common_prefix([name for _, name in parts])
    stale = [" (stale)" if r.stale else "" for r in rows]
    names = [name[len(prefix) :] for _, name in parts]
    rooms = [max(width - len(tag), 1) for tag in stale]
    with_runs = [
        f"{squeeze(run, room - len(name) - 1)}/{name}" if run is not None else name
        for (run, _), name, room in zip(parts, names, rooms, strict=True)
        if run is None or room - len(name) - 1 >= 10
    ]
    for candidate in (with_runs, names):
        if len(candidate) == len(rows) and all(len(c) <= room for c, room in zip(candidate, rooms, strict=True)):
            labels = [c + tag for c, tag in zip(candidate, stale, strict=True)]
            if len(set(labels)) == len(labels):
                return labels
    labels = [squeeze(name, room) + tag for name, room, tag in zip(names, rooms, stale, strict=True)]
    return labels if len(set(labels)) == len(labels) else None


def write_plot(result: CompareResult, path: Path) -> bool:
    """Δ vs the baseline with 95% CIs, each bootstrapped metric of the table per model: the report's chart."""
    from yqt.report.plots import DeltaPoint, delta_chart

    metrics = [m for m in result.columns if m in CI_METRICS] or list(DEFAULT_COLUMNS)
    short = compare_labels(result.rows, 28) or [row_label(r) for r in result.rows]
    points = [
        DeltaPoint(
            f"{label} ({mode_with_bits(r.mode, r.mean_weight_bits)})", METRIC_LABELS[m], r.metrics[m].delta_pt,
            r.metrics[m].ci95_pt, "PASS" if r.within_max_drop else "FAIL" if r.within_max_drop is False else "",
        )
        for r, label in zip(result.rows, short, strict=True)
        if not r.is_baseline
        for m in metrics
    ]  # fmt: skip
    base = next((r for r in result.rows if r.is_baseline), None)
    name = short[result.rows.index(base)] if base is not None else squeeze(result.baseline, 40)
    png = delta_chart(points, result.max_drop_pt, f"Change vs {squeeze(name, 60)}")
    if png is not None:
        atomic_write_bytes(Path(path), png)
    return png is not None
