"""Post-training quantization of a YOLO detector, exported as gated, verified ONNX.

One entry point for every mode; the pieces live in :mod:`yqt.quant`:

1. choose the calibration images (``quant.calibrate``) when the mode needs them;
2. swap each Conv2d/Linear for its Brevitas layer at its planned bits (``quant.layers``);
3. for 4-bit weights, frozen-scale GPTQ over the calibration images (``quant.gptq``);
4. export: weight-only modes as Brevitas QCDQ, 4-bit weights repacked as INT4 (``quant.storage``);
   activation modes as the weight-quantized float graph, then INT8 activations placed where ORT
   fuses int8 kernels, with yqt's own integer weights put back (``quant.activations``);
5. gate the file and its simplified ``-opt`` copy (``quant.gate``), check detection parity against
   PyTorch (``quant.parity``), and only then publish and smoke it.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from yqt.data import default_smoke_image, read_image
from yqt.errors import YqtError
from yqt.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    Candidate,
    ExportOutcome,
    embed_metadata,
    export_with_fallback,
    model_metadata,
    plan_devices,
    publish,
    torch_onnx_export,
)
from yqt.models import LoadedDetector, load_detector
from yqt.provenance import calibration_metadata
from yqt.quant import activations, calibrate, gptq, layers, mixed, parity, storage
from yqt.quant.gate import openvino_kernels_check, run_gate
from yqt.quant.modes import QuantMode, get_mode
from yqt.records import (
    CalibrationSet,
    ExportDevice,
    GateReport,
    LayerDecision,
    Layout,
    MixedPrecisionReport,
    QuantizeConfig,
    QuantizeResult,
    SensitivityResult,
    Simplifier,
    SizeReport,
    SmokeConfig,
    StorageReport,
    to_jsonable,
)
from yqt.runs import (
    Run,
    atomic_write_json,
    captured_output,
    file_artifact,
    json_bytes,
    maybe_step,
    package_versions,
    record_artifact,
    sha256_file,
    torch_threads,
)

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]  # (phase, done, total)


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


def _conv_node_names(path: Path) -> dict[str, str]:
    """Module name → Conv node name in an exported file."""
    import onnx

    from yqt.graph import module_path

    graph = onnx.load(str(path), load_external_data=False).graph
    return {module_path(n.name): n.name for n in graph.node if n.op_type in ("Conv", "Gemm")}


def _integer_weights(qmodule: Any, node_names: dict[str, str]) -> dict[str, activations.IntWeights]:
    """yqt's integers, scales and float biases for every quantized layer, keyed by Conv node name."""
    table = {}
    for name, layer in layers.quantized_layers(qmodule).items():
        if name not in node_names:
            raise RuntimeError(f"quantized layer {name} has no Conv node in the exported graph")
        ints, scale, bits = layers.integer_weights(layer)
        bias = layer.bias.detach().float().cpu().numpy() if layer.bias is not None else None
        table[node_names[name]] = activations.IntWeights(ints, scale, bits, bias)
    return table


def _export_weight_only(
    qmodule: Any, cfg: QuantizeConfig, mode: QuantMode, opset: int, work: Path, verify_image: Path
) -> tuple[ExportOutcome, StorageReport]:
    outcome = export_with_fallback(
        qmodule, cfg.imgsz, plan_devices(cfg.device, cfg.half),
        lambda m, x, p: brevitas_qcdq_export(m, x, p, opset), verify_image, work, (cfg.device, cfg.half),
    )  # fmt: skip
    return outcome, storage.store_low_bit(outcome.tmp_path, opset, mode.weight_bits)


def _activation_candidates(cfg: QuantizeConfig) -> list[Candidate]:
    # ORT's quantizer calibrates and rewrites an fp32 graph on the CPU provider.
    if ExportDevice(cfg.device) is ExportDevice.CUDA or cfg.half:
        raise YqtError(
            f"--mode {cfg.mode} quantizes activations with ONNX Runtime on an FP32 CPU export",
            "drop --device cuda / --half (the quantized file still runs on CUDA)",
        )
    return [Candidate("cpu", "fp32")]


def _export_with_activations(
    qmodule: Any,
    cfg: QuantizeConfig,
    mode: QuantMode,
    opset: int,
    work: Path,
    verify_image: Path,
    calib: Any,
    progress: ProgressFn | None,
) -> tuple[ExportOutcome, StorageReport, Any]:
    import numpy as np

    reference = layers.dequantized_copy(qmodule)  # the weight-quantized network, float activations
    outcome = export_with_fallback(
        reference, cfg.imgsz, _activation_candidates(cfg), lambda m, x, p: torch_onnx_export(m, x, p, opset),
        verify_image, work, (cfg.device, cfg.half),
    )  # fmt: skip
    weights = _integer_weights(qmodule, _conv_node_names(outcome.tmp_path))
    arrays = [np.ascontiguousarray(x) for x in calibrate.calibration_arrays(calib, cfg.imgsz)]
    qdq_path = work / "qdq.onnx"
    report = activations.quantize_activations(
        outcome.tmp_path, qdq_path, arrays, weights, Layout(cfg.layout), cfg.calib_percentile,
        None if progress is None else lambda d, t: progress("calibrating activations", d, t),
    )  # fmt: skip
    note = (
        "4-bit weights stored as int8 behind a Clip to ±7: ORT's int8 conv kernels take int8 weights, "
        "so INT4 packing would cost the fused kernels (the file is no smaller than w8a8)"
        if mode.low_bit
        else "8-bit weights: int8 initializers"
    )
    moved = ExportOutcome(qdq_path, outcome.choice, outcome.verification, outcome.module, outcome.candidate)
    return moved, StorageReport(format="int8", opset=opset, note=note), report


# ------------------------------------------------------------------------------------ the command


def _size_report(qcdq: Path, opt: Path, run: Run | None, stem: str, parameters: int) -> SizeReport:
    found = sorted(run.onnx_dir.glob(f"{stem}-baseline-*.onnx")) if run is not None else []
    baseline = next((p for p in found if p.name.endswith("-fp32.onnx")), found[0] if found else None)
    if baseline is not None:
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


def _measures_sensitivity(cfg: QuantizeConfig) -> bool:
    return cfg.target_bits is not None and cfg.sensitivity is None


def _calibration(cfg: QuantizeConfig, mode: QuantMode) -> tuple[Any, tuple[str, ...]]:
    count = calibrate.resolve_count(cfg.calib_images, mode, cfg.gptq)  # even where unused: a 0 is a mistake
    if not (mode.needs_calibration(cfg.gptq) or _measures_sensitivity(cfg)):
        return None, ()
    if cfg.data is not None and cfg.calib_dir is None:
        return calibrate.select_dataset_calibration(cfg.data, cfg.calib_split, count)
    folder = calibrate.resolve_calib_dir(cfg.calib_dir, cfg.coco_root, f"--mode {mode.name}")
    return calibrate.select_calibration(folder, count)


def _validate(cfg: QuantizeConfig, mode: QuantMode, opset: int) -> tuple[str, ...]:
    notes = []
    calibrate.check_data_source(cfg.data, cfg.coco_root, cfg.calib_split)
    storage.require_simplifier(cfg.simplifier)
    if cfg.quantize_dfl and not mode.weight_only:
        raise YqtError(
            f"--quantize-dfl cannot apply to {mode.name}: there the DFL is part of the float post-processing",
            "drop --quantize-dfl, or use it with w8a16 or w4a16",
        )
    if not 90.0 <= cfg.calib_percentile <= 100.0:
        raise YqtError(f"--calib-percentile must be in [90, 100], got {cfg.calib_percentile}", "use 99.999")
    if mode.weight_only and Layout(cfg.layout) is not Layout.ORT:
        notes.append(f"--layout {Layout(cfg.layout).value} has no effect in {mode.name}: activations stay float")
    if mode.low_bit and opset < storage.INT4_OPSET:
        notes.append(
            f"--opset {opset}: 4-bit weights are stored as int8 + Clip, no smaller than 8-bit "
            f"(INT4 initializers need opset {storage.INT4_OPSET})"
        )
    if not mode.low_bit and not cfg.gptq:
        notes.append("--no-gptq has no effect in 8-bit modes (GPTQ runs for 4-bit weights only)")
    notes += _validate_mixed(cfg, mode)
    return tuple(notes)


def _validate_mixed(cfg: QuantizeConfig, mode: QuantMode) -> list[str]:
    if cfg.target_bits is None:
        return [f"--sensitivity {cfg.sensitivity} has no effect without --target-bits"] if cfg.sensitivity else []
    if not mode.low_bit:
        raise YqtError(
            f"--target-bits chooses which layers of a 4-bit mode stay at 8 bits; {mode.name} has no 4-bit layers",
            "use --mode w4a16 or w4a8 with --target-bits",
        )
    mixed.check_target(cfg.target_bits)
    if cfg.sensitivity is not None and not Path(cfg.sensitivity).is_file():
        raise YqtError(f"--sensitivity file not found: {cfg.sensitivity}", "run yqt sensitivity first, or drop it")
    calibrate.check_count(cfg.sensitivity_images)
    return []


def _mixed_precision(
    cfg: QuantizeConfig,
    mode: QuantMode,
    detector: LoadedDetector,
    plan: layers.LayerPlan,
    calib: Any,
    progress: ProgressFn | None,
) -> tuple[layers.LayerPlan, Any, Any]:
    """``--target-bits``: the plan with its 8-bit layers chosen, the report, and the sensitivity
    result when it was measured here (None when read from ``--sensitivity``)."""
    from yqt.quant.ranking import load_ranking, measure
    from yqt.records import SensitivityConfig

    before, _ = layers.plan_layers(detector.module, mode, plan)
    low = [d.name for d in before if d.quantized and d.bits is not None and d.bits < 8]
    measured = None
    if cfg.sensitivity is not None:
        ranking = load_ranking(cfg.sensitivity, detector, low, mode.weight_bits)
        source, digest = Path(cfg.sensitivity).resolve(), sha256_file(Path(cfg.sensitivity))
    else:
        images = calibrate.first_images(calib, cfg.sensitivity_images)
        scfg = SensitivityConfig(
            weights=cfg.weights, imgsz=cfg.imgsz, bits=mode.weight_bits, coco_root=cfg.coco_root,
            calib_dir=cfg.calib_dir, calib_images=len(images.images),
        )  # fmt: skip
        report = None if progress is None else (lambda d, n: progress("sensitivity (layers)", d, n))
        measured = measure(detector, images, scfg, report)
        ranking = {r.name: to_jsonable(r) for r in measured.layers}
        source, digest = None, hashlib.sha256(json_bytes(measured)).hexdigest()
    promoted, mixed_report = mixed.choose_mixed_precision(before, ranking, cfg.target_bits, source, digest)
    return replace(plan, promoted=promoted), mixed_report, measured


def _openvino_ir(onnx_path: Path, xml: Path, expected: int) -> tuple[Path | None, GateReport | None, str | None]:
    """``--layout openvino``: the gated ONNX converted to an OpenVINO IR (weights kept in their own
    precision, not fp16), gated by the int8 convolutions OpenVINO compiles from the IR itself: one per
    quantized layer, as for the ONNX. Without OpenVINO: no IR, and a note saying how to get one."""
    try:
        import openvino as ov
    except ImportError:
        return None, None, "no OpenVINO IR written: install yqt[openvino] to get one beside the ONNX"
    with captured_output("OpenVINO convert"):
        ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    return xml, GateReport(f"{xml.name} (OpenVINO IR)", tuple(openvino_kernels_check(xml, expected))), None


def _metadata(detector: LoadedDetector, mode: QuantMode, precision: str, mean_bits: float, extra: dict) -> dict:
    meta = model_metadata(detector, mode.name, precision)
    meta["yqt.mean_weight_bits"] = f"{mean_bits:.4f}"
    meta["yqt.activations"] = "float" if mode.weight_only else f"int{mode.act_bits}"
    meta.update(extra)
    return meta


@dataclass
class PreparedModel:
    """The quantized PyTorch model before export: what ``quantize`` exports, and what a benchmark
    scores to check that the export is faithful."""

    module: Any  # Brevitas fake-quant model, weights final (after GPTQ when it ran)
    detector: LoadedDetector
    mode: QuantMode
    opset: int
    decisions: tuple[LayerDecision, ...]
    calibration: CalibrationSet | None
    notes: tuple[str, ...]
    timings: dict[str, float]
    gptq_layers: int = 0
    mixed_precision: MixedPrecisionReport | None = None
    sensitivity: SensitivityResult | None = None  # measured for --target-bits (not read from a file)


def prepare(
    cfg: QuantizeConfig, progress: ProgressFn | None = None, solve_gptq: Callable[..., int] | None = None
) -> PreparedModel:
    """Validate, pick the calibration images, swap the layers and run GPTQ: everything before export.

    ``solve_gptq`` replaces the GPTQ solver, block-sequential :func:`yqt.quant.gptq.apply_gptq`: the
    benchmark passes ``gptq.brevitas_gptq_loop`` (Brevitas' ``gptq_mode``) to time the previous method
    on the same images (benchmarks/gptq_speed.py). Not a user option."""
    t0 = time.perf_counter()
    mode = get_mode(cfg.mode)
    opset = cfg.opset or mode.default_opset
    notes = list(_validate(cfg, mode, opset))
    if not mode.weight_only:
        _activation_candidates(cfg)
    else:
        plan_devices(cfg.device, cfg.half)  # fail on an impossible device request before loading anything
    parity.parity_images(cfg.parity_images, cfg.parity_max_images)
    read_image(default_smoke_image())
    calib, calib_warnings = _calibration(cfg, mode)
    notes += calib_warnings
    detector = load_detector(cfg.weights, cfg.imgsz)
    plan = layers.LayerPlan(exclude=cfg.exclude, keep_8bit=cfg.keep_8bit, quantize_dfl=cfg.quantize_dfl)
    timings = {}
    mixed_report = measured = None
    if cfg.target_bits is not None:
        t = time.perf_counter()
        plan, mixed_report, measured = _mixed_precision(cfg, mode, detector, plan, calib, progress)
        timings["mixed_precision_s"] = time.perf_counter() - t
    qmodule, decisions, swap_notes = layers.quantize_module(detector.module, mode, plan)
    notes += swap_notes
    timings["load_and_quantize_s"] = time.perf_counter() - t0 - timings.get("mixed_precision_s", 0.0)
    solved = 0
    if mode.low_bit and cfg.gptq:
        t = time.perf_counter()
        batches = calibrate.torch_batches(calib, cfg.imgsz)
        solved = (solve_gptq or gptq.apply_gptq)(qmodule, batches, cfg.act_order, progress)
        timings["gptq_s"] = time.perf_counter() - t
    return PreparedModel(
        qmodule, detector, mode, opset, decisions, calib, tuple(notes), timings, solved, mixed_report, measured
    )


def quantize(
    cfg: QuantizeConfig,
    run: Run | None = None,
    progress: ProgressFn | None = None,
    prepared: PreparedModel | None = None,
) -> QuantizeResult:
    """Quantize, export, gate, simplify, check parity, publish and smoke. See the module docstring.

    ``prepared`` (from :func:`prepare` with the same ``cfg``) skips the work before export.
    """
    prepared = prepared or prepare(cfg, progress)
    t0 = time.perf_counter()
    mode, opset, qmodule, detector = prepared.mode, prepared.opset, prepared.module, prepared.detector
    decisions, calib, notes = prepared.decisions, prepared.calibration, list(prepared.notes)
    mean_bits = layers.mean_weight_bits(decisions)
    timings = dict(prepared.timings)
    images = parity.parity_images(cfg.parity_images, cfg.parity_max_images)
    verify_image = default_smoke_image()
    # A --target-bits model names its target, so the models of a sweep sit side by side in one run.
    target_tag = "" if cfg.target_bits is None else f"-{cfg.target_bits:g}bit"
    name = f"{detector.stem}-{mode.name}{target_tag}-qcdq-ptq"
    failures: list[str] = []
    gate_opt: GateReport | None = None
    act_report = None
    with (
        tempfile.TemporaryDirectory(prefix="yqt-quantize-") as work,
        maybe_step(run, f"quantize-{mode.name}{target_tag}", cfg) as step,
    ):
        t = time.perf_counter()
        if mode.weight_only:
            outcome, store = _export_weight_only(qmodule, cfg, mode, opset, Path(work), verify_image)
        else:
            outcome, store, act_report = _export_with_activations(
                qmodule, cfg, mode, opset, Path(work), verify_image, calib, progress
            )
            timings["calibration_s"] = act_report.calibration_s
        extra = {"yqt.weight_storage": store.format}
        if act_report is not None:
            extra["yqt.layout"] = act_report.layout
        if calib is not None:
            extra.update(calibration_metadata(calib))
        embed_metadata(outcome.tmp_path, _metadata(detector, mode, outcome.choice.precision, mean_bits, extra))
        timings["export_s"] = time.perf_counter() - t - timings.get("calibration_s", 0.0)
        t = time.perf_counter()
        gate = run_gate(outcome.tmp_path, mode, decisions, store, act_report, f"{name}.onnx")
        opt_tmp = Path(work) / "opt.onnx"
        storage.simplify(outcome.tmp_path, opt_tmp, cfg.simplifier)
        gate_opt = run_gate(
            opt_tmp, mode, decisions, store, act_report, f"{name}-opt.onnx ({Simplifier(cfg.simplifier).value})"
        )
        timings["gate_s"] = time.perf_counter() - t
        failures += [
            f"gate ({g.target}): {c.name}: {c.detail}" for g in (gate, gate_opt) for c in g.checks if not c.passed
        ]
        parity_report = None
        if not failures:
            t = time.perf_counter()
            parity_report = parity.detection_parity(
                outcome.module, outcome.tmp_path, images, cfg.imgsz, outcome.candidate, parity.tolerance_for(mode)
            )
            timings["parity_s"] = time.perf_counter() - t
            if not parity_report.passed:
                p = parity_report
                failures.append(f"parity: {p.counts()} at IoU ≥ {p.iou_threshold}" + (f"; {p.note}" if p.note else ""))
        ir_tmp, gate_ir = None, None
        if not failures and act_report is not None and act_report.layout == Layout.OPENVINO.value:
            expected = sum(d.quantized for d in decisions)
            ir_tmp, gate_ir, ir_note = _openvino_ir(outcome.tmp_path, Path(work) / f"{name}.xml", expected)
            notes += [ir_note] if ir_note else []
            if gate_ir is not None:
                failures += [f"gate ({gate_ir.target}): {c.name}: {c.detail}" for c in gate_ir.checks if not c.passed]
        onnx_art = opt_art = ir_art = ir_bin_art = size = None
        if not failures:  # publish only what passed: a rejected file never looks valid
            # Read only now: the step may have moved a new default-id run to a free id.
            out_dir = run.onnx_dir if run is not None else Path.cwd()
            target = publish(outcome.tmp_path, out_dir / f"{name}.onnx")
            opt_target = publish(opt_tmp, out_dir / f"{name}-opt.onnx")
            onnx_art, opt_art = file_artifact(target), file_artifact(opt_target)
            size = _size_report(target, opt_target, run, detector.stem, detector.info.parameters)
            record_artifact(step, onnx_art, "onnx")
            record_artifact(step, opt_art, "onnx-opt")
            if ir_tmp is not None:  # the .bin first: an .xml never sits beside a missing or stale .bin
                ir_bin_art = file_artifact(publish(ir_tmp.with_suffix(".bin"), out_dir / f"{name}.bin"))
                ir_art = file_artifact(publish(ir_tmp, out_dir / f"{name}.xml"))
                record_artifact(step, ir_art, "openvino-ir")
                record_artifact(step, ir_bin_art, "openvino-ir-bin")
        mixed_report = prepared.mixed_precision
        if run is not None and prepared.sensitivity is not None:
            # Written as hashed in prepare(), so the report's sha256 is this file's.
            ranking = atomic_write_json(run.root / "sensitivity" / f"{name}.json", prepared.sensitivity)
            record_artifact(step, ranking, "sensitivity")
            mixed_report = replace(mixed_report, sensitivity=ranking)
        result = QuantizeResult(
            mode=mode.name, model=detector.info, layers=decisions, device_choice=outcome.choice,
            verification=outcome.verification, gate=gate, gate_opt=gate_opt, parity=parity_report, onnx=onnx_art,
            onnx_opt=opt_art, size=size, smoke=None, passed=not failures, failures=tuple(failures),
            warnings=tuple(notes), timings=timings, mean_weight_bits=mean_bits,
            calibration=calib, activations=act_report, storage=store, gptq_layers=prepared.gptq_layers,
            mixed_precision=mixed_report, config=cfg, versions=package_versions(), torch_threads=torch_threads(),
            openvino_ir=ir_art, openvino_ir_bin=ir_bin_art, gate_ir=gate_ir,
        )  # fmt: skip
        if run is not None:  # saved whether it passed or not: a failed gate is evidence too
            record_artifact(step, atomic_write_json(run.root / "quantize" / f"{name}.json", result), "quantize-result")
        if step is not None:
            if failures:
                step.fail("; ".join(failures))
            step.summary.update(
                passed=not failures, failures=failures, quantized_layers=sum(d.quantized for d in decisions),
                float_layers=sum(not d.quantized for d in decisions),
                mean_weight_bits=mean_bits, device=outcome.choice.device,
                precision=outcome.choice.precision, gate={c.name: c.passed for c in gate.checks},
                parity=None if parity_report is None else parity_report.matched_fraction,
                calibration_sha256=None if calib is None else calib.sha256,
                int8_convs_fused=None if act_report is None else act_report.int8_convs_fused,
            )  # fmt: skip
    smoke_result = None
    if onnx_art is not None:
        from yqt.runtime import smoke

        t = time.perf_counter()
        smoke_result = smoke(SmokeConfig(onnx=onnx_art.path, providers=cfg.providers, runs=5), run)
        timings["smoke_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0 + sum(prepared.timings.values())
    result = replace(result, smoke=smoke_result, timings=timings)
    if smoke_result is not None and not smoke_result.passed:  # e.g. no detections where a trained model finds some
        failure = f"smoke: {smoke_result.failure or 'failed'}"
        result = replace(result, passed=False, failures=(*result.failures, failure))
        if run is not None:  # the result file, written before smoke ran, must not say passed
            atomic_write_json(run.root / "quantize" / f"{name}.json", result)
    return result
