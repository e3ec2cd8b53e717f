"""The structural checks a quantized export must pass before it is published, per mode.

Everything is read back from the file with the inspect-graph census, so the gate checks what was
written, not what was meant: every planned layer at its planned bits and storage, nothing float
that should not be, activations quantized where the mode says, and (for the ORT layout) the number
of convs ONNX Runtime really fuses into int8 kernels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yqt.graph import LayerCensus, inspect_graph, module_path, output_contract
from yqt.quant.modes import QuantMode
from yqt.records import ActivationReport, GateCheck, GateReport, LayerDecision, StorageReport


def _expected_dtype(bits: int, storage: StorageReport) -> str:
    return "int4" if bits <= 4 and storage.format == "int4" else "int8"


def _layer_problem(layer: LayerCensus | None, decision: LayerDecision, storage: StorageReport) -> str | None:
    if layer is None:
        return "not found in the graph"
    if not decision.quantized:
        return "quantized but planned float" if layer.weight_quantized else None
    if not layer.weight_quantized:
        return "float but planned quantized"
    want = _expected_dtype(decision.bits or 8, storage)
    if layer.weight_stored_float:
        return "fp32 weights stored beside a Q node"
    if layer.weight_bits != decision.bits:
        return f"{layer.weight_bits} bits, planned {decision.bits}"
    if layer.weight_dtype != want:
        return f"stored as {layer.weight_dtype}, planned {want}"
    if layer.granularity != "per_channel" or layer.axis != 0:
        return f"{layer.granularity} axis {layer.axis}, planned per-channel axis 0"
    return None


def run_gate(
    path: Path,
    mode: QuantMode,
    decisions: Sequence[LayerDecision],
    storage: StorageReport,
    activations: ActivationReport | None = None,
    label: str | None = None,
) -> GateReport:
    import onnx

    census = inspect_graph(path)
    s = census.summary
    by_module = {module_path(layer.name): layer for layer in census.layers if layer.has_weight}
    problems = [(d.name, _layer_problem(by_module.get(d.name), d, storage)) for d in decisions]
    problems = [(n, p) for n, p in problems if p]
    planned_q = [d for d in decisions if d.quantized]
    bits_seen = sorted({d.bits for d in planned_q if d.bits})
    layers_detail = (
        f"all {len(planned_q)} quantized layers at their planned bits ({'/'.join(map(str, bits_seen))}), "
        f"per-channel axis 0, {storage.format} storage; {len(decisions) - len(planned_q)} float as planned"
        if not problems
        else f"{len(problems)} layer(s) differ from the plan, e.g. {problems[0][0]}: {problems[0][1]}"
    )
    checks = [GateCheck("layers_as_planned", not problems and bool(planned_q), layers_detail)]
    if mode.weight_only:
        checks += [
            GateCheck("dq_count", s.dequantize_linear == len(planned_q),
                      f"{s.dequantize_linear} DequantizeLinear for {len(planned_q)} quantized layers"),
            GateCheck("no_quantize_linear", s.quantize_linear == 0,
                      f"{s.quantize_linear} QuantizeLinear nodes (weight-only mode needs 0)"),
        ]  # fmt: skip
    else:
        checks.append(_activation_check(census.layers, planned_q))
        if activations is not None:
            checks.append(activation_ranges_check(activations))
        if activations is not None and activations.layout == "openvino":
            checks += openvino_kernels_check(path, len(planned_q))
        if activations is not None and activations.layout == "tensorrt":
            checks.append(activation_zero_points_check(onnx.load(str(path), load_external_data=False)))
        if activations is not None and activations.int8_convs_expected is not None:
            fused, want = activations.int8_convs_fused, activations.int8_convs_expected
            checks.append(
                GateCheck("int8_kernels", fused >= want,
                          f"ORT CPU fuses {fused} convs into int8 kernels (QLinearConv), {want} expected")
            )  # fmt: skip
    contract = output_contract(onnx.load(str(path), load_external_data=False))
    checks.append(GateCheck("output_contract", contract.passed, contract.detail))
    return GateReport(target=label or Path(path).name, checks=tuple(checks))


def _activation_check(layers: Sequence[LayerCensus], planned: Sequence[LayerDecision]) -> GateCheck:
    wanted = {d.name for d in planned}
    convs = [layer for layer in layers if module_path(layer.name) in wanted]
    missing = [module_path(layer.name) for layer in convs if not layer.act_quantized]
    bits = sorted({layer.act_bits for layer in convs if layer.act_bits})
    detail = (
        f"the inputs of all {len(convs)} quantized layers are {'/'.join(map(str, bits))}-bit activations"
        if not missing
        else f"{len(missing)} quantized layer(s) take float activations, e.g. {missing[0]}"
    )
    return GateCheck("activations_quantized", not missing and bool(convs), detail)


def activation_ranges_check(activations: ActivationReport) -> GateCheck:
    """Every activation scale in the file is one of yqt's calibrated ranges, none ORT's own."""
    stray = activations.scales_not_from_calibration
    detail = (
        f"all {activations.scales_checked} activation QuantizeLinear scales come from yqt's calibration"
        if not stray
        else f"{len(stray)} activation scale(s) are not from yqt's calibration, e.g. {stray[0]}"
    )
    return GateCheck("activation_ranges", not stray and activations.scales_checked > 0, detail)


def activation_zero_points(model: Any) -> tuple[int, list[str]]:
    """(activation Q/DQ nodes read, what is wrong with those that are not int8 with zero point 0)."""
    from onnx import TensorProto, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    # Activations only: a weight's or bias's DQ reads an initializer (a 4-bit weight, its Clip of one).
    clipped = {o for p in model.graph.node if p.op_type == "Clip" for o in p.output}
    acts = [n for n in nodes if n.input[0] not in inits and n.input[0] not in clipped]
    bad = []
    for n in acts:
        zero = inits.get(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if zero is None:
            bad.append(f"{n.name or n.output[0]}: no zero point (uint8 by default)")
        elif zero.data_type != TensorProto.INT8:
            bad.append(f"{n.name or n.output[0]}: {TensorProto.DataType.Name(zero.data_type).lower()}")
        elif numpy_helper.to_array(zero).any():
            bad.append(f"{n.name or n.output[0]}: zero point {int(numpy_helper.to_array(zero).reshape(-1)[0])}")
    return len(acts), bad


def activation_zero_points_check(model: Any) -> GateCheck:
    """TensorRT's explicit quantization: every activation Q/DQ symmetric signed int8, zero point 0."""
    checked, bad = activation_zero_points(model)
    detail = (
        f"all {checked} activation Q/DQ nodes are int8 with zero point 0 (TensorRT's symmetric int8)"
        if not bad
        else f"{len(bad)} of {checked} activation Q/DQ nodes are not int8 with zero point 0, e.g. {bad[0]}"
    )
    return GateCheck("activation_zero_points", not bad and checked > 0, detail)


def openvino_kernels_check(path: Path, expected: int) -> list[GateCheck]:
    """The openvino layout: how many convolutions OpenVINO's CPU plugin compiled as int8 kernels (read
    from its runtime model). Without OpenVINO (the yqt[openvino] extra) there is nothing to check."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return []
    from yqt.runtime_openvino import open_openvino

    _, _, info = open_openvino(Path(path))
    k = info.kernels
    got = k.int8_convs if k is not None else 0
    total = k.convs if k is not None else "?"
    detail = f"OpenVINO {info.version} CPU runs {got} of {total} convs as int8 kernels, {expected} expected"
    return [GateCheck("openvino_int8_kernels", got >= expected, detail)]
