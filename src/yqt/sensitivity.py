"""``yqt sensitivity``: rank every quantizable layer by how much low-bit weights in it alone move the
detection head, and keep the ranking in the run for ``yqt quantize --target-bits``.

The command only: it picks the images, runs the sweep, writes ``sensitivity/<model>-w<bits>[a8].json``
and its bar chart, and checks the ranking on labels (``--verify-top``). The per-layer probe is
:mod:`yqt.quant.probe`; measuring and ranking, and reading a ranking back, are :mod:`yqt.quant.ranking`,
which ``yqt quantize --target-bits`` uses too; choosing the 8-bit layers is :mod:`yqt.quant.mixed`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from yqt.errors import YqtError
from yqt.models import LoadedDetector, load_detector
from yqt.quant import calibrate
from yqt.quant.ranking import ProgressFn, measure
from yqt.records import CalibrationSet, SensitivityConfig, SensitivityResult
from yqt.runs import Run, atomic_write_bytes, atomic_write_json, maybe_step, record_artifact

MIN_BITS, MAX_BITS = 2, 8


def check_config(cfg: SensitivityConfig) -> None:
    if not MIN_BITS <= cfg.bits <= MAX_BITS:
        raise YqtError(f"--bits must be between {MIN_BITS} and {MAX_BITS}, got {cfg.bits}", "use --bits 4")
    if cfg.batch < 1:
        raise YqtError(f"--batch must be at least 1, got {cfg.batch}", "use --batch 8")
    if not 90.0 <= cfg.calib_percentile <= 100.0:
        raise YqtError(f"--calib-percentile must be in [90, 100], got {cfg.calib_percentile}", "use 99.999")
    if cfg.verify_top < 0:
        raise YqtError(f"--verify-top must be 0 or more, got {cfg.verify_top}", "use e.g. --verify-top 10")
    calibrate.check_count(cfg.calib_images)


def probe_tag(bits: int, act: bool) -> str:
    """``w4``, or ``w4a8`` with activation probes: the sweep's step is ``sensitivity-<tag>``."""
    return f"w{bits}{'a8' if act else ''}"


def result_name(stem: str, bits: int, act: bool) -> str:
    return f"{stem}-{probe_tag(bits, act)}"


def sensitivity(
    cfg: SensitivityConfig, run: Run | None = None, progress: ProgressFn | None = None, cluster: Any = None
) -> SensitivityResult:
    """Validate, pick the images, load the model, sweep, and save the ranking and its chart in ``run``.

    ``cluster`` (a :class:`yqt.ray_backend.Cluster`) splits the layers into shards on Ray workers;
    the ranking is the serial one."""
    import torch

    t0 = time.perf_counter()
    check_config(cfg)
    labels = resolve_labels(cfg)
    if cfg.data is not None and cfg.calib_dir is None:
        calib, warnings = calibrate.select_dataset_calibration(cfg.data, cfg.split, cfg.calib_images)
    else:
        folder = calibrate.resolve_calib_dir(cfg.calib_dir, cfg.coco_root, "yqt sensitivity")
        calib, warnings = calibrate.select_calibration(folder, cfg.calib_images)
    torch.manual_seed(cfg.seed)
    detector = load_detector(cfg.weights, cfg.imgsz)
    load_s = time.perf_counter() - t0
    name = result_name(detector.stem, cfg.bits, cfg.act)
    with maybe_step(run, f"sensitivity-{probe_tag(cfg.bits, cfg.act)}", cfg) as step:
        result = measure(detector, calib, cfg, progress, cluster)
        timings = {"load_s": load_s, **result.timings}
        if labels is not None:
            t = time.perf_counter()
            check = verify_ranking(detector, result, labels, cfg.verify_top, progress)
            timings["verify_s"] = time.perf_counter() - t
            result = replace(result, verification=check)
        result = replace(result, warnings=warnings, timings=timings)
        if run is not None:
            folder_out = run.root / "sensitivity"
            t = time.perf_counter()
            png = atomic_write_bytes(folder_out / f"{name}.png", bar_chart_png(result))
            timings["plot_s"] = time.perf_counter() - t
            timings["total_s"] = time.perf_counter() - t0
            result = replace(result, timings=timings, plot_path=png, json_path=folder_out / f"{name}.json")
            record_artifact(step, atomic_write_json(folder_out / f"{name}.json", result), "sensitivity")
            record_artifact(step, png, "sensitivity-plot")
        else:
            timings["total_s"] = time.perf_counter() - t0
            result = replace(result, timings=timings)
        if step is not None:
            top = result.ranked()[:5]
            step.summary.update(layers=len(result.layers), top=[r.name for r in top], images_sha256=calib.sha256)
    return result


# ------------------------------------------------------------------------------------ the chart


def bar_chart_png(result: SensitivityResult) -> bytes:
    """Score per layer in network order (log scale), the top 10 labelled and coloured."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(result.layers)
    top = {r.name for r in result.ranked()[:10]}
    fig, ax = plt.subplots(figsize=(12, 4.5), dpi=110)
    colours = ["#c0392b" if r.name in top else "#7f8c8d" for r in rows]
    ax.bar(range(len(rows)), [max(r.score, 1e-9) for r in rows], color=colours)
    ax.set_yscale("log")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r.name.removeprefix("model.") for r in rows], rotation=90, fontsize=5)
    for i, r in enumerate(rows):
        if r.name in top:
            ax.annotate(str(r.rank), (i, r.score), ha="center", va="bottom", fontsize=7)
    title = f"{result.model.arch}: head error with one layer at {result.bits}-bit weights"
    ax.set_title(title + (" and uint8 input" if result.act else ""), fontsize=11)
    ax.set_ylabel("relative squared error (log)")
    ax.set_xlabel(f"layer, network order; red: top 10 (rank above the bar); {len(result.images.images)} images")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


# ------------------------------------------------------------------------------------ the check on labels

HELD_SPEARMAN = 0.5


@dataclass(frozen=True)
class SweepLabels:
    """The ground truth of the sweep images, and the file it came from (a COCO JSON or a dataset YAML)."""

    coco: Any
    source: Path


def resolve_labels(cfg: SensitivityConfig) -> SweepLabels | None:
    """The labels ``--verify-top`` scores against: the ``--data`` split's, or a COCO JSON's."""
    from yqt.data import load_coco, yolo_labelled_images

    calibrate.check_data_source(cfg.data, cfg.coco_root, cfg.split)
    if cfg.verify_top <= 0:
        return None
    if cfg.data is not None and cfg.verify_annotations is None and cfg.calib_dir is None:
        truth = yolo_labelled_images(Path(cfg.data), cfg.split)
        return SweepLabels(truth.coco, Path(cfg.data).resolve())
    path = resolve_annotations(cfg)
    return SweepLabels(load_coco(path), path.resolve())


def resolve_annotations(cfg: SensitivityConfig) -> Path:
    if cfg.verify_annotations is not None:
        path = Path(cfg.verify_annotations)
    elif cfg.coco_root is not None:
        path = Path(cfg.coco_root) / "annotations" / f"instances_{calibrate.CALIB_SUBDIR}.json"
    else:
        raise YqtError("--verify-top needs labels for the sweep images", "pass --verify-annotations FILE (COCO JSON)")
    if not path.is_file():
        raise YqtError(f"--verify-annotations not found: {path}", "pass the COCO JSON that labels the sweep images")
    return path


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Rank correlation (no ties expected in real scores); 0 for fewer than two values."""
    n = len(a)
    if n < 2:
        return 0.0
    ra = {i: r for r, i in enumerate(sorted(range(n), key=lambda i: a[i]))}
    rb = {i: r for r, i in enumerate(sorted(range(n), key=lambda i: b[i]))}
    d2 = sum((ra[i] - rb[i]) ** 2 for i in range(n))
    return 1.0 - 6.0 * d2 / (n * (n * n - 1))


def _labelled_images(coco: Any, calib: CalibrationSet, annotations: Path) -> list[tuple[int, Path]]:
    # A COCO JSON names files by base name; a dataset YAML's ground truth by path under its root,
    # which is also how calibration names the images of a --data split.
    by_name = {im["file_name"]: im["id"] for im in coco.dataset.get("images", [])}
    items = [(by_name[i.name], calib.folder / i.name) for i in calib.images if i.name in by_name]
    if not items:
        raise YqtError(
            f"none of the {len(calib.images)} sweep images is labelled in {annotations.name}",
            "pass --verify-annotations with the COCO JSON of the --calib-dir images",
        )
    return items


def _model_map(
    detector: LoadedDetector, prepared: Sequence[Any], coco: Any, ids: Sequence[int], categories: Any
) -> float:
    """mAP50-95 of the model as it is now, decoded as eval decodes: a raw ``[4+nc,A]`` head through
    yqt's NMS at eval's defaults, an end-to-end head as its rows."""
    import torch

    from yqt.evaluate import detections_for_image, run_cocoeval
    from yqt.records import NmsSettings
    from yqt.runtime import image_rows

    nms = NmsSettings()
    detections: list[dict[str, Any]] = []
    with torch.no_grad():
        for image in prepared:
            out = detector.module(torch.from_numpy(image.tensor)).numpy()[0]
            rows = image_rows(out, detector.contract, nms)
            detections += detections_for_image(rows, image, nms.conf, nms.max_det, categories)
    return float(run_cocoeval(coco, detections, ids)[0].stats[0])


def verify_ranking(
    detector: LoadedDetector, result: SensitivityResult, labels: SweepLabels, top: int, progress: ProgressFn | None
) -> Any:
    """Score the top ``top`` layers by real mAP, each alone at the probe bits, on the labelled sweep images."""
    from yqt.data import prefetch_images
    from yqt.evaluate import category_mapping
    from yqt.quant import probe
    from yqt.records import RankingCheck, VerifiedLayer

    coco, annotations = labels.coco, labels.source
    items = _labelled_images(coco, result.images, annotations)
    ids = [i for i, _ in items]
    categories, _ = category_mapping(detector.names, coco.dataset.get("categories", []))
    prepared = list(prefetch_images(items, detector.info.imgsz))
    module = detector.module
    float_map = _model_map(detector, prepared, coco, ids, categories)
    chosen = result.ranked()[:top]
    maps = []
    for i, row in enumerate(chosen, 1):
        low_bit = probe.quantized_weight(module.get_submodule(row.name), result.bits)
        with probe.swapped_weight(module, row.name, low_bit):
            maps.append(_model_map(detector, prepared, coco, ids, categories))
        if progress is not None:
            progress(i, len(chosen))
    drops = [100.0 * (float_map - m) for m in maps]
    order = sorted(range(len(chosen)), key=lambda i: -drops[i])
    drop_rank = {i: r for r, i in enumerate(order, 1)}
    rho = spearman([-r.rank for r in chosen], drops)
    held = rho >= HELD_SPEARMAN
    verdict = (
        f"{'held' if held else 'did not hold'}: Spearman ρ {rho:+.2f} between the proxy's order and the mAP drops "
        f"of its top {len(chosen)} on {len(ids)} labelled images (held: ρ ≥ {HELD_SPEARMAN})"
    )
    layers = tuple(VerifiedLayer(r.name, r.rank, maps[i], drops[i], drop_rank[i]) for i, r in enumerate(chosen))
    return RankingCheck(annotations, len(ids), float_map, layers, rho, held, verdict)
