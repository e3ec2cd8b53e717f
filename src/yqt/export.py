"""Float baseline ONNX export, and the export device choice shared with quantized exports.

The device choice: ``auto`` tries CUDA FP16 first and falls back to CPU FP32 when CUDA is missing,
the export raises, or the exported file does not reproduce PyTorch. Every candidate and what
happened to it is kept in a :class:`DeviceChoice`, shown as a table and written to the manifest.
A file is published under ``onnx/`` only after it has been verified.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yqt import __version__
from yqt.data import default_smoke_image, letterbox, read_image
from yqt.errors import YqtError
from yqt.models import LoadedDetector, load_detector
from yqt.records import (
    ColumnCheck,
    DeviceAttempt,
    DeviceChoice,
    ExportConfig,
    ExportDevice,
    ExportResult,
    ExportVerification,
)
from yqt.runs import (
    Run,
    atomic_path,
    atomic_write_json,
    captured_output,
    file_artifact,
    maybe_step,
    record_artifact,
)

log = logging.getLogger(__name__)

INPUT_NAME = "images"
OUTPUT_NAME = "output0"
CONFIDENT_SCORE = 0.25
TOP_ROWS = 10  # rows compared when none reaches CONFIDENT_SCORE (a random-init model), as parity does


@dataclass(frozen=True)
class Tolerance:
    """Largest tolerated |ORT - PyTorch| on the compared rows, per column; the class must be equal."""

    box_px: float  # letterboxed pixels
    score: float


# fp32, measured on bus.jpg for yolov10n's confident rows (both heads): boxes 1.5e-4 px, scores 1.8e-6.
# Float error grows with depth and weight scale: a random-init yolov10m at w4a16 differed by 0.16 px
# (benchmarks/quantize_scale.py), so boxes get 0.25 px, still half of the smallest step a shifted box
# would show. fp16 (not measured here) has a step of 0.5 px at 512-1024 px and of 2^-11 at scores
# 0.5-1: the tolerance is 2 steps of box and 20 of score.
TOLERANCE = {"fp32": Tolerance(box_px=0.25, score=1e-3), "fp16": Tolerance(box_px=1.0, score=1e-2)}


@dataclass(frozen=True)
class Candidate:
    device: str
    precision: str
    skip_reason: str | None = None

    @property
    def providers(self) -> tuple[str, ...]:
        """The ORT provider that checks a file exported here: the same device, no silent fallback."""
        return ("cuda",) if self.device == "cuda" else ("cpu",)

    @property
    def input_dtype(self) -> Any:
        return np.float16 if self.precision == "fp16" else np.float32


ExportFn = Callable[[Any, Any, Path], None]


def _cuda_for_torch() -> tuple[bool, str]:
    import torch

    if not torch.cuda.is_available():
        return False, "torch.cuda.is_available() is False"
    return True, f"CUDA device {torch.cuda.get_device_name(0)}"


def plan_devices(device: ExportDevice, half: bool | None) -> list[Candidate]:
    """The ordered candidates for ``--device``/``--half``. Explicit requests that cannot run are errors."""
    device = ExportDevice(device)
    if device is ExportDevice.CPU:
        if half:
            raise YqtError("FP16 export needs CUDA", "drop --half, or use --device cuda or --device auto")
        return [Candidate("cpu", "fp32")]
    cuda_ok, cuda_reason = _cuda_for_torch()
    cuda_precision = "fp32" if half is False else "fp16"
    if device is ExportDevice.CUDA:
        if not cuda_ok:
            raise YqtError(f"--device cuda but CUDA is not usable: {cuda_reason}", "use --device auto or --device cpu")
        return [Candidate("cuda", cuda_precision)]
    # auto
    if half and not cuda_ok:
        raise YqtError(f"--half needs CUDA, which is not usable: {cuda_reason}", "drop --half to export FP32 on CPU")
    cuda = Candidate("cuda", cuda_precision, None if cuda_ok else cuda_reason)
    cpu = Candidate("cpu", "fp32")
    return [cuda] if half else [cuda, cpu]


def short_reason(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"{type(exc).__name__}: {text[:200]}"


def torch_onnx_export(module: Any, example: Any, path: Path, opset: int = 17) -> None:
    """TorchScript-path export: one fixed-shape input ``images`` and one output ``output0``."""
    import warnings

    import torch

    with captured_output("torch.onnx.export"), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example,
            str(path),
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            do_constant_folding=True,
            dynamo=False,
        )


def embed_metadata(path: Path, props: dict[str, str]) -> None:
    """Write ``yqt.*`` metadata into the ONNX file, so any later step can trace it to its source."""
    import onnx

    model = onnx.load(str(path))
    existing = {p.key: p for p in model.metadata_props}
    for key, value in props.items():
        if key in existing:
            existing[key].value = value
        else:
            model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def read_metadata(path: Path) -> dict[str, str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def model_metadata(detector: LoadedDetector, mode: str, precision: str) -> dict[str, str]:
    info = detector.info
    return {
        "yqt.version": __version__,
        "yqt.mode": mode,
        "yqt.precision": precision,
        "yqt.weights": info.source,
        "yqt.weights_sha256": info.sha256 or "",
        "yqt.arch": info.arch,
        "yqt.family": info.family,
        "yqt.head": info.head,
        "yqt.pretrained": str(info.pretrained).lower(),
        "yqt.imgsz": str(info.imgsz),
        "yqt.names": json.dumps(list(detector.names)),
    }


def _on_device(module: Any, cand: Candidate) -> Any:
    if cand.device == "cpu" and cand.precision == "fp32":
        return module
    moved = copy.deepcopy(module).to(cand.device)
    return moved.half() if cand.precision == "fp16" else moved


def torch_and_ort_outputs(module: Any, session: Any, image: Path, imgsz: int, cand: Candidate) -> tuple[Any, Any]:
    """The same letterboxed real image through PyTorch and through ORT: ``(reference, onnx)`` float32."""
    import torch

    x, _ = letterbox(read_image(image), imgsz, cand.input_dtype)
    with torch.no_grad():
        ref = module(torch.from_numpy(x).to(cand.device)).float().cpu().numpy()
    got = np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0], dtype=np.float32)
    return ref, got


def rows_and_scores(out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One image's output as rows (one per detection or anchor) and each row's best score.

    End-to-end ``[N,6]`` rows carry their score in column 4; a raw ``[4+nc,A]`` output has one
    column per anchor, scored by its best class.
    """
    from yqt.models import END2END, check_output_shape

    if check_output_shape((1, *out.shape)).kind == END2END:
        return out, out[:, 4]
    return out.T, out[4:].max(0)


def _row_classes(rows: np.ndarray, end2end: bool) -> np.ndarray:
    return np.rint(rows[:, 5]) if end2end else rows[:, 4:].argmax(1)


def compare_outputs(ref: np.ndarray, got: np.ndarray, precision: str) -> ColumnCheck:
    """One image's PyTorch and ORT outputs (same shape, either head), compared column by column on the
    reference's confident rows, or on its TOP_ROWS best when none is confident."""
    from yqt.models import END2END, check_output_shape

    end2end = check_output_shape((1, *ref.shape)).kind == END2END
    ref_rows, ref_scores = rows_and_scores(ref)
    got_rows, _ = rows_and_scores(got)
    confident = np.flatnonzero(ref_scores >= CONFIDENT_SCORE)
    chosen = confident if len(confident) else np.argsort(-ref_scores, kind="stable")[:TOP_ROWS]
    diff = np.abs(got_rows[chosen] - ref_rows[chosen])
    score_cols = slice(4, 5) if end2end else slice(4, None)
    box = float(diff[:, :4].max()) if len(chosen) else 0.0
    score = float(diff[:, score_cols].max()) if len(chosen) else 0.0
    classes = int((_row_classes(ref_rows[chosen], end2end) != _row_classes(got_rows[chosen], end2end)).sum())
    tol = TOLERANCE[precision]
    return ColumnCheck(
        rows="confident" if len(confident) else f"top {TOP_ROWS} (none at score >= {CONFIDENT_SCORE})",
        confident_rows=len(confident),
        compared_rows=len(chosen),
        box_diff_px=box,
        score_diff=score,
        class_mismatches=classes,
        box_tolerance_px=tol.box_px,
        score_tolerance=tol.score,
        passed=box <= tol.box_px and score <= tol.score and classes == 0,
    )


def verify_against_torch(module: Any, onnx_path: Path, image: Path, imgsz: int, cand: Candidate) -> ExportVerification:
    """Compare PyTorch and ORT outputs on one real image.

    The low-score tail may reorder between backends (the top-300 of an end-to-end head), so the
    pass/fail bound is on the confident rows, or anchors (score >= 0.25), or the best TOP_ROWS when
    none is confident, per column (:func:`compare_outputs`); the full-tensor difference is recorded too.
    """
    from yqt.runtime import open_session

    session, report = open_session(onnx_path, cand.providers)
    ref, got = torch_and_ort_outputs(module, session, image, imgsz, cand)
    if got.shape != ref.shape:
        raise RuntimeError(f"ONNX output shape {got.shape} differs from PyTorch {ref.shape}")
    columns = compare_outputs(ref[0], got[0], cand.precision)
    return ExportVerification(
        image=image,
        provider=report.used[0],
        max_abs_diff=float(np.abs(got - ref).max()),
        columns=columns,
        passed=columns.passed,
    )


@dataclass(frozen=True)
class ExportOutcome:
    tmp_path: Path
    choice: DeviceChoice
    verification: ExportVerification
    module: Any  # the module as exported: on the chosen device, in the chosen precision
    candidate: Candidate


def export_with_fallback(
    module: Any,
    imgsz: int,
    candidates: list[Candidate],
    export_fn: ExportFn,
    verify_image: Path,
    workdir: Path,
    requested: tuple[ExportDevice, bool | None],
) -> ExportOutcome:
    """Try each candidate in order; the first that exports and verifies is chosen."""
    import torch

    attempts: list[DeviceAttempt] = []
    for cand in candidates:
        if cand.skip_reason:
            attempts.append(DeviceAttempt(cand.device, cand.precision, "skipped", cand.skip_reason))
            continue
        path = workdir / f"{cand.device}-{cand.precision}.onnx"
        try:
            moved = _on_device(module, cand)
            dtype = torch.float16 if cand.precision == "fp16" else torch.float32
            example = torch.zeros(1, 3, imgsz, imgsz, device=cand.device, dtype=dtype)
            export_fn(moved, example, path)
            verification = verify_against_torch(moved, path, verify_image, imgsz, cand)
            if not verification.passed:
                c = verification.columns
                raise RuntimeError(f"ONNX output differs from PyTorch on {c.rows} rows: {'; '.join(c.problems())}")
        except Exception as exc:  # YqtError included: ORT refusing a CUDA-fp16 file is what the fallback is for
            log.warning("export on %s %s failed: %s", cand.device, cand.precision, exc)
            attempts.append(DeviceAttempt(cand.device, cand.precision, "failed", short_reason(exc)))
            continue
        attempts.append(DeviceAttempt(cand.device, cand.precision, "chosen", "exported and verified"))
        choice = DeviceChoice(
            requested_device=ExportDevice(requested[0]).value,
            requested_half=requested[1],
            attempts=tuple(attempts),
            device=cand.device,
            precision=cand.precision,
        )
        return ExportOutcome(tmp_path=path, choice=choice, verification=verification, module=moved, candidate=cand)
    summary = "; ".join(f"{a.device} {a.precision}: {a.reason}" for a in attempts)
    raise YqtError(f"export failed on every device ({summary})", "see the step log in the run's logs/ folder")


def publish(tmp: Path, target: Path) -> Path:
    """Copy a verified temp file into place atomically."""
    with atomic_path(target) as staged:
        shutil.copyfile(tmp, staged)
    return target


def export_baseline(cfg: ExportConfig, run: Run | None = None) -> ExportResult:
    """Export the float baseline ONNX (``<stem>-baseline-<precision>.onnx``) and verify it."""
    candidates = plan_devices(cfg.device, cfg.half)
    image = cfg.verify_image or default_smoke_image()
    read_image(image)  # fail now, not after a minute of export work
    detector = load_detector(cfg.weights, cfg.imgsz, cfg.end2end)
    with tempfile.TemporaryDirectory(prefix="yqt-export-") as work, maybe_step(run, "export", cfg) as step:
        outcome = export_with_fallback(
            detector.module,
            cfg.imgsz,
            candidates,
            lambda m, x, p: torch_onnx_export(m, x, p, cfg.opset),
            image,
            Path(work),
            (cfg.device, cfg.half),
        )
        embed_metadata(outcome.tmp_path, model_metadata(detector, "baseline", outcome.choice.precision))
        # Read only now: the step may have moved a new default-id run to a free id.
        out_dir = run.onnx_dir if run is not None else Path.cwd()
        target = publish(outcome.tmp_path, out_dir / f"{detector.stem}-baseline-{outcome.choice.precision}.onnx")
        artifact = file_artifact(target)
        result = ExportResult(
            model=detector.info,
            onnx=artifact,
            device_choice=outcome.choice,
            verification=outcome.verification,
            contract=detector.contract,
        )
        record_artifact(step, artifact, "onnx")
        if run is not None:  # the device choice and verification, not only the terminal table
            saved = atomic_write_json(run.root / "export" / f"{target.stem}.json", result)
            record_artifact(step, saved, "export-result")
        if step is not None:
            step.summary.update(
                device=outcome.choice.device,
                precision=outcome.choice.precision,
                device_attempts=[
                    f"{a.device} {a.precision}: {a.outcome} ({a.reason})" for a in outcome.choice.attempts
                ],
                max_abs_diff=outcome.verification.max_abs_diff,
            )
        log.info("exported %s (%s %s)", target, outcome.choice.device, outcome.choice.precision)
        return result
