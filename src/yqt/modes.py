"""The quantization modes, as data.

A mode names its weight and activation bit widths; the Brevitas quantizer is built from one base
class with ``.let(...)`` rather than copied. Modes that are declared but not built yet fail with a
clear message instead of pretending.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yqt.errors import YqtError


@dataclass(frozen=True)
class QuantMode:
    name: str
    weight_bits: int
    act_bits: int | None  # None: activations stay float
    description: str
    available: bool
    missing: str = ""

    @property
    def weight_only(self) -> bool:
        return self.act_bits is None

    @property
    def weight_range(self) -> tuple[int, int]:
        """Narrow signed range, as Brevitas' Int8WeightPerChannelFloat uses: [-127, 127] at 8 bits."""
        top = 2 ** (self.weight_bits - 1) - 1
        return -top, top

    def weight_quant(self) -> Any:
        """The Brevitas weight quantizer: per-channel, float scale, narrow range."""
        from yqt.export import captured_output

        with captured_output("import brevitas"):
            from brevitas.quant import Int8WeightPerChannelFloat

        if self.weight_bits == 8:
            return Int8WeightPerChannelFloat
        return Int8WeightPerChannelFloat.let(bit_width=self.weight_bits)


MODES: dict[str, QuantMode] = {
    m.name: m
    for m in (
        QuantMode("w8a16", 8, None, "INT8 per-channel weights, float activations", available=True),
        QuantMode(
            "w8a8", 8, 8, "INT8 per-channel weights, INT8 activations", available=False,
            missing="it needs activation calibration, which is not built yet",
        ),
        QuantMode(
            "w4a16", 4, None, "INT4 per-channel weights, float activations", available=False,
            missing="its 4-bit accuracy recipe is not built yet",
        ),
        QuantMode(
            "w4a8", 4, 8, "INT4 per-channel weights, INT8 activations", available=False,
            missing="it needs activation calibration and a 4-bit recipe, which are not built yet",
        ),
    )
}  # fmt: skip


def get_mode(name: str) -> QuantMode:
    mode = MODES.get(name.lower().strip())
    if mode is None:
        raise YqtError(f"unknown quantization mode {name!r}", f"use one of: {', '.join(MODES)}")
    if not mode.available:
        raise YqtError(f"mode {mode.name} is not implemented yet: {mode.missing}", "use --mode w8a16")
    return mode
