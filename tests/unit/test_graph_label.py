"""A file another tool quantized is labelled by what its graph holds, not by its float metadata."""

from __future__ import annotations

from types import SimpleNamespace

from yqt.graph_label import graph_mode, quantization_label
from yqt.records import mode_with_bits


def _layer(quantized: bool, act: bool, bits: int = 8, op: str = "Conv") -> SimpleNamespace:
    return SimpleNamespace(op_type=op, has_weight=True, weight_quantized=quantized, act_quantized=act,
                           weight_bits=bits if quantized else None)  # fmt: skip


def _report(layers: list, ops: dict | None = None) -> SimpleNamespace:
    return SimpleNamespace(layers=layers, op_counts=ops or {})


def test_labels_say_what_the_graph_holds():
    w8a8 = _report([_layer(True, True)] * 82 + [_layer(False, False)])
    assert quantization_label(w8a8) == "int8 QDQ, 82/83 convs"
    weight_only = _report([_layer(True, False)] * 83)
    assert quantization_label(weight_only) == "int8 weight-only QDQ, 83/83 convs"
    mixed = _report([_layer(True, False, 4)] * 60 + [_layer(True, False, 8)] * 23)
    assert quantization_label(mixed) == "int4/int8 weight-only QDQ, 83/83 convs"
    assert quantization_label(_report([_layer(False, False)] * 83)) is None
    assert quantization_label(_report([], {"QLinearConv": 82})) == "int8 QOperator, 82 QLinearConv"


def test_the_label_replaces_float_metadata_only():
    meta = {"yqt.mode": "baseline", "yqt.precision": "fp32"}  # what ORT's quantizer copies from the float file
    foreign = {"model": meta, "graph_quantization": "int8 QDQ, 82/83 convs"}
    assert graph_mode(foreign) == "int8 QDQ, 82/83 convs"
    assert graph_mode({"model": {}, "graph_quantization": "int8 QDQ, 10/10 convs"}) == "int8 QDQ, 10/10 convs"
    ours = {"model": {"yqt.mode": "w8a8"}, "graph_quantization": "int8 QDQ, 82/83 convs"}
    assert graph_mode(ours) is None  # yqt's own file keeps its mode (w8a8 8b)
    assert graph_mode({"model": {"yqt.mode": "baseline"}, "graph_quantization": None}) is None
    assert mode_with_bits("int8 QDQ, 82/83 convs", None) == "int8 QDQ, 82/83 convs"
    assert mode_with_bits("baseline fp32", 32.0) == "fp32"
