"""Frozen-scale GPTQ over the swapped model, with progress.

Brevitas' ``gptq_mode`` runs the calibration set once per layer, each pass stopped right after the
layer being solved, and updates that layer's weights to absorb the rounding error of the ones
before it. The per-channel scale must be frozen first (see ``modes.weight_quantizer``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from yqt.export import captured_output
from yqt.quant.layers import quantized_layers

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


def apply_gptq(module: Any, batches: Sequence[Any], act_order: bool = False, progress: ProgressFn | None = None) -> int:
    """Run GPTQ in place on every Brevitas layer, if any is below 8 bits. Returns the layers solved."""
    import torch

    with captured_output("import brevitas"):
        from brevitas.graph.gptq import gptq_mode

    if not any(float(m.quant_weight().bit_width) < 8 for m in quantized_layers(module).values()):
        return 0
    # 8-bit layers kept by --keep-8bit are solved too: it costs one pass each and never hurts.
    with warnings.catch_warnings(), torch.no_grad(), gptq_mode(module, act_order=act_order) as gptq:
        warnings.simplefilter("ignore")
        total = gptq.num_layers
        for done in range(1, total + 1):
            for x in batches:
                gptq.model(x)
            gptq.update()
            if progress is not None:
                progress(done, total)
    log.info("GPTQ solved %d layers on %d images (act_order=%s)", total, len(batches), act_order)
    return total
