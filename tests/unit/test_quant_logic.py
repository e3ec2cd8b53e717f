"""Pure logic of the quantization package on small synthetic graphs and images: what stays float,
SiLU floors, INT4 packing (run by ONNX Runtime), bit widths read from values, calibration sets."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _conv(name: str, x: str, w: str, y: str) -> object:
    return helper.make_node("Conv", [x, w], [y], name=name)


def _head_graph() -> object:
    """x → Conv → SiLU → Conv (final) → Reshape → Softmax → DFL Conv → Mul → out, plus a side branch."""
    w = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")
    shape = numpy_helper.from_array(np.array([1, 1, 2, 2], np.int64), "shape")
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    nodes = [
        _conv("/model.1/conv/Conv", "x", "w", "a"),
        helper.make_node("Sigmoid", ["a"], ["s"], name="/model.1/act/Sigmoid"),
        helper.make_node("Mul", ["a", "s"], ["m"], name="/model.1/act/Mul"),
        _conv("/model.23/cv3.0.2/Conv", "m", "w", "b"),
        helper.make_node("Reshape", ["b", "shape"], ["r"], name="/model.23/Reshape"),
        helper.make_node("Softmax", ["r"], ["sm"], name="/model.23/dfl/Softmax"),
        _conv("/model.23/dfl/conv/Conv", "sm", "w", "d"),
        helper.make_node("Mul", ["d", "two"], ["out"], name="/model.23/Mul"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 2, 2])], [w, shape, two],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_post_processing_is_everything_below_the_final_convs():
    from yqt.quant.activations import post_processing

    post, finals = post_processing(_head_graph())
    assert finals == ["/model.23/cv3.0.2/Conv"]
    assert post == {"/model.23/Reshape", "/model.23/dfl/Softmax", "/model.23/dfl/conv/Conv", "/model.23/Mul"}


def test_only_silu_inputs_are_floored():
    from yqt.quant.activations import SILU_FLOOR, floor_silu_inputs, silu_inputs

    model = _head_graph()
    assert silu_inputs(model) == {"a"}
    ranges = floor_silu_inputs(model, {"a": (-69.0, 40.0), "b": (-27.0, 1.0), "m": (-0.28, 20.0)})
    assert ranges == {"a": (SILU_FLOOR, 40.0), "b": (-27.0, 1.0), "m": (-0.28, 20.0)}


def _clip_dq_conv_model(values: np.ndarray, scale: np.ndarray, bits: int) -> object:
    top = 2 ** (bits - 1) - 1
    inits = [
        numpy_helper.from_array(values.astype(np.int8), "wq"),
        numpy_helper.from_array(np.array(-top, np.int8), "lo"),
        numpy_helper.from_array(np.array(top, np.int8), "hi"),
        numpy_helper.from_array(scale.astype(np.float32), "ws"),
        numpy_helper.from_array(np.zeros(scale.shape, np.int8), "wz"),
    ]
    nodes = [
        helper.make_node("Clip", ["wq", "lo", "hi"], ["wc"], name="clip"),
        helper.make_node("DequantizeLinear", ["wc", "ws", "wz"], ["w"], name="dq", axis=0),
        _conv("/model.0/conv/Conv", "x", "w", "y"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def _run(model: object, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_pack_int4_halves_the_weights_and_onnxruntime_gives_the_same_output(tmp_path: Path):
    from yqt.graph import inspect_graph
    from yqt.quant.storage import pack_int4

    rng = np.random.default_rng(0)
    values = rng.integers(-7, 8, size=(8, 3, 3, 3))
    model = _clip_dq_conv_model(values, rng.uniform(0.01, 0.1, 8), bits=4)
    x = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    before = _run(model, x)
    assert pack_int4(model) == 1
    assert [n.op_type for n in model.graph.node] == ["DequantizeLinear", "Conv"]
    packed = {t.name: t for t in model.graph.initializer}["wq_int4"]
    assert packed.data_type == TensorProto.INT4 and len(packed.raw_data) == values.size // 2
    np.testing.assert_array_equal(_run(model, x), before)
    onnx.save(model, str(tmp_path / "m.onnx"))
    layer = inspect_graph(tmp_path / "m.onnx").layers[0]
    assert (layer.weight_dtype, layer.weight_bits, layer.granularity, layer.axis) == ("int4", 4, "per_channel", 0)


def test_pack_int4_leaves_8bit_weights_alone():
    from yqt.quant.storage import pack_int4

    model = _clip_dq_conv_model(np.full((2, 3, 1, 1), 100), np.ones(2), bits=8)
    assert pack_int4(model) == 0
    assert [n.op_type for n in model.graph.node] == ["Clip", "DequantizeLinear", "Conv"]


@pytest.mark.parametrize(("top", "bits"), [(127, 8), (64, 8), (7, 4), (3, 3), (1, 2), (0, 2)])
def test_bits_of_symmetric_int8_weights_come_from_their_values(top: int, bits: int):
    from yqt.graph import _bits_from_values

    values = np.array([[-top, 0], [top, 1 if top else 0]], dtype=np.int8)
    assert _bits_from_values(values) == bits


def _write_images(folder: Path, names: list[str]) -> None:
    import cv2

    folder.mkdir()
    for i, name in enumerate(names):
        cv2.imwrite(str(folder / name), np.full((8, 8, 3), i * 20, np.uint8))


def test_calibration_set_is_the_first_n_images_by_name_traced_by_content(tmp_path: Path):
    from yqt.errors import YqtError
    from yqt.provenance import calibration_metadata, calibration_overlap
    from yqt.quant.calibrate import select_calibration

    _write_images(tmp_path / "c", ["b.jpg", "a.png", "c.jpg"])
    (tmp_path / "c" / "notes.txt").write_text("not an image")
    calib, warnings = select_calibration(tmp_path / "c", 2)
    assert [i.name for i in calib.images] == ["a.png", "b.jpg"] and not warnings
    again, _ = select_calibration(tmp_path / "c", 2)
    assert again.sha256 == calib.sha256
    _, warnings = select_calibration(tmp_path / "c", 5)
    assert warnings and "using all of them" in warnings[0]
    meta = calibration_metadata(calib)
    assert json.loads(meta["yqt.calibration"])["count"] == 2
    renamed = tmp_path / "renamed.jpg"
    renamed.write_bytes((tmp_path / "c" / "b.jpg").read_bytes())
    assert calibration_overlap(meta, [renamed, tmp_path / "c" / "c.jpg"]) == ["renamed.jpg"]
    with pytest.raises(YqtError, match="--calib-images must be at least 1"):
        select_calibration(tmp_path / "c", 0)


def test_gptq_gets_more_calibration_images_by_default_and_an_explicit_count_wins():
    from yqt.errors import YqtError
    from yqt.quant.calibrate import ACTIVATION_IMAGES, GPTQ_IMAGES, resolve_count
    from yqt.quant.modes import get_mode

    assert (ACTIVATION_IMAGES, GPTQ_IMAGES) == (64, 128)
    assert resolve_count(None, get_mode("w4a16"), gptq=True) == 128
    assert resolve_count(None, get_mode("w4a8"), gptq=True) == 128
    assert resolve_count(None, get_mode("w4a8"), gptq=False) == 64  # only the activation ranges then
    assert resolve_count(None, get_mode("w8a8"), gptq=True) == 64  # 8-bit modes run no GPTQ
    assert resolve_count(6, get_mode("w4a16"), gptq=True) == 6
    with pytest.raises(YqtError, match="--calib-images must be at least 1") as err:
        resolve_count(0, get_mode("w4a16"), gptq=True)
    assert "128 with GPTQ, 64 otherwise" in err.value.hint


def test_calibration_folder_is_resolved_or_the_error_says_what_to_pass(tmp_path: Path):
    from yqt.errors import YqtError
    from yqt.quant.calibrate import resolve_calib_dir

    (tmp_path / "coco" / "train2017").mkdir(parents=True)
    assert resolve_calib_dir(None, tmp_path / "coco", "w8a8") == tmp_path / "coco" / "train2017"
    assert resolve_calib_dir(tmp_path / "coco", None, "w8a8") == tmp_path / "coco"
    with pytest.raises(YqtError, match="needs calibration images") as err:
        resolve_calib_dir(None, None, "w8a8")
    assert "--coco-root DIR" in err.value.hint and "--calib-dir DIR" in err.value.hint
    with pytest.raises(YqtError, match="has no train2017"):
        resolve_calib_dir(None, tmp_path, "w4a8")


def test_layer_groups_collapse_same_reason_rows_and_name_the_exceptions():
    from yqt.records import LayerDecision
    from yqt.ui import layer_groups

    mode = "w4a16: 4-bit per-channel weights"
    rows = [LayerDecision(f"model.{i}.conv", "Conv2d", "", True, mode, bits=4) for i in range(80)]
    rows.append(LayerDecision("model.0.conv", "Conv2d", "", True, "--keep-8bit model.0", bits=8))
    rows.append(LayerDecision("model.23.dfl.conv", "Conv2d", "", False, "DFL", bits=None))
    result = SimpleNamespace(mode="w4a16", layers=tuple(rows))
    assert layer_groups(result) == [
        "80 convs: int4 (4-bit per-channel weights)",
        "1 at int8: model.0.conv (--keep-8bit model.0)",
        "1 kept float: model.23.dfl.conv (DFL)",
    ]
    # One reason per layer (a ranking with scores): the list stays short and says what it left out.
    ranked = [LayerDecision(f"model.{i}.cv", "Conv2d", "", True, f"sensitivity rank {i}", bits=8) for i in range(20)]
    lines = layer_groups(SimpleNamespace(mode="w4a16", layers=tuple(rows + ranked)))
    assert len(lines) == 8 and lines[-1] == "and 16 more groups of layers (--verbose lists every layer)"


def test_gptq_solves_the_4bit_layers_and_leaves_8bit_ones_round_to_nearest():
    """Real Brevitas GPTQ on a small conv stack: the 8-bit layer is skipped (its integers stay the
    round-to-nearest ones, and its quantizer is back on), the 4-bit layers are moved off nearest."""
    import torch
    import torch.nn as nn

    from yqt.quant.gptq import apply_gptq
    from yqt.quant.layers import LayerPlan, integer_weights, quantize_module, quantized_layers
    from yqt.quant.modes import get_mode

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.SiLU(), nn.Conv2d(8, 16, 3, padding=1), nn.SiLU(),
                        nn.Conv2d(16, 8, 1))  # fmt: skip
    qnet, _, _ = quantize_module(net, get_mode("w4a16"), LayerPlan(keep_8bit=("0",)))
    before = {n: integer_weights(m)[0] for n, m in quantized_layers(qnet).items()}
    solved = apply_gptq(qnet, [torch.randn(2, 3, 12, 12) for _ in range(4)])
    after = {n: integer_weights(m) for n, m in quantized_layers(qnet).items()}
    assert solved == 2
    assert after["0"][2] == 8 and np.array_equal(after["0"][0], before["0"])
    assert quantized_layers(qnet)["0"].weight_quant.is_quant_enabled
    for name in ("2", "4"):
        assert after[name][2] == 4 and not np.array_equal(after[name][0], before[name])
