"""COCO mAP of an ONNX detector on a fixed, deterministic image subset, scored with pycocotools.

The contract: Ultralytics-predict letterbox, detections with score > conf (at most 300 per image),
boxes mapped back to original pixels, classes mapped 80→91, and ``COCOeval`` (bbox) restricted to
exactly the chosen ids. Decoding runs in a small thread pool ahead of ``session.run``, so eval time
is the model's time. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yqt.backends import open_model, run_name
from yqt.data import (
    COCO80_TO_91,
    LabelledImages,
    PreparedImage,
    check_data_options,
    ids_sha256,
    labelled_images,
    prefetch_images,
    read_ids_list,
    select_image_ids,
    unletterbox_xyxy,
)
from yqt.errors import YqtError
from yqt.graph_label import file_quantization
from yqt.provenance import calibration_overlap
from yqt.records import (
    ClassAP,
    CocoMetrics,
    ContractCheck,
    EvalConfig,
    EvalCurves,
    EvalResult,
    EvalTiming,
    LatencyStats,
    NmsSettings,
    YoloDataset,
)
from yqt.runs import (
    Run,
    atomic_write_bytes,
    atomic_write_json,
    json_bytes,
    maybe_step,
    now_iso,
    package_versions,
    record_artifact,
    sha256_file,
)
from yqt.runtime import (
    class_names_from_session,
    decoded_metadata,
    image_rows,
    input_spec,
    require_contract,
)
from yqt.schema import IMAGE_IDS

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


def validate_eval_config(cfg: EvalConfig) -> None:
    from yqt.backends import check_threads, require_model_file

    require_model_file(Path(cfg.onnx), cfg.runtime)  # a missing or non-model file is named before any data is read
    check_threads(cfg.threads)
    if not 0.0 <= cfg.conf < 1.0:
        raise YqtError(f"--conf must be in [0, 1), got {cfg.conf}", "use the COCO default --conf 0.001")
    if not 1 <= cfg.max_det <= 300:
        raise YqtError(f"--max-det must be in 1..300, got {cfg.max_det}", "use --max-det 300")
    if not 0.0 < cfg.iou <= 1.0:
        raise YqtError(f"--iou must be in (0, 1], got {cfg.iou}", "use Ultralytics' default --iou 0.7")
    if cfg.max_images is not None and cfg.image_ids_list is not None:
        raise YqtError("--max-images and --image-ids-list are exclusive", "pass one of them")
    check_data_options(cfg.data, cfg.split, cfg.skip_bad_labels)


def detections_for_image(
    out: np.ndarray,
    prepared: PreparedImage,
    conf: float,
    max_det: int,
    category_ids: Sequence[int | None] = COCO80_TO_91,
) -> list[dict[str, Any]]:
    """One image's ``[N,6]`` rows (see :func:`yqt.runtime.image_rows`) → COCO result dicts in original-image pixels.

    ``category_ids[c]`` is the dataset category of model class ``c``; None drops the class.
    """
    keep = out[out[:, 4] > conf][:max_det]
    if not len(keep):
        return []
    boxes = unletterbox_xyxy(keep[:, :4], prepared.letterbox)
    results = []
    for (x1, y1, x2, y2), score, cls in zip(boxes.tolist(), keep[:, 4].tolist(), keep[:, 5].tolist(), strict=True):
        c = round(cls)
        category = category_ids[c] if 0 <= c < len(category_ids) else None
        if category is None:
            continue  # a class the dataset does not have cannot be scored
        results.append(
            {
                "image_id": prepared.image_id,
                "category_id": category,
                # Unrounded: compare re-scores these exact values and must agree with pycocotools.
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(score),
            }
        )
    return results


def _some(names: Sequence[str], shown: int = 4) -> str:
    return ", ".join(repr(n) for n in names[:shown]) + (" ..." if len(names) > shown else "")


def _normal(name: str) -> str:
    return " ".join(str(name).lower().replace("_", " ").split())


def category_mapping(
    model_names: Sequence[str], categories: Sequence[dict[str, Any]]
) -> tuple[list[int | None], list[str]]:
    """Model class index → dataset category id, by name. Returns the mapping and notes.

    Every dataset category must be one of the model's classes, or its objects could never be
    detected and the mAP would be silently wrong; model classes the dataset lacks are dropped.
    """
    by_name: dict[str, int] = {}
    for c in categories:
        name = _normal(c["name"])
        if name in by_name:
            raise YqtError(
                f"the dataset names two categories {c['name']!r} (ids {by_name[name]} and {c['id']})",
                "give every category of the annotations file a distinct name",
            )
        by_name[name] = int(c["id"])
    mapping = [by_name.get(_normal(n)) for n in model_names]
    missing = sorted(set(by_name) - {_normal(n) for n in model_names})
    if missing:
        raise YqtError(
            f"{len(missing)} of the dataset's {len(by_name)} categories match no class of the model "
            f"({_some(missing)}); the model's classes are {_some(list(model_names))}",
            "score a model trained on these categories, or rename the categories to the model's class names",
        )
    dropped = [n for n, c in zip(model_names, mapping, strict=True) if c is None]
    notes = (
        [f"{len(dropped)} model class(es) absent from the dataset are not scored (e.g. {dropped[0]!r})"]
        if dropped
        else []
    )
    return mapping, notes


def model_class_names(
    session: Any, contract: ContractCheck, onnx_path: Path, dataset_categories: int
) -> tuple[str, ...]:
    """The model's class names, checked against the class count a raw output carries in its shape."""
    names = class_names_from_session(session)
    nc = contract.num_classes
    if nc is None or len(names) == nc:
        return names
    meta = session.get_modelmeta().custom_metadata_map
    if "yqt.names" in meta or "names" in meta:
        raise YqtError(
            f"{onnx_path}: the output has {nc} classes (raw output {list(contract.output_shape)}) "
            f"but the file's metadata names {len(names)}",
            "re-export the model so that its class names match its head",
        )
    raise YqtError(
        f"{onnx_path}: the output has {nc} classes (raw output {list(contract.output_shape)}) and the file names none, "
        f"while the dataset has {dataset_categories} categories",
        "score the model on a dataset of its own classes, or export it with its class names (yqt export writes them)",
    )


def _empty_results(coco: Any) -> Any:
    # loadRes() cannot take an empty list; an empty result set must still score (as zero).
    from pycocotools.coco import COCO

    empty = COCO()
    empty.dataset = {
        "images": list(coco.dataset["images"]),
        "categories": list(coco.dataset["categories"]),
        "annotations": [],
    }
    empty.createIndex()
    return empty


def cocoeval_for(coco: Any, detections: Sequence[dict[str, Any]], image_ids: Sequence[int]) -> Any:
    from pycocotools.cocoeval import COCOeval

    # loadRes adds area, id, iscrowd and segmentation to the dicts it is given: hand it copies, so
    # detections.json keeps only the COCO result fields.
    dt = coco.loadRes([dict(d) for d in detections]) if detections else _empty_results(coco)
    evaluator = COCOeval(coco, dt, "bbox")
    evaluator.params.imgIds = sorted(image_ids)
    return evaluator


def run_cocoeval(coco: Any, detections: Sequence[dict[str, Any]], image_ids: Sequence[int]) -> tuple[Any, str]:
    """COCOeval bbox over exactly ``image_ids`` in one go. Returns the evaluator and its summary text."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        evaluator = cocoeval_for(coco, detections, image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator, buffer.getvalue()


def eval_curves(evaluator: Any, coco: Any, name: str, detections_sha256: str | None = None) -> EvalCurves:
    """Per-class AP and mean precision-recall curves from an accumulated COCOeval (area all, maxDets 100).

    pycocotools' ``precision[T, R, K, A, M]`` holds -1 for a category without ground truth in the
    image set (every recall, every IoU); such categories count neither in an AP nor in a mean curve,
    exactly as ``summarize`` leaves them out of the mAP.
    """
    params = evaluator.params
    area = list(params.areaRngLbl).index("all")
    maxdet = list(params.maxDets).index(100)
    precision = np.asarray(evaluator.eval["precision"])[:, :, :, area, maxdet]  # (T, R, K)
    iou50 = int(np.argmin(np.abs(np.asarray(params.iouThrs) - 0.5)))
    names = {c["id"]: c["name"] for c in coco.loadCats(params.catIds)}

    def mean_valid(values: np.ndarray, axis: Any) -> np.ndarray:
        valid = values > -1
        total = np.where(valid, values, 0.0).sum(axis=axis)
        count = valid.sum(axis=axis)
        return np.where(count > 0, total / np.maximum(count, 1), -1.0)

    classes = tuple(
        ClassAP(
            category_id=int(cat),
            name=str(names.get(cat, cat)),
            ap_50_95=float(mean_valid(precision[:, :, k], axis=None)),
            ap_50=float(mean_valid(precision[iou50, :, k], axis=None)),
        )
        for k, cat in enumerate(params.catIds)
    )
    return EvalCurves(
        name=name,
        recall=tuple(float(r) for r in params.recThrs),
        precision_50=tuple(float(v) for v in mean_valid(precision[iou50], axis=1)),
        # At each recall: the mean over IoU thresholds and categories with ground truth.
        precision_50_95=tuple(
            float(v) for v in mean_valid(precision.transpose(1, 0, 2).reshape(len(params.recThrs), -1), axis=1)
        ),
        classes=classes,
        detections_sha256=detections_sha256,
    )


class IncrementalCocoEval:
    """pycocotools' per-image matching, run chunk by chunk while inference is still going.

    ``COCOeval.evaluate`` matches each (image, category) independently, so matching chunks of
    ascending image ids and splicing their ``evalImgs`` back into pycocotools' (category, area,
    image) order gives exactly the single-shot result; ``accumulate``/``summarize`` then run once,
    unchanged. This takes matching off the critical path: eval time is the model's time.
    """

    def __init__(self, coco: Any, image_ids: Sequence[int], chunk: int = 10) -> None:
        self.coco = coco
        self.image_ids = sorted(image_ids)
        self.chunk = chunk
        self._pending_ids: list[int] = []
        self._pending_dets: list[dict[str, Any]] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="yqt-cocoeval")
        self._futures: list[Any] = []

    def add(self, image_id: int, detections: list[dict[str, Any]]) -> None:
        self._pending_ids.append(image_id)
        self._pending_dets.extend(detections)
        if len(self._pending_ids) >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if self._pending_ids:
            ids, dets = self._pending_ids, self._pending_dets
            self._pending_ids, self._pending_dets = [], []
            self._futures.append(self._pool.submit(self._match, ids, dets))

    def _match(self, ids: list[int], dets: list[dict[str, Any]]) -> tuple[int, list[Any], Any]:
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator = cocoeval_for(self.coco, dets, ids)
            evaluator.evaluate()
        return len(ids), evaluator.evalImgs, evaluator

    def finish(self) -> tuple[Any, str]:
        self._flush()
        try:
            parts = [f.result() for f in self._futures]
        finally:
            self._pool.shutdown(wait=True)
        if sum(n for n, _, _ in parts) != len(self.image_ids):
            raise RuntimeError("incremental COCOeval saw a different image set than it was given")
        final = parts[0][2] if parts else cocoeval_for(self.coco, [], self.image_ids)
        n_cats = len(final.params.catIds)
        n_areas = len(final.params.areaRng)
        spliced: list[Any] = []
        for k in range(n_cats):
            for a in range(n_areas):
                for n, eval_imgs, _ in parts:
                    start = (k * n_areas + a) * n
                    spliced.extend(eval_imgs[start : start + n])
        final.params.imgIds = list(self.image_ids)
        final._paramsEval = copy.deepcopy(final.params)
        final.evalImgs = spliced
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            final.accumulate()
            final.summarize()
        return final, buffer.getvalue()


def evaluate(
    cfg: EvalConfig, run: Run | None = None, progress: ProgressFn | None = None, cluster: Any = None
) -> EvalResult:
    """Score ``cfg.onnx`` on the chosen COCO subset. With a run, writes ``<name>-coco/`` into it.

    ``cluster`` (a :class:`yqt.ray_backend.Cluster`) runs inference in shards on Ray workers; the
    scoring, and every file written, stay here and equal the serial run's.
    """
    t_start = time.perf_counter()
    validate_eval_config(cfg)
    truth = labelled_images(cfg.coco_root, cfg.images_dir, cfg.annotations, cfg.data, cfg.split, cfg.skip_bad_labels)
    coco = truth.coco
    ids_list = read_ids_list(cfg.image_ids_list) if cfg.image_ids_list else None
    selection = select_image_ids(truth.order, cfg.max_images, ids_list, in_given_order=truth.in_name_order)
    items = _image_items(truth, selection.ids)
    # No spinning: decoding and COCO matching run beside inference on the same cores (7% faster here).
    session, providers, runtime_info = open_model(
        Path(cfg.onnx), cfg.runtime, cfg.providers, spin=False, threads=cfg.threads
    )
    contract = require_contract(session, Path(cfg.onnx))
    categories = coco.loadCats(coco.getCatIds())
    names = model_class_names(session, contract, Path(cfg.onnx), len(categories))
    category_ids, category_notes = category_mapping(names, categories)
    nms = NmsSettings(iou=cfg.iou, conf=cfg.conf, max_det=cfg.max_det) if contract.num_classes is not None else None
    warnings = list(selection.warnings) + _dataset_notes(truth) + category_notes
    warnings += _calibration_check(session, items, cfg.force)
    input_name, imgsz, dtype = input_spec(session)
    name = cfg.name or run_name(Path(cfg.onnx), cfg.runtime)

    with maybe_step(run, f"eval-{name}", cfg) as step:
        for warning in warnings:
            log.warning(warning)
        matcher = IncrementalCocoEval(coco, selection.ids)
        t_loop = time.perf_counter()
        if cluster is None:
            session.run(None, {input_name: np.zeros((1, 3, imgsz, imgsz), dtype=dtype)})  # warm-up, untimed
            t_loop = time.perf_counter()
            images = infer_images(session, input_name, items, imgsz, dtype, cfg, category_ids, contract, nms)
        else:
            images = cluster.eval_images(cfg, items, category_ids, nms, step)
        detections, dropped, run_times, nms_s = _collect(images, len(items), matcher, progress)
        loop_s = time.perf_counter() - t_loop
        if dropped:
            warnings.append(f"{dropped} detection(s) of model classes the dataset does not have were not scored")
            log.warning(warnings[-1])
        t_coco = time.perf_counter()
        evaluator, summary_text = matcher.finish()
        cocoeval_s = time.perf_counter() - t_coco
        log.info("COCOeval summary:\n%s", summary_text)
        folder = run.eval_dir(name) if run is not None else None
        detections_sha256 = None
        annotations_path = truth.annotations_path
        if folder is not None and truth.ground_truth_json is not None:  # compare and report re-score against it
            annotations_path = atomic_write_bytes(folder / "ground_truth.json", truth.ground_truth_json)
        if folder is not None:  # bulk files first; metrics.json, written last, marks the eval complete
            payload = json_bytes(detections, compact=True)  # hashed as written, not read back
            detections_sha256 = hashlib.sha256(payload).hexdigest()
            atomic_write_bytes(folder / "detections.json", payload)
            atomic_write_json(
                folder / "image_ids.json",
                {"schema": IMAGE_IDS, "image_ids": selection.ids, "sha256": ids_sha256(selection.ids)},
            )
            # The report's PR curves and per-class AP; before metrics.json, like the other bulk files.
            atomic_write_json(folder / "curves.json", eval_curves(evaluator, coco, name, detections_sha256))
        result = EvalResult(
            name=name,
            metrics=CocoMetrics.from_stats(evaluator.stats),
            num_images=len(selection.ids),
            image_ids=selection.ids,
            image_ids_sha256=ids_sha256(selection.ids),
            num_detections=len(detections),
            onnx_path=Path(cfg.onnx).resolve(),
            onnx_sha256=sha256_file(Path(cfg.onnx)),
            onnx_size_bytes=Path(cfg.onnx).stat().st_size,
            model=decoded_metadata(session.get_modelmeta().custom_metadata_map),
            providers_requested=providers.requested,
            providers_used=providers.used,
            provider_notes=providers.notes,
            session_options=providers.session_options,
            category_ids=tuple(category_ids),
            imgsz=imgsz,
            conf=cfg.conf,
            max_det=cfg.max_det,
            latency=LatencyStats.from_seconds(run_times),
            timing=EvalTiming(
                total_s=time.perf_counter() - t_start,
                inference_wall_s=loop_s,
                session_run_s=float(sum(run_times)),
                cocoeval_s=cocoeval_s,
                nms_s=nms_s,
            ),
            annotations_path=annotations_path.resolve() if annotations_path else None,
            annotations_sha256=truth.annotations_sha256,
            images_dir=truth.images_dir.resolve(),
            versions=package_versions(),
            config=cfg,
            created=now_iso(),
            warnings=tuple(warnings),
            detections_path=(folder / "detections.json").resolve() if folder else None,
            detections_sha256=detections_sha256,
            metrics_path=(folder / "metrics.json").resolve() if folder else None,
            run_id=run.run_id if run is not None else None,
            contract=contract,
            nms=nms,
            dataset=_dataset_record(truth),
            dropped_detections=dropped,
            runtime=runtime_info,
            graph_quantization=file_quantization(Path(cfg.onnx)) if Path(cfg.onnx).suffix != ".xml" else None,
        )
        if folder is not None:
            atomic_write_json(folder / "metrics.json", result)
            log.info("wrote %s", result.metrics_path)
            artifacts = ((result.detections_path, "detections"), (folder / "curves.json", "curves"),
                         (result.metrics_path, "metrics"))  # fmt: skip
            for path, kind in artifacts:
                record_artifact(step, path, kind)
            if step is not None:
                step.summary.update(
                    mAP_50_95=result.metrics.mAP_50_95,
                    mAP_50=result.metrics.mAP_50,
                    num_images=result.num_images,
                    providers_used=result.providers_used,
                )
        return result


def _calibration_check(session: Any, items: Sequence[tuple[int, Path]], force: bool) -> list[str]:
    """Refuse to score a model on images it was calibrated on: its mAP would be inflated."""
    overlap = calibration_overlap(session.get_modelmeta().custom_metadata_map, [p for _, p in items])
    if not overlap:
        return []
    what = f"{len(overlap)} of the {len(items)} scored images were used to calibrate this model (e.g. {overlap[0]})"
    if not force:
        raise YqtError(f"{what}: its mAP would be inflated", "score images it has not seen (val2017), or pass --force")
    return [f"{what}; scored anyway (--force): the mAP is inflated"]


def _image_items(truth: LabelledImages, ids: Sequence[int]) -> list[tuple[int, Path]]:
    items = [(i, truth.paths[i]) for i in ids]
    missing = [p for _, p in items if not p.is_file()]
    if missing:
        raise YqtError(
            f"{len(missing)} image file(s) missing from {truth.images_dir}, e.g. {missing[0].name}",
            "check --images-dir, or leave those ids out with --image-ids-list",
        )
    return items


def _dataset_notes(truth: LabelledImages) -> list[str]:
    yolo = truth.yolo
    if yolo is None:
        return []
    notes = []
    if yolo.skipped:
        shown = "; ".join(f"{i.where()}: {i.problem}" for i in yolo.skipped[:3])
        more = " ..." if len(yolo.skipped) > 3 else ""
        notes.append(f"{len(yolo.skipped)} image(s) with malformed labels left out (--skip-bad-labels): {shown}{more}")
    return notes


def _dataset_record(truth: LabelledImages) -> YoloDataset | None:
    yolo = truth.yolo
    if yolo is None:
        return None
    ds = yolo.dataset
    return YoloDataset(
        yaml_path=ds.yaml_path, yaml_sha256=ds.yaml_sha256, root=ds.root, split=yolo.split, names=ds.names,
        split_images=len(yolo.order) + len(yolo.skipped), labels_sha256=yolo.labels_sha256,
        bad_label_files=tuple(f"{i.where()}: {i.problem}" for i in yolo.skipped),
        duplicate_label_rows=yolo.duplicate_rows,
    )  # fmt: skip


@dataclass(frozen=True)
class ImageDetections:
    """One image's scored detections and what it cost; shards on Ray workers return lists of these."""

    image_id: int
    detections: list[dict[str, Any]]
    dropped: int  # detections of model classes the dataset does not have
    run_s: float  # session.run
    nms_s: float


def infer_images(
    session: Any,
    input_name: str,
    items: Sequence[tuple[int, Path]],
    imgsz: int,
    dtype: Any,
    cfg: EvalConfig,
    category_ids: Sequence[int | None],
    contract: ContractCheck,
    nms: NmsSettings | None,
) -> Iterator[ImageDetections]:
    """Run the model on ``items`` in their order, one :class:`ImageDetections` per image."""
    for prepared in prefetch_images(items, imgsz, dtype, workers=cfg.workers):
        t0 = time.perf_counter()
        out = session.run(None, {input_name: prepared.tensor})[0]
        run_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        rows = image_rows(out[0], contract, nms or NmsSettings())
        nms_s = time.perf_counter() - t1
        found = detections_for_image(rows, prepared, cfg.conf, cfg.max_det, category_ids)
        dropped = min(int((rows[:, 4] > cfg.conf).sum()), cfg.max_det) - len(found)
        yield ImageDetections(prepared.image_id, found, dropped, run_s, nms_s)


def _collect(
    images: Iterable[ImageDetections], total: int, matcher: IncrementalCocoEval, progress: ProgressFn | None
) -> tuple[list[dict[str, Any]], int, list[float], float]:
    """Detections in image order (the order ``images`` come in), matched as they arrive."""
    detections: list[dict[str, Any]] = []
    run_times: list[float] = []
    nms_s = 0.0
    dropped = 0
    for done, image in enumerate(images, 1):
        run_times.append(image.run_s)
        nms_s += image.nms_s
        dropped += image.dropped
        detections.extend(image.detections)
        matcher.add(image.image_id, image.detections)
        if progress is not None:
            progress(done, total)
    return detections, dropped, run_times, nms_s
