"""The quantization modes, as data.

A mode names its weight and activation bit widths and what it needs (calibration images, GPTQ).
The Brevitas weight quantizer is one base class varied with ``.let(...)``, never copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yqt.errors import YqtError

# The first ONNX opset whose DequantizeLinear takes INT4 initializers.
INT4_OPSET = 21
DEFAULT_OPSET = 17


@dataclass(frozen=True)
class QuantMode:
    name: str
    weight_bits: int
    act_bits: int | None  # None: activations stay float
    description: str

    @property
    def weight_only(self) -> bool:
        return self.act_bits is None

    @property
    def low_bit(self) -> bool:
        return self.weight_bits < 8

    @property
    def weight_range(self) -> tuple[int, int]:
        """Narrow signed range, as Brevitas' Int8WeightPerChannelFloat uses: [-127, 127] at 8 bits."""
        return weight_range(self.weight_bits)

    @property
    def default_opset(self) -> int:
        # 4-bit weights are only smaller on disk as INT4 initializers, which need opset 21.
        return INT4_OPSET if self.low_bit else DEFAULT_OPSET

    def needs_calibration(self, gptq: bool) -> bool:
        return not self.weight_only or (self.low_bit and gptq)


def weight_range(bits: int) -> tuple[int, int]:
    top = 2 ** (bits - 1) - 1
    return -top, top


def weight_quantizer(bits: int) -> Any:
    """Per-channel, float-scale, narrow-range weight quantizer at ``bits``.

    Below 8 bits the per-channel absmax scale is a parameter initialised from the weights and then
    frozen (``parameter_from_stats``): GPTQ's weight updates would otherwise move a stats-based
    scale with them and undo their own error compensation (docs/experiments.md keeps the one
    uncommitted measurement).
    """
    from yqt.runs import captured_output

    with captured_output("import brevitas"):
        from brevitas.inject.enum import ScalingImplType
        from brevitas.quant import Int8WeightPerChannelFloat

    if bits == 8:
        return Int8WeightPerChannelFloat
    return Int8WeightPerChannelFloat.let(bit_width=bits, scaling_impl_type=ScalingImplType.PARAMETER_FROM_STATS)


MODES: dict[str, QuantMode] = {
    m.name: m
    for m in (
        QuantMode("w8a16", 8, None, "INT8 per-channel weights, float activations"),
        QuantMode("w8a8", 8, 8, "INT8 per-channel weights, INT8 activations"),
        QuantMode("w4a16", 4, None, "INT4 per-channel weights, float activations"),
        QuantMode("w4a8", 4, 8, "INT4 per-channel weights, INT8 activations"),
    )
}


def get_mode(name: str) -> QuantMode:
    mode = MODES.get(name.lower().strip())
    if mode is None:
        raise YqtError(f"unknown quantization mode {name!r}", f"use one of: {', '.join(MODES)}")
    return mode
