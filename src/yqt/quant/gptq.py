"""Frozen-scale GPTQ over the swapped model, with progress.

Brevitas' ``gptq_mode`` runs the calibration set once per layer, each pass stopped right after the
layer being solved, and updates that layer's weights to absorb the rounding error of the ones
before it. The per-channel scale must be frozen first (see ``modes.weight_quantizer``).

Only layers below 8 bits are solved. At ``--target-bits 4.5`` (34 of 82 layers at 8 bits, 128
images) that scored 0.3877 mAP50-95 on 81 held-out train2017 images, against 0.3881 with all 82
solved, and ``benchmarks/mixed_precision.py``'s quantize took 378 s instead of 707 s.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from yqt.quant.layers import quantized_layers
from yqt.runs import captured_output

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


def apply_gptq(module: Any, batches: Sequence[Any], act_order: bool = False, progress: ProgressFn | None = None) -> int:
    """Run GPTQ in place on every Brevitas layer below 8 bits. Returns the layers solved."""
    import torch

    with captured_output("import brevitas"):
        from brevitas.graph.gptq import gptq_mode

    layers = quantized_layers(module)
    high = [m for m in layers.values() if float(m.quant_weight().bit_width) >= 8]
    if len(high) == len(layers):
        return 0
    # One pass over the images per solved layer buys nothing at 8 bits (see the module docstring).
    # Brevitas solves only layers whose weight quantizer is enabled, so the 8-bit ones are switched
    # off for the passes (they run float there) and back on after: they keep round-to-nearest.
    for m in high:
        m.weight_quant.disable_quant = True
    try:
        with warnings.catch_warnings(), torch.no_grad(), gptq_mode(module, act_order=act_order) as gptq:
            warnings.simplefilter("ignore")
            total = gptq.num_layers
            for done in range(1, total + 1):
                for x in batches:
                    gptq.model(x)
                gptq.update()
                if progress is not None:
                    progress(done, total)
    finally:
        for m in high:
            m.weight_quant.disable_quant = False
    log.info("GPTQ solved %d layers on %d images (act_order=%s)", total, len(batches), act_order)
    return total
