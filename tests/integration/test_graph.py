"""inspect-graph against independent counts made with the onnx package, on real models."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_one_line_error, run_yqt

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def w8a16_onnx(w8a16) -> Path:
    """The session's W8A16 QCDQ model (tests/conftest.py), quantized once for every test."""
    assert w8a16.passed, w8a16.failures
    return w8a16.onnx.path


def _independent_conv_weights(path: Path) -> dict[str, str]:
    """node name → 'int8' | 'float', read straight from the graph with onnx."""
    import onnx

    model = onnx.load(str(path))
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name for t in model.graph.initializer}
    kinds = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        w = node.input[1]
        kinds[node.name] = "float" if w in inits else "int8" if producer[w].op_type == "DequantizeLinear" else "?"
    return kinds


@pytest.mark.slow
def test_w8a16_census_matches_independent_count(w8a16_onnx: Path, tmp_path: Path):
    import onnx

    result = run_yqt("inspect-graph", str(w8a16_onnx), "--json", runs_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["op_counts"] == dict(Counter(n.op_type for n in onnx.load(str(w8a16_onnx)).graph.node))
    independent = _independent_conv_weights(w8a16_onnx)
    convs = {layer["name"]: layer for layer in doc["layers"] if layer["op_type"] == "Conv"}
    assert set(convs) == set(independent)
    for name, kind in independent.items():
        layer = convs[name]
        if kind == "int8":
            assert (layer["weight_quantized"], layer["weight_bits"], layer["granularity"], layer["axis"]) == (
                True, 8, "per_channel", 0,
            )  # fmt: skip
        else:
            assert not layer["weight_quantized"]
    float_convs = [name for name, kind in independent.items() if kind == "float"]
    assert float_convs == ["/model.23/dfl/conv/Conv"]
    assert [
        layer["name"] for layer in doc["layers"] if layer["has_weight"] and not layer["weight_quantized"]
    ] == float_convs
    assert convs["/model.23/dfl/conv/Conv"]["module"] == "model.23" and convs["/model.23/dfl/conv/Conv"]["head"]
    assert doc["summary"]["quantized_layers"] == 82 and doc["summary"]["dequantize_linear"] == 82
    assert not any(layer["act_quantized"] for layer in doc["layers"])
    for key in ("name", "op_type", "module", "weight_quantized", "weight_bits", "granularity", "axis", "act_quantized"):
        assert key in doc["layers"][0]


@pytest.mark.slow
def test_only_and_diff(w8a16_onnx: Path, baseline_onnx: Path, tmp_path: Path):
    result = run_yqt("inspect-graph", str(w8a16_onnx), "--only", "float", "--json", runs_dir=tmp_path)
    doc = json.loads(result.stdout)
    assert [layer["name"] for layer in doc["layers"]] == ["/model.23/dfl/conv/Conv"]
    assert doc["summary"]["quantized_layers"] == 82  # summary is never filtered
    result = run_yqt("inspect-graph", str(w8a16_onnx), "--diff", str(baseline_onnx), "--json", runs_dir=tmp_path)
    doc = json.loads(result.stdout)
    assert len(doc["diff"]) == 82
    assert {d["change"] for d in doc["diff"]} == {"changed"}
    assert doc["diff"][0]["before"] == "float (float32)" and doc["diff"][0]["after"] == "w8 per_channel"


@pytest.mark.slow
def test_census_is_recorded_in_the_run(w8a16_onnx: Path, tmp_path: Path):
    result = run_yqt("inspect-graph", str(w8a16_onnx), "--run", "census", runs_dir=tmp_path / "runs")
    assert result.returncode == 0, result.stderr
    saved = json.loads((tmp_path / "runs" / "census" / "graph" / f"{w8a16_onnx.stem}.json").read_text())
    assert saved["summary"]["quantized_layers"] == 82


@pytest.fixture(scope="session")
def ort_qdq_onnx(baseline_onnx: Path, coco_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ORT quantize_static QDQ (per-tensor weights, uint8 activations) of the float baseline, 4 calibration images."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from yqt.data import letterbox, read_image

    images = sorted((coco_root / "train2017").glob("*.jpg"))[:4]  # calibration never uses scored images

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"images": letterbox(read_image(p), 640)[0]} for p in images])

        def get_next(self):
            return next(self.items, None)

    out = tmp_path_factory.mktemp("ortqdq") / "yolov10n-ort-qdq.onnx"
    quantize_static(
        str(baseline_onnx), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=False,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
    )  # fmt: skip
    return out


@pytest.mark.slow
def test_ort_qdq_census_sees_activation_and_per_tensor_weights(ort_qdq_onnx: Path):
    import onnx

    from yqt.graph import inspect_graph

    report = inspect_graph(ort_qdq_onnx)
    assert report.op_counts == dict(Counter(n.op_type for n in onnx.load(str(ort_qdq_onnx)).graph.node))
    convs = [layer for layer in report.layers if layer.op_type == "Conv"]
    independent = _independent_conv_weights(ort_qdq_onnx)
    quantized = [c for c in convs if c.weight_quantized]
    assert len(quantized) == sum(k == "int8" for k in independent.values()) > 70
    assert all(c.granularity == "per_tensor" and c.weight_bits == 8 for c in quantized)
    acts = [c for c in convs if c.act_quantized]
    assert len(acts) > 70
    assert all(c.act_scale and c.act_scale > 0 and c.act_bits == 8 for c in acts)
    assert all(0 <= c.act_zero_point <= 255 for c in acts)
    assert any("per-tensor weight scales" in w for w in report.warnings)
    assert report.summary.quantize_linear > 0


def _four_bit_model(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).integers(-7, 8, size=(8, 3, 3, 3)).astype(np.int8)
    inits = [
        numpy_helper.from_array(w, "w_int"),
        numpy_helper.from_array(np.array(-7, dtype=np.int8), "lo"),
        numpy_helper.from_array(np.array(7, dtype=np.int8), "hi"),
        numpy_helper.from_array(np.full(8, 0.05, dtype=np.float32), "scale"),
        numpy_helper.from_array(np.zeros(8, dtype=np.int8), "zp"),
    ]
    nodes = [
        helper.make_node("Clip", ["w_int", "lo", "hi"], ["w_clip"], name="/model.0/conv/Clip"),
        helper.make_node("DequantizeLinear", ["w_clip", "scale", "zp"], ["w_dq"], axis=0, name="/model.0/conv/DQ"),
        helper.make_node("Conv", ["images", "w_dq"], ["out"], name="/model.0/conv/Conv", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes, "four_bit", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, 8, 8])], inits,
    )  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


@pytest.mark.slow
def test_clip_minus7_to_7_is_reported_as_4_bits(tmp_path: Path):
    from yqt.graph import inspect_graph

    report = inspect_graph(_four_bit_model(tmp_path / "w4.onnx"))
    (layer,) = report.layers
    assert (layer.weight_bits, layer.granularity, layer.axis, layer.weight_dtype) == (4, "per_channel", 0, "int8")
    assert any("below 8 bits" in w for w in report.warnings)  # model.0 is the only, hence last, layer: the head


def test_bad_input(tmp_path: Path, baseline_onnx: Path):
    text = tmp_path / "notes.onnx"
    text.write_bytes(b"\x08not a model")  # starts like a protobuf, so only parsing can tell
    assert_one_line_error(run_yqt("inspect-graph", str(text), runs_dir=tmp_path), "is not a readable ONNX model")
    prose = tmp_path / "notes.txt"
    prose.write_text('{"not": "a model"}')
    assert_one_line_error(run_yqt("inspect-graph", str(prose), runs_dir=tmp_path), "notes.txt is a JSON or text file")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(baseline_onnx.read_bytes()[:50_000])
    assert_one_line_error(run_yqt("inspect-graph", str(truncated), runs_dir=tmp_path), "is not a readable ONNX model")
    from tests.integration.test_bad_input import _onnx_with_wrong_output

    no_compute = _onnx_with_wrong_output(tmp_path / "identity.onnx")
    assert_one_line_error(run_yqt("inspect-graph", str(no_compute), runs_dir=tmp_path), "has no compute layers")
    assert_one_line_error(run_yqt("inspect-graph", str(baseline_onnx), "--only", "int", runs_dir=tmp_path), "--only")
