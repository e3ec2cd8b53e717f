"""The module swap: each Conv2d/Linear becomes its Brevitas layer, at the bits its plan gives it.

Module-level replacement (FX tracing fails on Ultralytics models). Each layer's decision (bits,
or float, and why) is recorded, so the result can say what was kept at 8 bits or float and why.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from yqt.errors import YqtError
from yqt.quant.modes import QuantMode, weight_quantizer
from yqt.records import LayerDecision
from yqt.runs import captured_output

DFL_SUFFIX = "dfl.conv"
FLOAT_BITS = 32  # a layer kept float counts at fp32 in the mean weight bits


@dataclass(frozen=True)
class LayerPlan:
    """What the user asked for, beyond the mode: layers kept float, layers kept at 8 bits."""

    exclude: tuple[str, ...] = ()
    keep_8bit: tuple[str, ...] = ()
    quantize_dfl: bool = False
    promoted: tuple[tuple[str, str], ...] = ()  # (layer, why) kept at 8 bits by --target-bits


def _shape(m: Any) -> str:
    import torch.nn as nn

    if isinstance(m, nn.Conv2d):
        return f"{m.in_channels}→{m.out_channels} k{m.kernel_size[0]} g{m.groups}"
    return f"{m.in_features}→{m.out_features}"


def _matches(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, f"{pattern}.*")


def _first_match(name: str, patterns: Iterable[str], hits: dict[str, int]) -> str | None:
    found = None
    for pattern in patterns:
        if _matches(name, pattern):
            hits[pattern] += 1
            found = found or pattern
    return found


def _same_geometry(m: Any, conv_type: Any, linear_type: Any, **extra: Any) -> Any:
    """A new conv or linear layer of ``m``'s shape (weights not copied)."""
    import torch.nn as nn

    if isinstance(m, nn.Conv2d):
        return conv_type(
            m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation,
            groups=m.groups, bias=m.bias is not None, padding_mode=m.padding_mode, **extra,
        )  # fmt: skip
    return linear_type(m.in_features, m.out_features, bias=m.bias is not None, **extra)


def _set_submodule(root: Any, name: str, module: Any) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


def _quant_layer(m: Any, bits: int, qnn: Any) -> Any:
    """A Brevitas layer with ``m``'s geometry and weights: weight quantizer only, no input/output/bias quant."""
    common = {
        "weight_quant": weight_quantizer(bits),
        "input_quant": None,
        "output_quant": None,
        "bias_quant": None,
        "return_quant_tensor": False,
    }
    q = _same_geometry(m, qnn.QuantConv2d, qnn.QuantLinear, **common)
    missing, unexpected = q.load_state_dict(m.state_dict(), strict=False)
    # Only a frozen scale (initialised from the weights below) may be absent from a float state dict.
    if unexpected or any("scaling_impl" not in k for k in missing):
        raise RuntimeError(f"weight transfer into the Brevitas layer failed: missing={missing} unexpected={unexpected}")
    q.eval()
    q.quant_weight()  # initialises a parameter_from_stats scale from the float weights, before GPTQ moves them
    return q


def plan_layers(
    module: Any, mode: QuantMode, plan: LayerPlan = LayerPlan()
) -> tuple[tuple[LayerDecision, ...], tuple[str, ...]]:
    """Each Conv2d/Linear's bits (None: float) and why, without touching the model. Returns the
    decisions in network order and warnings."""
    import torch.nn as nn

    excluded_hits = {p: 0 for p in plan.exclude}
    kept_hits = {p: 0 for p in plan.keep_8bit}
    promoted = dict(plan.promoted)
    decisions: list[LayerDecision] = []
    for name, m in module.named_modules():
        if type(m) not in (nn.Conv2d, nn.Linear):
            continue
        kind, params = type(m).__name__, int(m.weight.numel())
        excluded = _first_match(name, plan.exclude, excluded_hits)
        kept = _first_match(name, plan.keep_8bit, kept_hits) if mode.low_bit else None
        if name.endswith(DFL_SUFFIX) and not plan.quantize_dfl:
            reason = "DFL conv: fixed 0..15 arange weights, quantizing them costs box accuracy"
        elif excluded:
            reason = f"--exclude {excluded}"
        else:
            reason = None
        if reason:
            decisions.append(LayerDecision(name, kind, _shape(m), quantized=False, reason=reason, bits=None,
                                           params=params))  # fmt: skip
            continue
        if kept:
            bits, why = 8, f"--keep-8bit {kept}"
        elif name in promoted and mode.low_bit:
            bits, why = 8, promoted[name]
        else:
            bits, why = mode.weight_bits, f"{mode.name}: {mode.description}"
        decisions.append(LayerDecision(name, kind, _shape(m), quantized=True, reason=why, bits=bits, params=params))
    notes = [f"--exclude {p!r} matched no layer (names look like model.23.cv2.0.0.conv)"
             for p, n in excluded_hits.items() if not n]  # fmt: skip
    notes += [f"--keep-8bit {p!r} matched no layer (names look like model.2.cv1.conv)"
              for p, n in kept_hits.items() if not n]  # fmt: skip
    if plan.keep_8bit and not mode.low_bit:
        notes.append(f"--keep-8bit has no effect in {mode.name}: every weight is 8-bit already")
    if not any(d.quantized for d in decisions):
        raise YqtError(
            f"nothing left to quantize: all {len(decisions)} conv/linear layers are excluded",
            "narrow the --exclude patterns",
        )
    return tuple(decisions), tuple(notes)


def quantize_module(
    module: Any, mode: QuantMode, plan: LayerPlan = LayerPlan()
) -> tuple[Any, tuple[LayerDecision, ...], tuple[str, ...]]:
    """Swap every Conv2d/Linear (in place) at its planned bits. Returns the module, decisions and warnings."""
    with captured_output("import brevitas"):
        import brevitas.nn as qnn

    decisions, notes = plan_layers(module, mode, plan)
    for d in decisions:
        if d.quantized:
            _set_submodule(module, d.name, _quant_layer(module.get_submodule(d.name), d.bits, qnn))
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval(), decisions, notes


def mean_weight_bits(decisions: Iterable[LayerDecision]) -> float:
    """Parameter-weighted mean bits over every conv/linear weight; float layers count as 32."""
    rows = list(decisions)
    total = sum(d.params for d in rows)
    if not total:
        return 0.0
    return sum(d.params * (d.bits if d.bits is not None else FLOAT_BITS) for d in rows) / total


def quantized_layers(module: Any) -> dict[str, Any]:
    """Name → Brevitas layer, for every swapped layer."""
    with captured_output("import brevitas"):
        import brevitas.nn as qnn

    return {n: m for n, m in module.named_modules() if isinstance(m, (qnn.QuantConv2d, qnn.QuantLinear))}


def integer_weights(layer: Any) -> tuple[Any, Any, int]:
    """A Brevitas layer's weights: (integers int8 [O,...], per-output-channel scale float32 [O], bits)."""
    import torch

    with torch.no_grad():
        qw = layer.quant_weight()
        ints = qw.int().to(torch.int8).cpu().numpy()
        scale = qw.scale.detach().reshape(-1).float().cpu().numpy()
    return ints, scale, int(qw.bit_width)


def dequantized_copy(module: Any) -> Any:
    """A plain-PyTorch deep copy whose Brevitas layers are back to nn.Conv2d/nn.Linear holding the
    dequantized weights: the weight-quantized network, exportable by the stock ONNX exporter."""
    import copy

    import torch
    import torch.nn as nn

    clone = copy.deepcopy(module)
    for name, layer in quantized_layers(clone).items():
        with torch.no_grad():
            weight = layer.quant_weight().value.detach().clone()
        plain = _same_geometry(layer, nn.Conv2d, nn.Linear)
        with torch.no_grad():
            plain.weight.copy_(weight)
            if layer.bias is not None:
                plain.bias.copy_(layer.bias.detach())
        _set_submodule(clone, name, plain.eval())
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone.eval()
