"""A model's precision as its graph holds it, for compare and the report.

yqt's own files say what they are in their metadata (``yqt.mode``). A file quantized by another tool
(ORT's ``quantize_static``, NNCF, a hand-written QDQ pass) usually keeps the metadata of the float
file it came from (``yqt.mode baseline``, ``yqt.precision fp32``) or has none, so a label read from the
metadata would call an int8 model "fp32". The label here comes from the Q/DQ census of
:func:`yqt.graph.inspect_graph`: ``int8 QDQ, 82/83 convs``, ``int8 weight-only QDQ, 83/83 convs``, or
``int8 QOperator, 82 QLinearConv`` for a file in ORT's operator format.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_QOPERATOR_CONVS = ("QLinearConv", "ConvInteger")


def quantization_label(report: Any) -> str | None:
    """``int8 QDQ, 82/83 convs`` from a :class:`~yqt.graph.GraphReport`; None for a float graph."""
    qop = sum(report.op_counts.get(op, 0) for op in _QOPERATOR_CONVS)
    if qop:
        return f"int8 QOperator, {qop} {'/'.join(op for op in _QOPERATOR_CONVS if report.op_counts.get(op))}"
    convs = [layer for layer in report.layers if layer.op_type == "Conv" and layer.has_weight]
    quantized = [layer for layer in convs if layer.weight_quantized]
    if not quantized:
        return None
    bits = "/".join(f"int{b}" for b in sorted({layer.weight_bits or 8 for layer in quantized}))
    kind = "QDQ" if any(layer.act_quantized for layer in quantized) else "weight-only QDQ"
    return f"{bits} {kind}, {len(quantized)}/{len(convs)} convs"


def file_quantization(path: Path) -> str | None:
    """:func:`quantization_label` of an ONNX file; None for a float file, or one that cannot be read."""
    from yqt.errors import YqtError
    from yqt.graph import inspect_graph

    try:
        return quantization_label(inspect_graph(Path(path)))
    except (YqtError, OSError, ValueError) as exc:  # an IR, a file gone: no label rather than a failed eval
        log.info("no graph census of %s: %s", path, exc)
        return None


def says_float(meta: Mapping[str, Any]) -> bool:
    """The metadata calls the file float (a yqt baseline) or says nothing about its precision."""
    mode = str(meta.get("yqt.mode") or "")
    return mode in ("", "baseline")


def graph_mode(doc: Mapping[str, Any]) -> str | None:
    """For an evaluation (metrics.json) of a quantized file whose metadata calls it float: what its graph
    holds. Read from ``graph_quantization`` (eval/3), else from the file when it still matches."""
    if not says_float(doc.get("model") or {}):
        return None
    if "graph_quantization" in doc:
        return doc["graph_quantization"]
    path = doc.get("onnx_path")
    if not path or not Path(path).is_file():
        return None
    from yqt.runs import sha256_file

    if sha256_file(Path(path)) != doc.get("onnx_sha256"):
        return None  # the file changed since it was scored: its census would describe another model
    return file_quantization(Path(path))
