"""ONNX Runtime sessions with provider selection that is never silent.

ORT quietly drops an execution provider it cannot load and logs a wall of red text while doing
so. Here CUDA is probed first (driver, device, provider library); if it cannot load, it is not
requested at all and the reason becomes one line in the provider report. After the session is
built, ``session.get_providers()`` is what gets reported as used.
"""

from __future__ import annotations

import ctypes
import functools
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from yqt.errors import YqtError
from yqt.filetypes import require_onnx_file
from yqt.records import (
    ContractCheck,
    Detection,
    LatencyStats,
    NmsSettings,
    ProviderReport,
    SmokeConfig,
    SmokeResult,
)

log = logging.getLogger(__name__)

PROVIDER_ALIASES = {
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
_GPU_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}
_ORT_ERROR_ONLY = 3  # ORT severity: 0 verbose .. 3 error, 4 fatal


def parse_providers(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"cuda,cpu"`` → ``("cuda", "cpu")``, rejecting unknown names."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = tuple(p.strip().lower() for p in items if p.strip())
    unknown = [n for n in names if n not in PROVIDER_ALIASES]
    if unknown or not names:
        raise YqtError(
            f"unknown execution provider(s): {', '.join(unknown) or '(none given)'}",
            f"use a comma list of {', '.join(sorted(PROVIDER_ALIASES))}, e.g. --providers cuda,cpu",
        )
    return names


def _ort() -> Any:
    import onnxruntime

    onnxruntime.set_default_logger_severity(_ORT_ERROR_ONLY)
    return onnxruntime


@functools.lru_cache(maxsize=1)
def cuda_status() -> tuple[bool, str]:
    """Can ORT's CUDA provider actually load here? Returns (ok, reason)."""
    ort = _ort()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return (
            False,
            f"this onnxruntime build ({ort.__version__}) has no CUDA provider; pip install onnxruntime-gpu",
        )
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False, "no NVIDIA driver (libcuda.so.1 not found)"
    count = ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return False, "NVIDIA driver present but no usable CUDA device"
    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()  # CUDA/cuDNN from the nvidia-* wheels (torch brings them), where installed
        except Exception as exc:  # best effort: the load test below is what decides
            log.info("onnxruntime.preload_dlls failed: %s", exc)
    lib = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"
    try:
        ctypes.CDLL(str(lib))
    except OSError as exc:
        return False, f"ORT CUDA provider cannot load: {str(exc).split(':')[-1].strip() or exc}"
    return True, f"CUDA available ({count.value} device(s))"


def resolve_providers(names: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """Map aliases to ORT names and drop GPU providers that cannot load. Returns requested, attempted, notes."""
    requested = tuple(PROVIDER_ALIASES[n] for n in names)
    attempted: list[str] = []
    notes: list[str] = []
    for ep in requested:
        if ep in _GPU_PROVIDERS:
            ok, reason = cuda_status()
            if not ok:
                notes.append(f"{ep} not attempted: {reason}")
                continue
        if ep not in attempted:
            attempted.append(ep)
    if not attempted:
        # Every requested provider was unavailable; CPU is always there and the notes say why.
        attempted.append("CPUExecutionProvider")
        notes.append("falling back to CPUExecutionProvider")
    return requested, tuple(attempted), tuple(notes)


def _ort_reason(exc: BaseException) -> str:
    """The readable tail of an ORT load error, without its C++ source location and signature."""
    text = " ".join(str(exc).split())
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(r"/onnxruntime_src/\S+:\d+ [\w:]+\(.*?\) ", "", text)
    text = re.sub(r"^Load model from \S+ failed:", "", text)
    return text[:240] or type(exc).__name__


# A node's op_type as serialized: NodeProto field 4 (tag 0x22), the length, the name.
_DEQUANTIZE_OP = b"\x22\x10DequantizeLinear"
_QUANTIZE_OP = b"\x22\x0eQuantizeLinear"


def is_weight_only_qdq(onnx_path: Path) -> bool:
    """DequantizeLinear nodes but no QuantizeLinear: quantized weights, float activations.

    Read from the file's bytes, without the onnx package: importing it (through ml_dtypes) cost an
    eval more than its ORT session (benchmarks/eval_overhead.py).
    """
    try:
        data = Path(onnx_path).read_bytes()
    except OSError:
        return False  # ORT's own load below gives the one-line error
    return _DEQUANTIZE_OP in data and _QUANTIZE_OP not in data


def open_session(
    onnx_path: Path,
    providers: Sequence[str] = ("cuda", "cpu"),
    *,
    spin: bool = True,
    threads: int | None = None,
    optimized_model: Path | None = None,
) -> tuple[Any, ProviderReport]:
    """Build an ORT session and report which providers actually ran.

    ``spin=False`` stops ORT's idle intra-op threads from busy-waiting between runs, which leaves
    the cores to work overlapped with inference (decoding, COCO matching in eval).

    A weight-only model (w8a16, w4a16) on the CPU provider gets ``session.disable_quant_qdq=1``:
    ORT then folds each weight's DequantizeLinear into a float initializer at load, and the model
    runs at float speed instead of dequantizing every weight on every run.

    ``threads`` caps ORT's intra-op threads (a Ray task gets the CPUs it declared, not the machine).
    """
    require_onnx_file(onnx_path)
    ort = _ort()
    requested, attempted, notes = resolve_providers(providers)
    options = ort.SessionOptions()
    options.log_severity_level = _ORT_ERROR_ONLY
    applied: list[str] = []
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        applied.append("session.intra_op.allow_spinning=0")
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        applied.append(f"intra_op_num_threads={int(threads)}")
    if optimized_model is not None:  # the graph ORT runs, after its fusions: what kernel_census reads
        options.optimized_model_filepath = str(optimized_model)
    if attempted[0] == "CPUExecutionProvider" and is_weight_only_qdq(onnx_path):
        options.add_session_config_entry("session.disable_quant_qdq", "1")
        applied.append("session.disable_quant_qdq=1 (weight-only model: weights dequantized once, at load)")
    notes_list = list(notes)
    try:
        session = ort.InferenceSession(str(onnx_path), sess_options=options, providers=list(attempted))
    except Exception as exc:
        gpu = [ep for ep in attempted if ep in _GPU_PROVIDERS]
        if not gpu or "CPUExecutionProvider" not in attempted:
            raise YqtError(
                f"ONNX Runtime cannot load {onnx_path}: {_ort_reason(exc)}",
                "if it was cut short, export it again (yqt export / yqt quantize)",
            ) from None
        # The probe said CUDA loads, but this model does not build on it (an op, a dtype, memory).
        notes_list.append(f"{', '.join(gpu)} failed to build the session ({_ort_reason(exc)}); retried on CPU")
        session, on_cpu = open_session(onnx_path, ("cpu",), spin=spin, threads=threads, optimized_model=optimized_model)
        report = ProviderReport(requested=requested, attempted=attempted, used=on_cpu.used,
                                notes=tuple(notes_list), session_options=on_cpu.session_options)  # fmt: skip
        return session, report
    used = tuple(session.get_providers())
    dropped = [ep for ep in attempted if ep not in used]
    if dropped:
        notes_list.append(f"ONNX Runtime silently dropped {', '.join(dropped)}")
    report = ProviderReport(
        requested=requested, attempted=attempted, used=used, notes=tuple(notes_list), session_options=tuple(applied)
    )
    log.info("providers requested=%s used=%s notes=%s", requested, used, notes_list)
    return session, report


def session_contract(session: Any) -> ContractCheck:
    from yqt.models import contract_of_outputs

    return contract_of_outputs([tuple(o.shape) for o in session.get_outputs()])


def require_contract(session: Any, onnx_path: Path) -> ContractCheck:
    contract = session_contract(session)
    if not contract.passed:
        raise YqtError(
            f"{onnx_path}: {contract.detail}",
            "export a YOLO detector with yqt export, or with Ultralytics' YOLO(...).export(format='onnx')",
        )
    return contract


def image_rows(out: np.ndarray, contract: ContractCheck, nms: NmsSettings) -> np.ndarray:
    """One image's model output as ``[K,6]`` rows x1,y1,x2,y2,score,class (letterboxed pixels), best
    first, whatever the contract: a raw output is decoded and NMS'd here, so nothing after cares."""
    from yqt.models import RAW

    out = np.asarray(out, dtype=np.float32)
    if contract.kind == RAW:
        from yqt.nms import nms_rows

        return nms_rows(out, nms)
    return out


def input_spec(session: Any) -> tuple[str, int, Any]:
    """The model input's name, square size and numpy dtype."""
    inp = session.get_inputs()[0]
    shape = inp.shape
    size = shape[-1] if isinstance(shape[-1], int) else 640
    dtype = np.float16 if "float16" in inp.type else np.float32
    return inp.name, int(size), dtype


# ONNX metadata holds strings only; these yqt keys are decoded back to what they are for JSON documents.
_METADATA_DECODERS: dict[str, Callable[[str], Any]] = {
    "yqt.names": json.loads,
    "yqt.calibration": json.loads,
    "yqt.imgsz": int,
    "yqt.mean_weight_bits": float,
    "yqt.pretrained": lambda v: v == "true",
}


def decoded_metadata(meta: Mapping[str, str]) -> dict[str, Any]:
    """The model's metadata with yqt's numbers as numbers and its lists as lists, not JSON in strings."""
    out: dict[str, Any] = {}
    for key, value in meta.items():
        try:
            out[key] = _METADATA_DECODERS[key](value) if key in _METADATA_DECODERS else value
        except ValueError:  # a hand-edited file: keep the text rather than fail an evaluation
            out[key] = value
    return out


def class_names_from_session(session: Any) -> tuple[str, ...]:
    """Class names from the ``yqt.names`` (or Ultralytics ``names``) metadata, if present."""
    import ast
    import json

    from yqt.models import COCO80_NAMES

    meta = session.get_modelmeta().custom_metadata_map
    if "yqt.names" in meta:
        return tuple(json.loads(meta["yqt.names"]))
    if "names" in meta:  # Ultralytics writes a Python dict literal
        try:
            names = ast.literal_eval(meta["names"])
            # Indexed by class id: a gap in the ids must not shift the classes after it.
            found = tuple(str(names.get(i, i)) for i in range(max(names) + 1))
        except (ValueError, SyntaxError, TypeError, KeyError):
            return COCO80_NAMES
        # THU-MIG's YOLOv10 checkpoints, and Ultralytics' exports of them, name the COCO classes '0'..'79'.
        return COCO80_NAMES if found == tuple(str(i) for i in range(len(COCO80_NAMES))) else found
    return COCO80_NAMES


def smoke_expectation(
    cfg: SmokeConfig, default_image: bool, names: Sequence[str], meta: Mapping[str, str]
) -> tuple[int, str]:
    """How many detections at ``cfg.conf`` smoke requires, and why: ``--min-detections`` when given;
    else at least 1 for a trained COCO detector on the default bus.jpg, where finding nothing means a
    broken model; else none, since nothing is known about the user's image or model."""
    from yqt.models import COCO80_NAMES

    if cfg.min_detections is not None:
        return cfg.min_detections, f"--min-detections {cfg.min_detections}"
    random_init = meta.get("yqt.pretrained") == "false"
    if default_image and tuple(names) == COCO80_NAMES and not random_init:
        return 1, "a trained COCO detector finds the people and the bus in the default bus.jpg"
    why = "random-init weights" if random_init else ("not a COCO detector" if default_image else "your own image")
    return 0, f"none ({why}): pass --min-detections N to require N"


def smoke(cfg: SmokeConfig, run: Any = None) -> SmokeResult:
    """One real-image inference: contract, detections, latency and the providers that actually ran."""
    import time

    from yqt.backends import check_threads, open_model, require_model_file, run_name
    from yqt.data import default_smoke_image, letterbox, read_image, unletterbox_xyxy
    from yqt.runs import atomic_write_json, file_artifact, maybe_step, record_artifact

    onnx_path = Path(cfg.onnx)
    require_model_file(onnx_path, cfg.runtime)
    check_threads(cfg.threads)
    if cfg.runs < 1:
        raise YqtError(f"--iterations must be at least 1, got {cfg.runs}", "pass --iterations 10")
    if cfg.min_detections is not None and cfg.min_detections < 0:
        raise YqtError(f"--min-detections must be 0 or more, got {cfg.min_detections}", "pass e.g. --min-detections 1")
    image = Path(cfg.image) if cfg.image else default_smoke_image()
    bgr = read_image(image)
    session, report, runtime_info = open_model(onnx_path, cfg.runtime, cfg.providers, threads=cfg.threads)
    contract = require_contract(session, onnx_path)
    input_name, imgsz, dtype = input_spec(session)
    x, lb = letterbox(bgr, imgsz, dtype)
    name = run_name(onnx_path, cfg.runtime)
    with maybe_step(run, f"smoke-{name}", cfg) as step:
        session.run(None, {input_name: x})  # warm-up: first-run allocation is not latency
        times = []
        for _ in range(cfg.runs):
            t0 = time.perf_counter()
            out = session.run(None, {input_name: x})[0]
            times.append(time.perf_counter() - t0)
        rows = image_rows(out[0], contract, NmsSettings(conf=cfg.conf))
        rows = rows[rows[:, 4] >= cfg.conf]
        names = class_names_from_session(session)
        boxes = unletterbox_xyxy(rows[:, :4], lb) if len(rows) else np.zeros((0, 4))
        top = tuple(
            Detection(
                box_xyxy=tuple(round(float(v), 1) for v in box),  # type: ignore[arg-type]
                score=round(float(r[4]), 4),
                class_id=int(r[5]),
                class_name=names[int(r[5])] if 0 <= int(r[5]) < len(names) else str(int(r[5])),
            )
            for box, r in zip(boxes[:10], rows[:10], strict=True)
        )
        meta = session.get_modelmeta().custom_metadata_map
        expected, why = smoke_expectation(cfg, cfg.image is None, names, meta)
        failures = []
        if cfg.require_cuda and not report.cuda_used:
            reason = "; ".join(report.notes) or f"used {', '.join(report.used)}"
            failures.append(f"--require-cuda: CUDAExecutionProvider did not attach ({reason})")
        if len(rows) < expected:
            failures.append(
                f"{len(rows)} detections at score >= {cfg.conf:g}, expected at least {expected} on {image.name} ({why})"
            )
        failure = "; ".join(failures) or None
        result = SmokeResult(
            onnx=file_artifact(onnx_path),
            image=image,
            imgsz=imgsz,
            providers=report,
            contract=contract,
            conf=cfg.conf,
            num_detections=len(rows),
            top_detections=top,
            latency=LatencyStats.from_seconds(times),
            require_cuda=cfg.require_cuda,
            min_detections=expected,
            expectation=why,
            passed=failure is None,
            failure=failure,
            runtime=runtime_info,
        )
        if run is not None:
            record_artifact(step, atomic_write_json(run.root / "smoke" / f"{name}.json", result), "smoke")
        if step is not None:
            step.summary.update(passed=result.passed, providers_used=report.used, detections=result.num_detections)
        return result
