"""``yqt pipeline``: from a checkpoint to a report, in one run folder, resumable.

The steps: export the baseline; quantize each mode (a 4-bit mode once per ``--target-bits`` value,
after one sensitivity sweep that all of them read); smoke each model; evaluate each model on one
image set; bench; compare; report. Each is the library stage the single command runs, recorded in
``run.json`` as usual, plus a *fingerprint*: the sha256 of the step's full config and the hashes of
what it reads (weights, calibration images, the ONNX file, annotations, the evaluations compared);
a quantize step's also holds the package versions and torch's thread count, which GPTQ's integers
depend on.

A rerun keeps a step whose latest record finished with the same fingerprint and whose files are
still byte for byte as recorded, and runs the rest; so a changed option reruns exactly what depends
on it. A step still recorded as running from a process that is gone was killed: it reruns.

One failing step fails only the steps that need its output. Without COCO data the pipeline still does
what needs none (export, the weight-only modes, smoke) and says, per skipped step, what to pass.
Only this module and the stages it calls import torch, and only for a step that runs, so a rerun
that reuses everything takes seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from yqt.errors import YqtError, error_line
from yqt.records import (
    CompareConfig,
    EvalConfig,
    ExportConfig,
    PipelineConfig,
    PipelineResult,
    PipelineStep,
    QuantizeConfig,
    SmokeConfig,
    StepStatus,
    to_jsonable,
)
from yqt.runs import (
    Run,
    atomic_write_json,
    now_iso,
    package_versions,
    process_alive,
    sha256_file,
    step_tags,
    torch_threads,
)

log = logging.getLogger(__name__)

PIPELINE_FILE = "pipeline.json"
BASELINE = "baseline"


# ------------------------------------------------------------------------------------------ events


@dataclass
class PipelineEvents:
    """What a display hears: a step starts, reports progress in phases, ends. All optional."""

    started: Callable[[str, int, int], None] = lambda name, index, total: None
    progress: Callable[[str, int, int], None] = lambda phase, done, total: None
    finished: Callable[[PipelineStep], None] = lambda step: None


# ------------------------------------------------------------------------------------------ inputs


def validate_pipeline_config(cfg: PipelineConfig) -> PipelineConfig:
    """Refuse bad input before anything runs; return the config with its paths made absolute, so a
    rerun from another folder has the same fingerprints."""
    from yqt.models import resolve_weights
    from yqt.quant.modes import get_mode

    if not cfg.modes:
        raise YqtError("--modes is empty", "pass --modes w8a16,w8a8 (any of w8a16, w8a8, w4a16, w4a8)")
    modes = tuple(get_mode(m).name for m in cfg.modes)
    duplicates = sorted({m for m in modes if modes.count(m) > 1})
    if duplicates:
        raise YqtError(f"--modes names {', '.join(duplicates)} twice", "name each mode once")
    if cfg.max_images is not None and cfg.image_ids_list is not None:
        raise YqtError("--max-images and --image-ids-list both given", "pass one of them")
    if cfg.max_images is not None and cfg.max_images < 1:
        raise YqtError(f"--max-images must be at least 1, got {cfg.max_images}", "pass --max-images N with N >= 1")
    if cfg.image_ids_list is not None and not Path(cfg.image_ids_list).is_file():
        raise YqtError(f"image id list not found: {cfg.image_ids_list}", "pass --image-ids-list FILE, one id per line")
    if cfg.calib_dir is not None and not Path(cfg.calib_dir).is_dir():
        raise YqtError(f"--calib-dir not found: {cfg.calib_dir}", "pass a folder of real images, e.g. <coco>/train2017")
    if cfg.calib_images is not None:
        from yqt.quant.calibrate import check_count

        check_count(cfg.calib_images)
    if cfg.bootstrap < 0:
        raise YqtError(f"--bootstrap must be >= 0, got {cfg.bootstrap}", "use --bootstrap 1000 (0 disables CIs)")
    if cfg.target_bits:
        from yqt.quant.mixed import check_target

        for target in cfg.target_bits:
            check_target(target)
        twice = sorted({t for t in cfg.target_bits if cfg.target_bits.count(t) > 1})
        if twice:
            raise YqtError(f"--target-bits names {', '.join(f'{t:g}' for t in twice)} twice", "name each target once")
        if not any(get_mode(m).low_bit for m in modes):
            raise YqtError("--target-bits applies to the 4-bit modes only", "add w4a16 or w4a8 to --modes")
    resolve_weights(cfg.weights)  # a missing checkpoint is refused now, not after the export fails
    if cfg.data is not None:
        from yqt.quant.calibrate import check_data_source
        from yqt.yolo_data import load_dataset_yaml

        check_data_source(cfg.data, cfg.coco_root, "train")
        load_dataset_yaml(cfg.data)  # a YAML that is not a dataset is refused before any step runs

    def absolute(path: Path | None) -> Path | None:
        return None if path is None else Path(path).expanduser().resolve()

    return replace(
        cfg, modes=modes, coco_root=absolute(cfg.coco_root), calib_dir=absolute(cfg.calib_dir),
        image_ids_list=absolute(cfg.image_ids_list), data=absolute(cfg.data),
    )  # fmt: skip


def parse_targets(text: str | None) -> tuple[float, ...]:
    """``--target-bits 4.25,4.5,5`` as numbers, in the order given (checked by the pipeline)."""
    if text is None:
        return ()
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        if not parts:
            raise ValueError
        return tuple(float(p) for p in parts)
    except ValueError:
        raise YqtError(
            f"--target-bits takes numbers separated by commas, got {text!r}", "pass e.g. --target-bits 4.25,4.5,5"
        ) from None


def fingerprint(step: str, config: Any, inputs: Mapping[str, Any]) -> str:
    """sha256 of what decides a step's result: its config, its inputs' hashes, and the yqt version."""
    from yqt import __version__

    doc = {"step": step, "config": to_jsonable(config), "inputs": to_jsonable(dict(inputs)), "yqt": __version__}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def weights_digest(weights: str | None) -> str:
    from yqt.models import resolve_weights

    spec = resolve_weights(weights)
    return sha256_file(spec.path) if spec.path is not None else f"config:{spec.source}"


def calibration_digest(files: Sequence[Path], count: int) -> str:
    """The hash of the images calibration will read: the first ``count`` of ``files``, in their order."""
    digest = hashlib.sha256()
    for path in files[:count]:
        digest.update(f"{path.name}:{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def dataset_summary(cfg: PipelineConfig) -> str | None:
    """``data.yaml (/abs/root): calibrated on train (images/train2017), scored on val (images/val2017)``."""
    if cfg.data is None:
        return None
    from yqt.yolo_data import load_dataset_yaml

    ds = load_dataset_yaml(cfg.data)

    def split(name: str) -> str:
        return f"{name} ({', '.join(ds.splits[name])})" if name in ds.splits else f"{name} (absent)"

    calibrated = f"--calib-dir {cfg.calib_dir}" if cfg.calib_dir is not None else split("train")
    return f"{ds.yaml_path.name} ({ds.root}): calibrated on {calibrated}, scored on {split('val')}"


@dataclass(frozen=True)
class DataAvailability:
    """Which data the steps can have, and what to pass for what is missing."""

    coco_root: Path | None
    calib_dir: Path | None
    missing_coco: str | None  # why there is no COCO root, when there is none
    data: Path | None = None  # a dataset YAML: calibration reads its train split, eval its val split
    data_train: bool = False  # whether the YAML has a train split to calibrate on

    def calibration_missing(self) -> str | None:
        if self.calib_dir is not None or self.data_train:
            return None
        if self.data is not None:
            return f"{self.data.name} has no train: split: add one, or pass --calib-dir DIR"
        where = self.missing_coco or "no calibration images"
        return f"{where}: pass --coco-root DIR (calibrates on DIR/train2017), --data FILE.yaml or --calib-dir DIR"

    def calibration_files(self, count: int) -> list[Path]:
        """The image files calibration reads from, in the order it takes them."""
        from yqt.quant.calibrate import folder_images
        from yqt.yolo_data import load_dataset_yaml, split_images

        if self.calib_dir is not None:
            return folder_images(self.calib_dir)[:count]
        assert self.data is not None
        return split_images(load_dataset_yaml(self.data), "train")[:count]

    def eval_missing(self) -> str | None:
        if self.coco_root is not None or self.data is not None:
            return None
        where = self.missing_coco or "no COCO data"
        return f"{where}: pass --coco-root DIR with val2017/ and annotations/instances_val2017.json"


def data_availability(cfg: PipelineConfig) -> DataAvailability:
    from yqt.quant.calibrate import CALIB_SUBDIR

    coco, missing = cfg.coco_root, None
    if coco is None:
        missing = "no --coco-root"
    elif not coco.is_dir():
        coco, missing = None, f"--coco-root {cfg.coco_root} not found"
    calib = cfg.calib_dir
    if calib is None and coco is not None and (coco / CALIB_SUBDIR).is_dir():
        calib = coco / CALIB_SUBDIR
    if cfg.data is not None:
        from yqt.yolo_data import load_dataset_yaml

        has_train = "train" in load_dataset_yaml(cfg.data).splits
        return DataAvailability(coco_root=None, calib_dir=calib, missing_coco=None, data=cfg.data, data_train=has_train)
    return DataAvailability(coco_root=coco, calib_dir=calib, missing_coco=missing)


# ------------------------------------------------------------------------------------------ steps


@dataclass
class _Outcome:
    step: PipelineStep
    record: dict[str, Any] | None = None  # the run.json record whose files the next steps read

    @property
    def usable(self) -> bool:
        return self.step.status in (StepStatus.DONE, StepStatus.REUSED) and self.record is not None

    def artifact(self, run: Run, kind: str) -> Path:
        for art in (self.record or {}).get("artifacts", []):
            if art["kind"] == kind:
                return _artifact_path(run, art)
        raise YqtError(f"step {self.step.name} recorded no {kind} file", "rerun the pipeline")


def _artifact_path(run: Run, art: Mapping[str, Any]) -> Path:
    path = Path(art["path"])
    return path if path.is_absolute() else run.root / path


def _one_line(exc: BaseException) -> str:
    text = error_line(exc.message, exc.hint) if isinstance(exc, YqtError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


class _Executor:
    """Runs or reuses one step at a time, and keeps their outcomes in order."""

    def __init__(self, run: Run, events: PipelineEvents, total: int) -> None:
        self.run = run
        self.events = events
        self.total = total
        self.outcomes: list[_Outcome] = []

    def skip(self, name: str, reason: str) -> _Outcome:
        self.events.started(name, len(self.outcomes) + 1, self.total)
        return self._finish(_Outcome(PipelineStep(name=name, status=StepStatus.SKIPPED, reason=reason)))

    def execute(self, name: str, config: Any, inputs: Mapping[str, Any], action: Callable[[], str | None]) -> _Outcome:
        """Reuse step ``name`` when its fingerprint and files match, else run ``action``; ``action``
        returns a failure reason when the stage finished but judged its result failed."""
        self.events.started(name, len(self.outcomes) + 1, self.total)
        fp = fingerprint(name, config, inputs)
        t0 = time.perf_counter()
        try:
            prior, note = self._reusable(name, fp)
        except YqtError as exc:
            return self._finish(_Outcome(PipelineStep(name=name, status=StepStatus.FAILED, reason=_one_line(exc))))
        if prior is not None:
            step = PipelineStep(
                name=name, status=StepStatus.REUSED, fingerprint=fp, seconds=time.perf_counter() - t0,
                outputs=tuple(a["path"] for a in prior.get("artifacts", [])),
            )  # fmt: skip
            return self._finish(_Outcome(step, prior))
        before = self.run.latest_step(name) if self.run.exists else None
        reason: str | None
        try:
            with step_tags(name, fingerprint=fp):
                reason = action()
        except YqtError as exc:
            reason = _one_line(exc)
        except Exception as exc:  # a bug in one stage must not cost the user the other modes
            log.exception("step %s raised", name)
            reason = _one_line(exc)
        record = self.run.latest_step(name) if self.run.exists else None
        if record is not None and before is not None and record["id"] == before["id"]:
            record = None  # the stage refused its input before its step began
        if reason is None and record is None:
            reason = f"{name} finished without recording a step in {self.run.manifest_path}"
        if reason is not None and record is None:
            self.run.record_failure(name, config, reason)
        status = StepStatus.FAILED if reason is not None else StepStatus.DONE
        step = PipelineStep(
            name=name, status=status, reason=reason, fingerprint=fp, seconds=time.perf_counter() - t0,
            outputs=tuple(a["path"] for a in (record or {}).get("artifacts", [])), note=note,
        )  # fmt: skip
        return self._finish(_Outcome(step, record if reason is None else None))

    def _reusable(self, name: str, fp: str) -> tuple[dict[str, Any] | None, str | None]:
        """The finished record to keep, or why the step reruns (``None`` when it simply never ran)."""
        record = self.run.latest_step(name) if self.run.exists else None
        if record is None:
            return None, None
        if record.get("status") == "running":
            pid, host = record.get("pid"), record.get("host")
            if host == socket.gethostname() and isinstance(pid, int) and pid != os.getpid() and process_alive(pid):
                raise YqtError(
                    f"step {name} is running now in process {pid} of this run",
                    "wait for it to finish (or stop it), then rerun",
                )
            who = f"process {pid}" if pid is not None else "a process"
            return None, f"rerun: the last {name} was left running by {who}, which is gone (killed)"
        if record.get("status") != "ok":
            return None, None
        if record.get("fingerprint") != fp:
            return None, "rerun: its config or inputs changed" if record.get("fingerprint") else None
        for art in record.get("artifacts", []):
            path = _artifact_path(self.run, art)
            if not path.is_file() or path.stat().st_size != art["size_bytes"] or sha256_file(path) != art["sha256"]:
                return None, f"rerun: {art['path']} is missing or changed"
        return record, None

    def _finish(self, outcome: _Outcome) -> _Outcome:
        self.outcomes.append(outcome)
        self.events.finished(outcome.step)
        return outcome


# ------------------------------------------------------------------------------------------ the pipeline


@dataclass
class _Model:
    label: str  # "baseline" or the mode
    made_by: _Outcome


@dataclass
class _Plan:
    cfg: PipelineConfig
    data: DataAvailability
    weights_sha: str
    models: list[_Model] = field(default_factory=list)


@dataclass(frozen=True)
class Variant:
    """One quantized model of the pipeline: a mode, and for a 4-bit mode in a sweep, one target."""

    mode: str
    target_bits: float | None = None

    @property
    def label(self) -> str:
        """``w8a8``, or ``w4a16-4.5bit`` in a ``--target-bits`` sweep: the quantize step is ``quantize-<label>``."""
        return self.mode if self.target_bits is None else f"{self.mode}-{self.target_bits:g}bit"


def variants(cfg: PipelineConfig) -> tuple[Variant, ...]:
    """Each mode once, except that a 4-bit mode gives one model per ``--target-bits`` value."""
    from yqt.quant.modes import get_mode

    out: list[Variant] = []
    for mode in cfg.modes:
        low_bit = get_mode(mode).low_bit
        out += [Variant(mode, t) for t in cfg.target_bits] if low_bit and cfg.target_bits else [Variant(mode)]
    return tuple(out)


def sweeps_sensitivity(cfg: PipelineConfig) -> bool:
    """A ``--target-bits`` sweep measures the layer ranking once, in a step of its own, for all its models."""
    return any(v.target_bits is not None for v in variants(cfg))


def step_count(cfg: PipelineConfig) -> int:
    """export + the sensitivity sweep of a --target-bits sweep + a quantize per variant + smoke and eval
    per model + bench + compare + report."""
    quantized = len(variants(cfg))
    return 1 + int(sweeps_sensitivity(cfg)) + quantized + 2 * (1 + quantized) + 3


def run_pipeline(
    cfg: PipelineConfig, run: Run | None = None, events: PipelineEvents | None = None, cluster: Any = None
) -> PipelineResult:
    """Run (or resume) the whole pipeline in ``run``; see the module docstring.

    ``cluster`` (a :class:`yqt.ray_backend.Cluster`) runs the same steps as Ray tasks, each as soon
    as the steps it reads have finished; the outcomes, and what is reused, are the serial run's.
    """
    t0 = time.perf_counter()
    cfg = validate_pipeline_config(cfg)
    run = run if run is not None else Run.open()
    events = events or PipelineEvents()
    plan = _Plan(cfg=cfg, data=data_availability(cfg), weights_sha=weights_digest(cfg.weights))
    ex = _Executor(run, events, step_count(cfg))

    if cluster is not None:
        ex.outcomes = cluster.pipeline_steps(plan, run, events)
        compare, report = ex.outcomes[-2], ex.outcomes[-1]
    else:
        baseline = _export(ex, plan)
        plan.models.append(_Model(BASELINE, baseline))
        ranking = _sensitivity(ex, plan) if sweeps_sensitivity(cfg) else None
        for variant in variants(cfg):
            plan.models.append(_Model(variant.label, _quantize(ex, plan, variant.label, ranking)))
        for model in plan.models:
            _smoke(ex, plan, model)
        evals = [_eval(ex, plan, model) for model in plan.models]
        bench = _bench(ex, plan, evals)
        compare = _compare(ex, plan, evals, bench)
        report = _report(ex, plan, compare)

    steps = tuple(o.step for o in ex.outcomes)
    result = PipelineResult(
        run_id=run.run_id, run_root=run.root.resolve(), config=cfg, steps=steps,
        passed=not any(s.status is StepStatus.FAILED for s in steps), seconds=time.perf_counter() - t0,
        compare=_compare_document(run, compare), report=_report_html(run, report), created=now_iso(),
        versions=package_versions(), data=dataset_summary(cfg),
    )  # fmt: skip
    if run.exists:
        atomic_write_json(run.root / PIPELINE_FILE, result)
    return result


def _export(ex: _Executor, plan: _Plan) -> _Outcome:
    cfg = plan.cfg
    export_cfg = ExportConfig(weights=cfg.weights, imgsz=cfg.imgsz, device=cfg.device)

    def action() -> str | None:
        from yqt.export import export_baseline

        export_baseline(export_cfg, ex.run)
        return None

    return ex.execute("export", export_cfg, {"weights": plan.weights_sha}, action)


SWEEP_BITS = 4  # the probe precision of the sweep's ranking: every 4-bit mode reads the same one


def _sensitivity(ex: _Executor, plan: _Plan) -> _Outcome:
    """The layer ranking every ``--target-bits`` model reads, measured once (quantize would measure it
    again for each target) on the first images of the calibration set, as quantize itself does."""
    from yqt.records import SensitivityConfig
    from yqt.sensitivity import probe_tag

    cfg, name = plan.cfg, f"sensitivity-{probe_tag(SWEEP_BITS, act=False)}"
    missing = plan.data.calibration_missing()
    if missing:
        return ex.skip(name, f"--target-bits needs calibration images; {missing}")
    scfg = SensitivityConfig(
        weights=cfg.weights, imgsz=cfg.imgsz, bits=SWEEP_BITS, calib_dir=plan.data.calib_dir,
        calib_images=QuantizeConfig.sensitivity_images, data=plan.data.data if plan.data.calib_dir is None else None,
    )  # fmt: skip
    files = plan.data.calibration_files(scfg.calib_images)
    inputs = {"weights": plan.weights_sha, "calibration": calibration_digest(files, scfg.calib_images),
              "software": {"versions": package_versions(), "torch_threads": torch_threads()}}  # fmt: skip

    def action() -> str | None:
        from yqt.sensitivity import sensitivity

        sensitivity(scfg, ex.run, lambda done, total: ex.events.progress("sensitivity (layers)", done, total))
        return None

    return ex.execute(name, scfg, inputs, action)


def _quantize(ex: _Executor, plan: _Plan, label: str, ranking: _Outcome | None = None) -> _Outcome:
    """Quantize one variant; a ``--target-bits`` one reads the sweep's ``ranking``."""
    from yqt.quant.modes import get_mode

    cfg, name = plan.cfg, f"quantize-{label}"
    variant = next(v for v in variants(cfg) if v.label == label)
    mode, target = variant.mode, variant.target_bits
    low_bit = get_mode(mode).low_bit
    needs_images = get_mode(mode).needs_calibration(gptq=True) or target is not None
    missing = plan.data.calibration_missing() if needs_images else None
    if missing:
        return ex.skip(name, f"--mode {mode} needs calibration images; {missing}")
    sweep = None
    if target is not None:
        if ranking is None:  # variants() and sweeps_sensitivity() agree: every target has a ranking step
            raise ValueError(f"{name}: a --target-bits model needs the sensitivity step's outcome")
        if not ranking.usable:
            return ex.skip(name, f"needs the layer ranking, but {ranking.step.name} {ranking.step.status.value}")
        sweep = ranking.artifact(ex.run, "sensitivity")
    qcfg = QuantizeConfig(
        mode=mode, weights=cfg.weights, imgsz=cfg.imgsz, device=cfg.device, providers=cfg.providers,
        calib_dir=plan.data.calib_dir if needs_images else None, calib_images=cfg.calib_images,
        target_bits=target, sensitivity=sweep, data=plan.data.data if needs_images else None,
    )  # fmt: skip
    # The packages decide every mode's file; torch's thread count decides GPTQ's integers (float sums),
    # so it decides reuse where GPTQ runs: the 4-bit modes.
    software: dict[str, Any] = {"versions": package_versions()}
    if low_bit:
        software["torch_threads"] = torch_threads()
    inputs: dict[str, Any] = {"weights": plan.weights_sha, "software": software}
    if needs_images:
        from yqt.quant.calibrate import resolve_count

        count = resolve_count(cfg.calib_images, get_mode(mode), qcfg.gptq)
        inputs["calibration"] = calibration_digest(plan.data.calibration_files(count), count)
    if sweep is not None:
        inputs["sensitivity"] = sha256_file(sweep)

    def action() -> str | None:
        from yqt.quantize import quantize

        result = quantize(qcfg, ex.run, ex.events.progress)
        return None if result.passed else "; ".join(result.failures) or "its gate failed"

    return ex.execute(name, qcfg, inputs, action)


def _model_onnx(ex: _Executor, model: _Model) -> Path | None:
    return model.made_by.artifact(ex.run, "onnx") if model.made_by.usable else None


def _unusable(model: _Model) -> str:
    made = model.made_by.step
    return f"needs the {model.label} model, but {made.name} {made.status.value}"


def _smoke(ex: _Executor, plan: _Plan, model: _Model) -> _Outcome:
    onnx = _model_onnx(ex, model)
    if onnx is None:
        return ex.skip(f"smoke-{model.label}", _unusable(model))
    scfg = SmokeConfig(onnx=onnx, providers=plan.cfg.providers)

    def action() -> str | None:
        from yqt.runtime import smoke

        result = smoke(scfg, ex.run)
        return None if result.passed else result.failure

    return ex.execute(f"smoke-{onnx.stem}", scfg, {"onnx": sha256_file(onnx)}, action)


def _eval(ex: _Executor, plan: _Plan, model: _Model) -> _Outcome:
    from yqt.data import labelled_images

    onnx = _model_onnx(ex, model)
    if onnx is None:
        return ex.skip(f"eval-{model.label}", _unusable(model))
    missing = plan.data.eval_missing()
    if missing:
        return ex.skip(f"eval-{onnx.stem}", missing)
    cfg = plan.cfg
    ecfg = EvalConfig(
        onnx=onnx, coco_root=plan.data.coco_root, max_images=cfg.max_images, image_ids_list=cfg.image_ids_list,
        providers=cfg.providers, data=plan.data.data,
    )  # fmt: skip
    inputs: dict[str, Any] = {"onnx": sha256_file(onnx)}
    try:  # the ground truth by content: a relabelled dataset is scored again
        inputs["annotations"] = labelled_images(plan.data.coco_root, data=plan.data.data).annotations_sha256
    except YqtError:
        inputs["annotations"] = None  # the eval itself says what is wrong
    if cfg.image_ids_list is not None:
        inputs["image_ids_list"] = sha256_file(cfg.image_ids_list)

    def action() -> str | None:
        from yqt.evaluate import evaluate

        evaluate(ecfg, ex.run, lambda done, total: ex.events.progress("scoring images", done, total))
        return None

    return ex.execute(f"eval-{onnx.stem}", ecfg, inputs, action)


# The pipeline's bench: every evaluated model on ORT, side by side, so compare and the report show
# latencies measured together rather than each eval's own (taken whenever that eval ran).
PIPELINE_BENCH = {"rounds": 10, "runs_per_round": 3, "warmup": 3}


def _bench(ex: _Executor, plan: _Plan, evals: Sequence[_Outcome]) -> _Outcome:
    from yqt.records import BenchConfig

    found = [_model_onnx(ex, m) for m, e in zip(plan.models, evals, strict=True) if e.usable]
    models = [m for m in found if m is not None]
    if len(models) < 2:
        return ex.skip("bench", "needs the evaluation of at least two models; fewer finished")
    bcfg = BenchConfig(models=tuple(models), providers=plan.cfg.providers, **PIPELINE_BENCH)
    inputs = {str(ex.run.relative(m)): sha256_file(m) for m in models}

    def action() -> str | None:
        from yqt.bench import bench

        bench(bcfg, ex.run, lambda done, total: ex.events.progress("bench rounds", done, total))
        return None

    return ex.execute("bench", bcfg, inputs, action)


def _compare(ex: _Executor, plan: _Plan, evals: Sequence[_Outcome], bench: _Outcome | None = None) -> _Outcome:
    baseline = evals[0]
    if not baseline.usable:
        return ex.skip("compare", f"needs the baseline's evaluation, which was {baseline.step.status.value}")
    usable = [e for e in evals if e.usable]
    if len(usable) < 2:
        return ex.skip("compare", "needs the evaluation of at least one quantized model; none finished")
    metrics = [e.artifact(ex.run, "metrics") for e in usable]
    cfg = plan.cfg
    ccfg = CompareConfig(
        inputs=tuple(str(p) for p in metrics), bootstrap=cfg.bootstrap, seed=cfg.seed, max_drop_pt=cfg.max_drop_pt
    )
    inputs = {str(ex.run.relative(p)): sha256_file(p) for p in metrics}
    if bench is not None and bench.usable:  # its latencies are in the comparison: a new bench, a new compare
        inputs["bench"] = sha256_file(bench.artifact(ex.run, "bench"))

    def action() -> str | None:
        from yqt.compare import compare

        compare(ccfg)  # recorded in the baseline's run, which is this one
        return None

    return ex.execute("compare", ccfg, inputs, action)


def _report(ex: _Executor, plan: _Plan, compare: _Outcome) -> _Outcome:
    if not compare.usable:
        return ex.skip("report", f"needs the comparison, which was {compare.step.status.value}")
    from yqt.records import ReportConfig

    compare_json = compare.artifact(ex.run, "compare-result")
    rcfg = ReportConfig(run=ex.run.root.resolve(), max_drop_pt=plan.cfg.max_drop_pt, bootstrap=plan.cfg.bootstrap,
                        seed=plan.cfg.seed, compare=compare_json.resolve())  # fmt: skip
    # The report shows failed and skipped steps too, so their outcomes are part of its input.
    # Done and reused are the same outcome here, or a rerun would redo the report every time.
    states = [(o.step.name, "ok" if o.usable else o.step.status.value, o.step.reason) for o in ex.outcomes]
    inputs = {"compare": sha256_file(compare_json), "steps": states}

    def action() -> str | None:
        from yqt.report import write_report

        write_report(rcfg)
        return None

    return ex.execute("report", rcfg, inputs, action)


def _compare_document(run: Run, compare: _Outcome | None) -> dict[str, Any] | None:
    if compare is None or not compare.usable:
        return None
    return json.loads(compare.artifact(run, "compare-result").read_text(encoding="utf-8"))


def _report_html(run: Run, report: _Outcome | None) -> Path | None:
    if report is None or not report.usable:
        return None
    for art in report.record.get("artifacts", []) if report.record else []:
        if art["path"].endswith("index.html"):
            return _artifact_path(run, art).resolve()
    return None
