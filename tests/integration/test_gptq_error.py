"""GPTQ against round-to-nearest on one layer (issue 25): with the same frozen scale, GPTQ's integers
reproduce the float layer's output on the calibration inputs at least as well as nearest rounding."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.integration


def test_gptq_layer_error_is_at_most_round_to_nearest():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from yqt.quant.gptq import apply_gptq
    from yqt.quant.layers import LayerPlan, integer_weights, quantize_module, quantized_layers
    from yqt.quant.modes import get_mode

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, bias=False))
    float_weight = net[0].weight.detach().clone()
    mixing = torch.randn(16, 16)  # correlated input channels, as a network's activations are
    batches = [torch.einsum("oc,bchw->bohw", mixing, torch.randn(4, 16, 10, 10)) for _ in range(4)]
    qnet, _, _ = quantize_module(net, get_mode("w4a16"), LayerPlan())
    layer = quantized_layers(qnet)["0"]

    def output_error(ints: np.ndarray, scale: np.ndarray) -> float:
        weight = torch.from_numpy(ints.astype(np.float32) * scale.reshape(-1, 1, 1, 1))
        return sum(float(((F.conv2d(x, weight, padding=1) - F.conv2d(x, float_weight, padding=1)) ** 2).sum())
                   for x in batches)  # fmt: skip

    nearest, scale, bits = integer_weights(layer)
    assert apply_gptq(qnet, batches) == 1
    solved, solved_scale, _ = integer_weights(quantized_layers(qnet)["0"])
    assert bits == 4 and np.array_equal(scale, solved_scale)  # frozen: only the integers moved
    assert not np.array_equal(solved, nearest)
    rtn, gptq = output_error(nearest, scale), output_error(solved, scale)
    assert gptq <= rtn, (gptq, rtn)
