"""Brevitas post-training quantization of a YOLOv10 detector, exported as gated, verified QCDQ ONNX.

Steps: replace each ``nn.Conv2d``/``nn.Linear`` with its Brevitas quant layer (module-level; FX
tracing fails on Ultralytics models), export QCDQ on the TorchScript path with the shared device
choice, run the validation gate, write a simplified ``-opt`` copy and gate it too, check detection
parity between the Brevitas model and ORT on real images, and only then publish the files.
"""

from __future__ import annotations

import fnmatch
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from yqt.data import default_smoke_image, read_image
from yqt.errors import YqtError
from yqt.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    Candidate,
    captured_output,
    embed_metadata,
    export_with_fallback,
    model_metadata,
    plan_devices,
    publish,
    torch_and_ort_outputs,
)
from yqt.graph import inspect_graph
from yqt.models import check_output_shape, load_detector
from yqt.modes import QuantMode, get_mode
from yqt.records import (
    GateCheck,
    GateReport,
    LayerDecision,
    ParityReport,
    QuantizeConfig,
    QuantizeResult,
    SizeReport,
    SmokeConfig,
)
from yqt.runs import Run, file_artifact, maybe_step, record_artifact

log = logging.getLogger(__name__)

DFL_SUFFIX = "dfl.conv"
PARITY_SCORE = 0.25
PARITY_IOU = 0.99
PARITY_REQUIRED = 0.99
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


# ------------------------------------------------------------------------------------ layer swap


def _shape(m: Any) -> str:
    import torch.nn as nn

    if isinstance(m, nn.Conv2d):
        return f"{m.in_channels}→{m.out_channels} k{m.kernel_size[0]} g{m.groups}"
    return f"{m.in_features}→{m.out_features}"


def _quant_layer(m: Any, mode: QuantMode, qnn: Any) -> Any:
    """A Brevitas layer with ``m``'s geometry and weights: weight quantizer only, no input/output/bias quant."""
    import torch.nn as nn

    common = {
        "weight_quant": mode.weight_quant(),
        "input_quant": None,
        "output_quant": None,
        "bias_quant": None,
        "return_quant_tensor": False,
    }
    if isinstance(m, nn.Conv2d):
        q = qnn.QuantConv2d(
            m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation,
            groups=m.groups, bias=m.bias is not None, padding_mode=m.padding_mode, **common,
        )  # fmt: skip
    else:
        q = qnn.QuantLinear(m.in_features, m.out_features, bias=m.bias is not None, **common)
    q.load_state_dict(m.state_dict())
    return q.eval()


def _exclusion_reason(name: str, patterns: tuple[str, ...], quantize_dfl: bool, hits: dict[str, int]) -> str | None:
    reason = None
    if name.endswith(DFL_SUFFIX) and not quantize_dfl:
        reason = "DFL conv: fixed 0..15 arange weights, quantizing them costs box accuracy"
    for pattern in patterns:
        if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, f"{pattern}.*"):
            hits[pattern] += 1
            reason = reason or f"--exclude {pattern}"
    return reason


def quantize_module(
    module: Any, mode: QuantMode, exclude: tuple[str, ...] = (), quantize_dfl: bool = False
) -> tuple[Any, tuple[LayerDecision, ...], tuple[str, ...]]:
    """Swap every Conv2d/Linear (in place) unless excluded. Returns the module, decisions and warnings."""
    import torch.nn as nn

    with captured_output("import brevitas"):
        import brevitas.nn as qnn

    hits = {p: 0 for p in exclude}
    decisions: list[LayerDecision] = []
    targets = [(n, m) for n, m in module.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]
    for name, m in targets:
        reason = _exclusion_reason(name, exclude, quantize_dfl, hits)
        kind = type(m).__name__
        if reason:
            decisions.append(LayerDecision(name, kind, _shape(m), quantized=False, reason=reason))
            continue
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, _quant_layer(m, mode, qnn))
        decisions.append(
            LayerDecision(name, kind, _shape(m), quantized=True, reason=f"{mode.name}: {mode.description}")
        )
    notes = tuple(
        f"--exclude {p!r} matched no layer (names look like model.23.cv2.0.0.conv)" for p, n in hits.items() if not n
    )
    if not any(d.quantized for d in decisions):
        raise YqtError(
            f"nothing left to quantize: all {len(decisions)} conv/linear layers are excluded",
            "narrow the --exclude patterns",
        )
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval(), tuple(decisions), notes


# ------------------------------------------------------------------------------------ export


def brevitas_qcdq_export(module: Any, example: Any, path: Path, opset: int = 17) -> None:
    """QCDQ on the TorchScript path: int8 initializers → Clip → DequantizeLinear → Conv.

    ``dynamo=False`` matters: Brevitas' dynamo path writes fp32 weights plus QuantizeLinear nodes.
    """
    import torch

    with captured_output("import brevitas"):
        from brevitas.export import export_onnx_qcdq

    with captured_output("brevitas export_onnx_qcdq"), warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        export_onnx_qcdq(
            module,
            args=example,
            export_path=str(path),
            dynamo=False,
            keep_initializers_as_inputs=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
        )


def simplify(src: Path, dst: Path) -> None:
    """onnxslim copy of ``src``; DequantizeLinear nodes must survive (the gate checks)."""
    import onnx
    import onnxslim

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slimmed = onnxslim.slim(onnx.load(str(src)))
    onnx.save(slimmed, str(dst))


# ------------------------------------------------------------------------------------ gate


def run_gate(
    path: Path, mode: QuantMode, expected_quantized: int, expected_float: int, label: str | None = None
) -> GateReport:
    """The checks a quantized export must pass before it counts."""
    import onnx

    census = inspect_graph(path)
    s = census.summary
    lo, hi = mode.weight_range
    quantized = [layer for layer in census.layers if layer.weight_quantized]
    bad = [
        layer.name
        for layer in quantized
        if layer.weight_dtype != "int8"
        or layer.weight_stored_float
        or layer.granularity != "per_channel"
        or layer.axis != 0
        or layer.weight_bits != mode.weight_bits
    ]
    outputs = onnx.load(str(path), load_external_data=False).graph.output
    dims = tuple(d.dim_value or d.dim_param for d in outputs[0].type.tensor_type.shape.dim) if len(outputs) == 1 else ()
    contract = check_output_shape(dims)
    int8_detail = (
        f"all {len(quantized)} quantized weights are int8 initializers, per-channel on axis 0, "
        f"range [{lo},{hi}] ({mode.weight_bits} bits)"
        if not bad
        else f"{len(bad)} layer(s) are not int8 per-channel axis 0 at {mode.weight_bits} bits, e.g. {bad[0]}"
    )
    q_detail = f"{s.quantize_linear} QuantizeLinear nodes" + (" (weight-only mode needs 0)" if mode.weight_only else "")
    checks = [
        GateCheck("dq_count", s.dequantize_linear == expected_quantized,
                  f"{s.dequantize_linear} DequantizeLinear for {expected_quantized} quantized layers"),
        GateCheck("quantized_layers", s.quantized_layers == expected_quantized and s.float_layers == expected_float,
                  f"{s.quantized_layers} quantized / {s.float_layers} float weight layers "
                  f"(expected {expected_quantized} / {expected_float})"),
        GateCheck("int8_per_channel_axis0", not bad and bool(quantized), int8_detail),
        GateCheck("no_quantize_linear", s.quantize_linear == 0 or not mode.weight_only, q_detail),
        GateCheck("output_contract", contract.ok, contract.detail),
    ]  # fmt: skip
    return GateReport(target=label or path.name, checks=tuple(checks))


# ------------------------------------------------------------------------------------ parity


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` against every box in ``b`` (xyxy)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match_detections(ref: np.ndarray, got: np.ndarray, score: float, iou: float) -> tuple[int, int]:
    """Greedy one-to-one matching of confident rows, same class and IoU ≥ ``iou``. Returns (matched, total)."""
    ref = ref[ref[:, 4] >= score]
    got = got[got[:, 4] >= score * 0.9]  # a reference box just above the bar may sit just below it here
    if not len(ref) or not len(got):
        return 0, len(ref)
    ious = _iou(ref[:, :4], got[:, :4])
    ious[ref[:, 5][:, None] != got[:, 5][None, :]] = 0.0
    used: set[int] = set()
    matched = 0
    for i in np.argsort(-ref[:, 4]):
        for j in np.argsort(-ious[i]):
            if ious[i, j] < iou:
                break
            if j not in used:
                used.add(int(j))
                matched += 1
                break
    return matched, len(ref)


def parity_images(folder: Path | None, limit: int) -> list[Path]:
    if folder is None:
        bus = default_smoke_image()
        return [bus, bus.with_name("zidane.jpg")]
    if not Path(folder).is_dir():
        raise YqtError(f"--parity-images folder not found: {folder}", "pass a folder of real images, e.g. val2017/")
    images = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)[:limit]
    if not images:
        raise YqtError(f"no images in --parity-images {folder}", "pass a folder of .jpg/.png images")
    return images


def detection_parity(module: Any, onnx_path: Path, images: list[Path], imgsz: int, cand: Candidate) -> ParityReport:
    from yqt.runtime import open_session

    session, report = open_session(onnx_path, cand.providers)
    matched = total = ort_total = 0
    for image in images:
        ref, got = torch_and_ort_outputs(module, session, image, imgsz, cand)
        m, n = match_detections(ref[0], got[0], PARITY_SCORE, PARITY_IOU)
        matched, total = matched + m, total + n
        ort_total += int((got[0, :, 4] >= PARITY_SCORE).sum())
    if total:
        fraction, passed, note = matched / total, matched / total >= PARITY_REQUIRED, ""
    else:
        # Nothing confident to match (random-init weights): the backends must then agree on that too.
        fraction, passed = 0.0, ort_total == 0
        note = f"no reference detections at score >= {PARITY_SCORE}; ORT has {ort_total}"
    return ParityReport(
        images=len(images),
        provider=report.used[0],
        score_threshold=PARITY_SCORE,
        iou_threshold=PARITY_IOU,
        reference_detections=total,
        ort_detections=ort_total,
        matched=matched,
        matched_fraction=fraction,
        required_fraction=PARITY_REQUIRED,
        passed=passed,
        note=note,
    )


# ------------------------------------------------------------------------------------ the command


def _size_report(qcdq: Path, opt: Path, run: Run | None, stem: str, parameters: int) -> SizeReport:
    baseline = run.onnx_dir / f"{stem}-baseline-fp32.onnx" if run is not None else None
    if baseline is not None and baseline.is_file():
        float_bytes, source = baseline.stat().st_size, f"{baseline.name} in this run"
    else:
        float_bytes, source = parameters * 4, "estimate: fp32 parameters × 4 bytes (no baseline export in this run)"
    qcdq_bytes = qcdq.stat().st_size
    return SizeReport(
        qcdq_bytes=qcdq_bytes,
        opt_bytes=opt.stat().st_size,
        float_bytes=float_bytes,
        float_source=source,
        ratio=float_bytes / qcdq_bytes,
    )


def quantize(cfg: QuantizeConfig, run: Run | None = None) -> QuantizeResult:
    """Quantize, export, gate, simplify, check parity, publish and smoke. See the module docstring."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    mode = get_mode(cfg.mode)
    candidates = plan_devices(cfg.device, cfg.half)
    images = parity_images(cfg.parity_images, cfg.parity_max_images)
    verify_image = default_smoke_image()
    read_image(verify_image)
    detector = load_detector(cfg.weights, cfg.imgsz)
    qmodule, decisions, notes = quantize_module(detector.module, mode, cfg.exclude, cfg.quantize_dfl)
    timings["load_and_quantize_s"] = time.perf_counter() - t0
    n_quant = sum(d.quantized for d in decisions)
    n_float = len(decisions) - n_quant
    name = f"{detector.stem}-{mode.name}-qcdq-ptq"
    out_dir = run.onnx_dir if run is not None else Path.cwd()
    failures: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="yqt-quantize-") as work,
        maybe_step(run, f"quantize-{mode.name}", cfg) as step,
    ):
        t = time.perf_counter()
        outcome = export_with_fallback(
            qmodule, cfg.imgsz, candidates, lambda m, x, p: brevitas_qcdq_export(m, x, p, cfg.opset),
            verify_image, Path(work), (cfg.device, cfg.half),
        )  # fmt: skip
        embed_metadata(outcome.tmp_path, model_metadata(detector, mode.name, outcome.choice.precision))
        timings["export_s"] = time.perf_counter() - t
        t = time.perf_counter()
        gate = run_gate(outcome.tmp_path, mode, n_quant, n_float, f"{name}.onnx")
        opt_tmp = Path(work) / "opt.onnx"
        simplify(outcome.tmp_path, opt_tmp)
        gate_opt = run_gate(opt_tmp, mode, n_quant, n_float, f"{name}-opt.onnx")
        timings["gate_s"] = time.perf_counter() - t
        failures += [f"gate ({gate.target}): {c.name}: {c.detail}" for c in gate.checks if not c.ok]
        failures += [f"gate ({gate_opt.target}): {c.name}: {c.detail}" for c in gate_opt.checks if not c.ok]
        parity = None
        if not failures:
            t = time.perf_counter()
            parity = detection_parity(outcome.module, outcome.tmp_path, images, cfg.imgsz, outcome.candidate)
            timings["parity_s"] = time.perf_counter() - t
            if not parity.passed:
                failures.append(
                    f"parity: {parity.matched}/{parity.reference_detections} detections matched "
                    f"({parity.matched_fraction:.1%} < {parity.required_fraction:.0%} at IoU ≥ {parity.iou_threshold})"
                    + (f"; {parity.note}" if parity.note else "")
                )
        onnx_art = opt_art = size = None
        if not failures:  # publish only what passed: a rejected file never looks valid
            target = publish(outcome.tmp_path, out_dir / f"{name}.onnx")
            opt_target = publish(opt_tmp, out_dir / f"{name}-opt.onnx")
            onnx_art, opt_art = file_artifact(target), file_artifact(opt_target)
            size = _size_report(target, opt_target, run, detector.stem, detector.info.parameters)
            record_artifact(step, onnx_art, "onnx")
            record_artifact(step, opt_art, "onnx-opt")
        if step is not None:
            step.summary.update(
                passed=not failures, failures=failures, quantized_layers=n_quant, float_layers=n_float,
                device=outcome.choice.device, precision=outcome.choice.precision,
                gate={c.name: c.ok for c in gate.checks},
                parity=None if parity is None else parity.matched_fraction,
            )  # fmt: skip
    smoke_result = None
    if onnx_art is not None:
        from yqt.runtime import smoke

        t = time.perf_counter()
        smoke_result = smoke(SmokeConfig(onnx=onnx_art.path, providers=cfg.providers, runs=5), run)
        timings["smoke_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    return QuantizeResult(
        mode=mode.name,
        model=detector.info,
        layers=decisions,
        device_choice=outcome.choice,
        verification=outcome.verification,
        gate=gate,
        gate_opt=gate_opt,
        parity=parity,
        onnx=onnx_art,
        onnx_opt=opt_art,
        size=size,
        smoke=smoke_result,
        passed=not failures,
        failures=tuple(failures),
        warnings=notes,
        timings=timings,
    )
