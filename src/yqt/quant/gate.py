"""The structural checks a quantized export must pass before it is published, per mode.

Everything is read back from the file with the inspect-graph census, so the gate checks what was
written, not what was meant: every planned layer at its planned bits and storage, nothing float
that should not be, activations quantized where the mode says, and (for the ORT layout) the number
of convs ONNX Runtime really fuses into int8 kernels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
