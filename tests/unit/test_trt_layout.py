"""The tensorrt layout's gate check: every activation Q/DQ is int8 with zero point 0, read from the file."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from yqt.quant.activations import activations_symmetric
from yqt.quant.gate import activation_zero_points_check
from yqt.records import Layout


def _model(zero: np.ndarray):
    """x → Q → DQ → Conv(W via its own DQ) → y: one activation pair, one weight DQ."""
    inits = [
        numpy_helper.from_array(np.array(0.02, dtype=np.float32), "x_scale"),
        numpy_helper.from_array(zero, "x_zero"),
        numpy_helper.from_array(np.ones((1, 1, 1, 1), dtype=np.int8), "w_int"),
        numpy_helper.from_array(np.array([0.1], dtype=np.float32), "w_scale"),
        numpy_helper.from_array(np.array([0], dtype=np.int8), "w_zero"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"], name="q"),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"], name="dq"),
        helper.make_node("DequantizeLinear", ["w_int", "w_scale", "w_zero"], ["w"], name="wdq", axis=0),
        helper.make_node("Conv", ["xd", "w"], ["y"], name="conv"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])], inits,
    )  # fmt: skip
    return helper.make_model(graph)


def test_symmetric_int8_passes_and_uint8_or_a_nonzero_point_fails():
    ok = activation_zero_points_check(_model(np.array(0, dtype=np.int8)))
    assert ok.passed and "all 2 activation Q/DQ nodes are int8 with zero point 0" in ok.detail
    uint8 = activation_zero_points_check(_model(np.array(128, dtype=np.uint8)))
    assert not uint8.passed and "2 of 2" in uint8.detail and "uint8" in uint8.detail
    shifted = activation_zero_points_check(_model(np.array(3, dtype=np.int8)))
    assert not shifted.passed and "zero point 3" in shifted.detail


def test_only_the_tensorrt_layout_is_symmetric():
    assert activations_symmetric(Layout.TENSORRT) and not activations_symmetric(Layout.ORT)


def test_the_openvino_layout_is_conv_inputs_only_and_asymmetric_uint8():
    from yqt.quant.activations import conv_inputs_only

    assert conv_inputs_only(Layout.OPENVINO) and conv_inputs_only(Layout.TENSORRT) and not conv_inputs_only(Layout.ORT)
    assert not activations_symmetric(Layout.OPENVINO)


def test_attention_probabilities_keep_their_whole_range():
    from onnx import TensorProto, helper

    from yqt.quant.activations import keep_probabilities_whole, probability_tensors

    nodes = [
        helper.make_node("Softmax", ["x"], ["p"], name="softmax", axis=-1),
        helper.make_node("Transpose", ["p"], ["pt"], name="t", perm=[1, 0]),
        helper.make_node("MatMul", ["pt", "v"], ["y"], name="mm"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4, 4]) for n in ("x", "v")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])],
    )  # fmt: skip
    model = helper.make_model(graph)
    assert probability_tensors(model) == {"p", "pt"}
    ranges = {"p": (0.0, 0.33), "pt": (0.0, 0.33), "y": (-2.0, 3.0)}
    assert keep_probabilities_whole(model, ranges) == {"p": (0.0, 1.0), "pt": (0.0, 1.0), "y": (-2.0, 3.0)}
