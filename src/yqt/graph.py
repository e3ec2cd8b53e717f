"""A census of an ONNX model's Q/DQ structure: what is quantized, how, and what stayed float.

Works on any ONNX: float, Brevitas QCDQ (int8 initializer → Clip → DequantizeLinear), or ORT
``quantize_static`` QDQ (QuantizeLinear → DequantizeLinear on activations and weights). Everything
is read from the graph itself; nothing is assumed about who exported it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from yqt.errors import YqtError
from yqt.filetypes import require_onnx_file
from yqt.models import contract_of_outputs, model_label
from yqt.records import ContractCheck

COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear", "Clip")
_MODULE_RE = re.compile(r"(?:^|/)(model\.\d+)(?:/|$)")
_INT_DTYPES = {"int8": 8, "uint8": 8, "int4": 4, "uint4": 4, "int16": 16, "uint16": 16, "int32": 32}


@dataclass(frozen=True)
class LayerCensus:
    name: str
    op_type: str
    module: str | None
    head: bool
    has_weight: bool
    weight_quantized: bool
    weight_dtype: str | None
    weight_bits: int | None
    granularity: str | None  # "per_channel" | "per_tensor"
    axis: int | None
    weight_stored_float: bool  # a Q node fake-quantizes fp32 weights stored in the file
    act_quantized: bool
    act_scale: float | None
    act_zero_point: int | None
    act_bits: int | None


@dataclass(frozen=True)
class GraphSummary:
    nodes: int
    compute_layers: int
    weight_layers: int
    quantized_layers: int
    float_layers: int
    act_quantized_layers: int
    quantize_linear: int
    dequantize_linear: int
    clip: int
    int_initializer_bytes: int
    float_initializer_bytes: int
    head_layers: int
    head_quantized_layers: int


@dataclass(frozen=True)
class LayerDiff:
    name: str
    change: str
    before: str
    after: str


@dataclass(frozen=True)
class GraphReport:
    """The census of one ONNX file (``inspect-graph``)."""

    SCHEMA: ClassVar[str] = "yqt/graph/1"

    path: Path
    sha256: str
    size_bytes: int
    opset: int
    op_counts: dict[str, int]
    layers: tuple[LayerCensus, ...]
    summary: GraphSummary
    warnings: tuple[str, ...]
    only: str | None = None  # the rows shown were filtered to "float" or "quantized"
    diff_against: Path | None = None
    diff: tuple[LayerDiff, ...] | None = None
    contract: ContractCheck | None = None  # the output contract: end-to-end or raw (NMS head)
    model: str = ""  # architecture and head from the metadata, e.g. "yolov10n, nms head"


class _Graph:
    """Index over an ONNX graph: producers, consumers and constant tensors."""

    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        self.model = model
        graph = model.graph
        self.nodes = list(graph.node)
        self.producer = {out: n for n in self.nodes for out in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in self.nodes:
            for inp in n.input:
                self.consumers.setdefault(inp, []).append(n)
        self.initializers = {t.name: t for t in graph.initializer}
        self._numpy = numpy_helper.to_array
        self._const_nodes = {n.output[0]: n for n in self.nodes if n.op_type == "Constant" and n.output}

    def const(self, name: str) -> Any:
        """The value of a constant tensor (initializer or Constant node), else None."""
        if name in self.initializers:
            return self._numpy(self.initializers[name])
        node = self._const_nodes.get(name)
        if node is not None:
            for attr in node.attribute:
                if attr.name == "value":
                    return self._numpy(attr.t)
        return None

    def is_const(self, name: str) -> bool:
        return name in self.initializers or name in self._const_nodes

    def attr(self, node: Any, name: str, default: Any = None) -> Any:
        from onnx import helper

        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    def upstream(self, tensor: str, ops: tuple[str, ...]) -> tuple[Any | None, list[Any]]:
        """Walk up through pass-through ops; return (first other producer or None, the ops passed)."""
        passed: list[Any] = []
        node = self.producer.get(tensor)
        while node is not None and node.op_type in ops:
            passed.append(node)
            node = self.producer.get(node.input[0]) if node.input else None
        return node, passed


def load_onnx(path: Path) -> Any:
    import onnx

    path = Path(path)
    require_onnx_file(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise YqtError(
            f"{path} is not a readable ONNX model ({type(exc).__name__}: {str(exc)[:120]})",
            "pass a complete .onnx file (re-export it if it was truncated)",
        ) from None
    if not model.graph.node:
        raise YqtError(f"{path} is not a readable ONNX model (its graph has no nodes)", "pass a complete .onnx file")
    return model


def _bits_from_clip(g: _Graph, clips: list[Any]) -> int | None:
    for clip in clips:
        lo = g.const(clip.input[1]) if len(clip.input) > 1 and clip.input[1] else g.attr(clip, "min")
        hi = g.const(clip.input[2]) if len(clip.input) > 2 and clip.input[2] else g.attr(clip, "max")
        if lo is None or hi is None:
            continue
        span = float(hi) - float(lo) + 1
        if span >= 2:
            return max(1, math.ceil(math.log2(span) - 1e-9))
    return None


def _dtype_name(array: Any) -> str:
    return str(array.dtype)


def _scale_granularity(g: _Graph, dq: Any) -> tuple[str | None, int | None]:
    scale = g.const(dq.input[1]) if len(dq.input) > 1 else None
    if scale is None:
        return None, None
    if scale.size <= 1:
        return "per_tensor", None
    return "per_channel", int(g.attr(dq, "axis", 1))  # ONNX's default axis for DequantizeLinear is 1


def _symmetric(g: _Graph, dq: Any) -> bool:
    zp = g.const(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
    return zp is None or not zp.any()


def _bits_from_values(values: Any) -> int:
    """Signed bits a symmetric int8 weight actually uses: ±7 is 4 bits even without the Clip that
    says so (a simplifier may fold it); an absmax-scaled 8-bit weight always reaches ±127."""
    top = int(abs(values.astype("int16")).max()) if values.size else 0
    return min(8, max(2, math.ceil(math.log2(2 * top + 1))))


def _quantized(dtype: str, granularity: str | None, axis: int | None, stored_float: bool) -> dict[str, Any]:
    return {
        "has_weight": True,
        "weight_quantized": True,
        "weight_dtype": dtype,
        "weight_bits": None,
        "granularity": granularity,
        "axis": axis,
        "weight_stored_float": stored_float,
    }


def _weight_census(g: _Graph, node: Any) -> dict[str, Any]:
    none = {
        "has_weight": False,
        "weight_quantized": False,
        "weight_dtype": None,
        "weight_bits": None,
        "granularity": None,
        "axis": None,
        "weight_stored_float": False,
    }
    if len(node.input) < 2:
        return none
    weight = node.input[1]
    if g.is_const(weight):
        return {**none, "has_weight": True, "weight_dtype": _dtype_name(g.const(weight))}
    producer, _ = g.upstream(weight, ("Reshape", "Transpose", "Identity", "Cast", "Unsqueeze"))
    if producer is None or producer.op_type != "DequantizeLinear":
        return none  # activation × activation (e.g. attention MatMul)
    dq = producer
    granularity, axis = _scale_granularity(g, dq)
    source, clips = g.upstream(dq.input[0], ("Clip",))
    stored_float = False
    if source is not None and source.op_type == "QuantizeLinear":
        # Q(W_fp32) → DQ: the weights live in the file as float and are fake-quantized at run time.
        if not g.is_const(source.input[0]):
            return none
        stored_float = True
        zp = g.const(source.input[2]) if len(source.input) > 2 and source.input[2] else None
        dtype = _dtype_name(zp) if zp is not None else "uint8"
        source_clips = g.upstream(source.input[0], ("Clip",))[1]
        clips = clips + source_clips
    elif g.is_const(dq.input[0]) or (source is None and clips and g.is_const(clips[-1].input[0])):
        raw = dq.input[0] if g.is_const(dq.input[0]) else clips[-1].input[0]
        values = g.const(raw)
        dtype = _dtype_name(values)
        stored_float = dtype.startswith("float")
        if not clips and dtype == "int8" and _symmetric(g, dq):
            return {**_quantized(dtype, granularity, axis, stored_float), "weight_bits": _bits_from_values(values)}
    else:
        return none
    bits = _bits_from_clip(g, clips) or _INT_DTYPES.get(dtype)
    return {**_quantized(dtype, granularity, axis, stored_float), "weight_bits": bits}


def _act_census(g: _Graph, node: Any) -> dict[str, Any]:
    none = {"act_quantized": False, "act_scale": None, "act_zero_point": None, "act_bits": None}
    producer, _ = g.upstream(node.input[0], ("Reshape", "Transpose", "Identity"))
    if producer is None or producer.op_type != "DequantizeLinear":
        return none
    source, clips = g.upstream(producer.input[0], ("Clip",))
    if source is None or source.op_type != "QuantizeLinear":
        return none
    scale = g.const(source.input[1])
    zp = g.const(source.input[2]) if len(source.input) > 2 and source.input[2] else None
    bits = _bits_from_clip(g, clips) or (_INT_DTYPES.get(_dtype_name(zp)) if zp is not None else 8)
    return {
        "act_quantized": True,
        "act_scale": float(scale.reshape(-1)[0]) if scale is not None and scale.size else None,
        "act_zero_point": int(zp.reshape(-1)[0]) if zp is not None and zp.size else None,
        "act_bits": bits,
    }


def module_path(node_name: str) -> str:
    """``/model.23/one2one_cv2.0/one2one_cv2.0.0/conv/Conv`` → ``model.23.one2one_cv2.0.0.conv``.

    TorchScript scopes name a child either relative to its parent (``conv``) or by the parent's own
    name extended (``one2one_cv2.0.0`` under ``one2one_cv2.0``); the op type comes last.
    """
    parts: list[str] = []
    for part in node_name.strip("/").split("/")[:-1]:
        if parts and part.startswith(parts[-1] + "."):
            parts[-1] = part
        else:
            parts.append(part)
    return ".".join(parts)


def module_of(node_name: str) -> str | None:
    """``/model.23/cv3.0/conv/Conv`` → ``model.23``: the Ultralytics layer a node came from."""
    match = _MODULE_RE.search(node_name)
    return match.group(1) if match else None


def _initializer_bytes(g: _Graph) -> tuple[int, int]:
    int_bytes = float_bytes = 0
    tensors = [g.const(name) for name in (*g.initializers, *g._const_nodes)]
    for arr in tensors:
        if arr is None:
            continue
        if arr.dtype.name in ("int4", "uint4"):
            int_bytes += (arr.size + 1) // 2  # packed two to a byte in the file
        elif arr.dtype.kind == "f":
            float_bytes += arr.nbytes
        elif arr.dtype.kind in "iu" and arr.size > 1 and arr.dtype.itemsize <= 2:
            int_bytes += arr.nbytes  # quantized payloads; int64 shape/axes constants are not weights
    return int_bytes, float_bytes


def _warnings(layers: tuple[LayerCensus, ...], g: _Graph) -> list[str]:
    warnings: list[str] = []
    per_tensor = [layer.name for layer in layers if layer.weight_quantized and layer.granularity == "per_tensor"]
    if per_tensor:
        warnings.append(
            f"{len(per_tensor)} layer(s) have per-tensor weight scales (e.g. {per_tensor[0]}); per-channel is usual"
        )
    stored = [layer.name for layer in layers if layer.weight_stored_float]
    if stored:
        warnings.append(
            f"{len(stored)} layer(s) store fp32 weights beside Q nodes (e.g. {stored[0]}): the file is not int8-sized"
        )
    low_head = [
        layer.name for layer in layers if layer.head and layer.weight_bits is not None and layer.weight_bits < 8
    ]
    if low_head:
        warnings.append(f"{len(low_head)} detection-head layer(s) quantized below 8 bits (e.g. {low_head[0]})")
    warnings.extend(_shared_output_quantizer(g))
    return warnings


def _shared_output_quantizer(g: _Graph) -> list[str]:
    """Box and class branches meeting in one Concat whose output feeds a single QuantizeLinear."""
    found = []
    for node in g.nodes:
        if node.op_type != "Concat" or len(node.input) < 2:
            continue
        consumers = g.consumers.get(node.output[0], [])
        if not any(c.op_type == "QuantizeLinear" for c in consumers):
            continue
        sources = {module_of(g.producer[i].name) or "" for i in node.input if i in g.producer}
        names = " ".join(g.producer[i].name for i in node.input if i in g.producer)
        if ("cv2" in names and "cv3" in names) or ("box" in names.lower() and "cls" in names.lower()):
            found.append(
                f"box and class outputs share one activation quantizer at {node.name} ({', '.join(sorted(sources))})"
            )
    return found


def inspect_graph(path: Path) -> GraphReport:
    """Census of ``path``: op counts, one entry per compute node, byte totals and warnings."""
    from yqt.runs import file_artifact

    path = Path(path)
    model = load_onnx(path)
    g = _Graph(model)
    op_counts = dict(Counter(n.op_type for n in g.nodes))
    modules = [module_of(n.name) for n in g.nodes]
    indices = [int(m.split(".")[1]) for m in modules if m]
    head_module = f"model.{max(indices)}" if indices else None
    layers = tuple(
        LayerCensus(
            name=node.name or f"{node.op_type}_{i}",
            op_type=node.op_type,
            module=module_of(node.name),
            head=head_module is not None and module_of(node.name) == head_module,
            **_weight_census(g, node),
            **_act_census(g, node),
        )
        for i, node in enumerate(g.nodes)
        if node.op_type in COMPUTE_OPS
    )
    if not layers:
        raise YqtError(
            f"{path} has no compute layers (no {', '.join(COMPUTE_OPS)} nodes) to take a census of",
            "pass a detector ONNX such as runs/<id>/onnx/*.onnx",
        )
    int_bytes, float_bytes = _initializer_bytes(g)
    weight_layers = [layer for layer in layers if layer.has_weight]
    summary = GraphSummary(
        nodes=len(g.nodes),
        compute_layers=len(layers),
        weight_layers=len(weight_layers),
        quantized_layers=sum(layer.weight_quantized for layer in layers),
        float_layers=sum(not layer.weight_quantized for layer in weight_layers),
        act_quantized_layers=sum(layer.act_quantized for layer in layers),
        quantize_linear=op_counts.get("QuantizeLinear", 0),
        dequantize_linear=op_counts.get("DequantizeLinear", 0),
        clip=op_counts.get("Clip", 0),
        int_initializer_bytes=int_bytes,
        float_initializer_bytes=float_bytes,
        head_layers=sum(layer.head for layer in layers),
        head_quantized_layers=sum(layer.head and layer.weight_quantized for layer in layers),
    )
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    art = file_artifact(path)
    contract = output_contract(model)
    return GraphReport(
        path=path,
        sha256=art.sha256,
        size_bytes=art.size_bytes,
        opset=int(opset),
        op_counts=op_counts,
        layers=layers,
        summary=summary,
        warnings=tuple(_warnings(layers, g)),
        contract=contract,
        model=model_label({p.key: p.value for p in model.metadata_props}, contract.kind),
    )


def output_contract(model: Any) -> ContractCheck:
    """The file's output contract, read from its declared outputs."""
    dims = [tuple(d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim) for o in model.graph.output]
    return contract_of_outputs(dims)


def _layer_brief(layer: LayerCensus | None) -> str:
    if layer is None:
        return "absent"
    if not layer.has_weight:
        return "no weight"
    w = f"w{layer.weight_bits} {layer.granularity}" if layer.weight_quantized else f"float ({layer.weight_dtype})"
    a = f", a{layer.act_bits}" if layer.act_quantized else ""
    return w + a


def diff_reports(a: GraphReport, b: GraphReport) -> tuple[LayerDiff, ...]:
    """Per-layer differences between two censuses, matched by node name."""
    left = {layer.name: layer for layer in a.layers}
    right = {layer.name: layer for layer in b.layers}
    diffs = []
    for name in list(dict.fromkeys([*left, *right])):
        before, after = _layer_brief(left.get(name)), _layer_brief(right.get(name))
        if before != after:
            change = "added" if name not in left else "removed" if name not in right else "changed"
            diffs.append(LayerDiff(name=name, change=change, before=before, after=after))
    return tuple(diffs)


ONLY_CHOICES = ("float", "quantized")


def filter_layers(report: GraphReport, only: str | None) -> GraphReport:
    """Keep only float or only quantized weight layers in ``layers``; counts and summary stay whole."""
    if only is None:
        return report
    if only not in ONLY_CHOICES:
        raise YqtError(f"unknown --only {only!r}", "use --only float or --only quantized")
    want_quantized = only == "quantized"
    rows = tuple(layer for layer in report.layers if layer.has_weight and layer.weight_quantized == want_quantized)
    return replace(report, layers=rows, only=only)


def inspect_and_record(path: Path, only: str | None = None, diff: Path | None = None, run: Any = None) -> GraphReport:
    """The ``inspect-graph`` command's work: census, optional diff, optional record in a run."""
    from yqt.runs import atomic_write_json, maybe_step, record_artifact

    if only is not None and only not in ONLY_CHOICES:
        raise YqtError(f"unknown --only {only!r}", "use --only float or --only quantized")
    report = inspect_graph(path)
    if diff is not None:
        other = inspect_graph(diff)
        report = replace(report, diff_against=Path(diff), diff=diff_reports(other, report))
    if run is not None:  # the whole census is saved; --only filters what is shown
        stem = Path(path).stem
        with maybe_step(run, f"inspect-{stem}", {"model": str(path), "only": only, "diff": diff}) as step:
            out = atomic_write_json(run.root / "graph" / f"{stem}.json", report)
            record_artifact(step, out, "graph-census")
            if step is not None:
                step.summary.update(quantized_layers=report.summary.quantized_layers, warnings=list(report.warnings))
    return filter_layers(report, only)
