"""INT8 activations, placed where ONNX Runtime turns them into int8 kernels.

Why ORT's ``quantize_static`` and not Brevitas activation quantizers: ORT fuses DQ→Conv→Q into
``QLinearConv`` only when the conv *output* is quantized and the SiLU/Add/Concat/Resize/MaxPool
between convs carry Q/DQ too. ``quantize_static`` places exactly that layout (its own op
registry knows which ops ORT fuses), while Brevitas places quantizers at layer inputs, the layout
TensorRT wants and ORT runs slower than float. yqt drives it:

- **What stays float** is found in the graph, not hand-listed: the head's *final* convs are the
  convs with no other conv below them but the DFL; everything downstream of them (DFL, decode,
  sigmoid, TopK, gather) is post-processing and is excluded. Quantizing it destroys detections.
- **Ranges** come from yqt's own calibration pass: the 99.999th percentile of |x| over every value
  of every calibration image (a 2048-bin histogram, as ORT's Percentile method), clipped to the
  observed min/max. Measured for 64 images: about 30 s, where ORT's own Percentile calibrator took
  115 s. Every float tensor is calibrated, float Constants and graph outputs included, and the
  written file is read back: every activation scale must be one of these ranges, not ORT's own
  min/max of the one image its quantizer runs (the gate's ``activation_ranges`` check).
- **SiLU inputs** are floored at -8: SiLU is flat below it (|SiLU(x)| < 0.003), yet a conv's long
  negative tail (down to -69 in yolov10n's stem) would otherwise double the int8 step of the
  values that matter. Measured on 145 held-out
  train2017 images: mAP50-95 0.4071 → 0.4086 (float 0.4127).
- **Attention probabilities** (Softmax outputs, and their transposes) keep their whole range [0, 1]:
  a percentile of them lands where almost all of them are, far below the few large ones that
  matter (yolov10n's PSA: 0.33 at the 99.999th, so every probability above a third was clipped).
  Measured: dev first 100 ids 0.4466 → 0.4493, 126 held-out coco128-yolo images 0.4429 → 0.4441.
- **Weights** are replaced by yqt's own integers and scales (Brevitas, GPTQ for 4 bits), and each
  int32 bias is re-derived from them, so w8a16 and w8a8 share identical weights.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yqt.quant.onnx_edit import consumers_by_tensor, drop_unused_initializers, replace_nodes, set_axis
from yqt.records import ActivationReport, Layout

log = logging.getLogger(__name__)

HIST_BINS = 2048
SILU_FLOOR = -8.0
ProgressFn = Callable[[int, int], None]
# Float Constant outputs are calibrated too: ORT quantizes one that feeds a quantized op (yolov10n's
# attention scale), from its own min/max over one image unless yqt gives the range.
_NON_ACTIVATION_OPS = {"Shape", "Gather", "ConstantOfShape"}


@dataclass(frozen=True)
class IntWeights:
    """One layer's weights as yqt quantized them."""

    ints: np.ndarray  # int8 [O, I, kh, kw], values within ±(2^(bits-1) - 1)
    scale: np.ndarray  # float32 [O]
    bits: int
    bias: np.ndarray | None  # float32 [O]


# ------------------------------------------------------------------------------------ what stays float


def _downstream(starts: Iterable[Any], consumers: Mapping[str, list[Any]]) -> list[Any]:
    """Every node reachable from the outputs of ``starts`` (the starts themselves excluded)."""
    seen: dict[int, Any] = {}
    stack = list(starts)
    while stack:
        node = stack.pop()
        for out in node.output:
            for c in consumers.get(out, []):
                if id(c) not in seen:
                    seen[id(c)] = c
                    stack.append(c)
    return list(seen.values())


def is_dfl(node: Any, producer: Mapping[str, Any]) -> bool:
    """The DFL conv, by structure: a Conv reading a Softmax (through Reshape/Transpose)."""
    if node.op_type != "Conv":
        return False
    source = producer.get(node.input[0])
    while source is not None and source.op_type in ("Reshape", "Transpose"):
        source = producer.get(source.input[0])
    return source is not None and source.op_type == "Softmax"


def name_unnamed_nodes(model: Any) -> int:
    """ORT's quantizer excludes nodes by name: give every unnamed node a unique one. Returns how many."""
    taken = {n.name for n in model.graph.node}
    named = 0
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"yqt_{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
            named += 1
    return named


def post_processing(model: Any) -> tuple[set[str], list[str]]:
    """(nodes after the head's final convs, the final convs' names), read from the graph.

    The final convs are the convs with no conv below them but the DFL; nodes must be named.
    """
    nodes = list(model.graph.node)
    consumers = consumers_by_tensor(nodes)
    producer = {o: n for n in nodes for o in n.output}
    finals = []
    for conv in (n for n in nodes if n.op_type == "Conv" and not is_dfl(n, producer)):
        below = _downstream([conv], consumers)
        if not any(n.op_type == "Conv" and not is_dfl(n, producer) for n in below):
            finals.append(conv)
    return {n.name for n in _downstream(finals, consumers)}, [c.name for c in finals]


def _float_tensors(model: Any, skip: set[str]) -> list[str]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    floats = {v.name for v in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
              if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}  # fmt: skip
    names = [i.name for i in model.graph.input if i.name in floats]
    for node in model.graph.node:
        if node.name in skip or node.op_type in _NON_ACTIVATION_OPS:
            continue
        names.extend(o for o in node.output if o in floats)
    return list(dict.fromkeys(names))


# ------------------------------------------------------------------------------------ calibration


def _probe_session(model: Any, tensors: Sequence[str]) -> tuple[Any, list[str]]:
    """A session on ``model`` that also returns every tensor in ``tensors``, unoptimised."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    for name in tensors:
        if name not in have:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session, [o.name for o in session.get_outputs()]


def collect_ranges(
    model: Any,
    tensors: Sequence[str],
    arrays: Sequence[np.ndarray],
    percentile: float,
    progress: ProgressFn | None = None,
) -> dict[str, tuple[float, float]]:
    """Per tensor: [max(min, -t), min(max, t)], t the ``percentile`` of |x| over all images.

    Two passes keep memory flat: the first finds each tensor's min, max and max |x|, the second
    fills a fixed 2048-bin histogram of |x| per tensor.
    """
    session, names = _probe_session(model, tensors)
    input_name = session.get_inputs()[0].name
    wanted = set(tensors)
    lo = {t: np.inf for t in tensors}
    hi = {t: -np.inf for t in tensors}
    total = 2 * len(arrays)
    for i, x in enumerate(arrays, 1):
        for name, out in zip(names, session.run(None, {input_name: x}), strict=True):
            if name in wanted:
                lo[name] = min(lo[name], float(out.min()))
                hi[name] = max(hi[name], float(out.max()))
        if progress is not None:
            progress(i, total)
    top = {t: max(abs(lo[t]), abs(hi[t])) for t in tensors}
    hists = {t: np.zeros(HIST_BINS, dtype=np.int64) for t in tensors}
    for i, x in enumerate(arrays, 1):
        for name, out in zip(names, session.run(None, {input_name: x}), strict=True):
            if name in wanted and top[name] > 0:
                idx = np.minimum((np.abs(out.ravel()) * (HIST_BINS / top[name])).astype(np.int64), HIST_BINS - 1)
                hists[name] += np.bincount(idx, minlength=HIST_BINS)
        if progress is not None:
            progress(len(arrays) + i, total)
    ranges = {}
    for t in tensors:
        if top[t] == 0:
            ranges[t] = (0.0, 0.0)
            continue
        edge = _percentile_edge(hists[t], top[t], percentile)
        ranges[t] = (max(lo[t], -edge), min(hi[t], edge))
    return ranges


def _percentile_edge(hist: np.ndarray, top: float, percentile: float) -> float:
    cdf = np.cumsum(hist) / hist.sum()
    return (int(np.searchsorted(cdf, percentile / 100.0)) + 1) * top / HIST_BINS


def silu_inputs(model: Any) -> set[str]:
    """Tensors read only by a SiLU, exported as ``Mul(x, Sigmoid(x))``."""
    consumers = consumers_by_tensor(list(model.graph.node))
    found = set()
    for tensor, users in consumers.items():
        sigmoid = [u for u in users if u.op_type == "Sigmoid"]
        muls = [u for u in users if u.op_type == "Mul"]
        if len(users) == 2 and len(sigmoid) == 1 and len(muls) == 1 and sigmoid[0].output[0] in muls[0].input:
            found.add(tensor)
    return found


def floor_silu_inputs(model: Any, ranges: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    floored = silu_inputs(model)
    return {t: ((max(lo, SILU_FLOOR), hi) if t in floored else (lo, hi)) for t, (lo, hi) in ranges.items()}


_MOVES = ("Transpose", "Reshape")  # ops that move a tensor's values without changing them


def probability_tensors(model: Any) -> set[str]:
    """Softmax outputs, and what Transpose/Reshape make of them: attention probabilities in [0, 1]."""
    consumers = consumers_by_tensor(list(model.graph.node))
    found: set[str] = set()
    stack = [n.output[0] for n in model.graph.node if n.op_type == "Softmax"]
    while stack:
        tensor = stack.pop()
        found.add(tensor)
        stack += [c.output[0] for c in consumers.get(tensor, []) if c.op_type in _MOVES and c.output[0] not in found]
    return found


def keep_probabilities_whole(model: Any, ranges: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """A Softmax output keeps its whole range [0, 1]. A percentile of attention probabilities lands
    far below the few that matter: yolov10n's PSA attention measured [0, 0.33] at the 99.999th, so
    every probability above a third was clipped to it (ORT's own quantizer fixes Softmax at [0, 1])."""
    probs = probability_tensors(model)
    return {t: ((0.0, 1.0) if t in probs else r) for t, r in ranges.items()}


# ------------------------------------------------------------------------------------ quantize


@contextlib.contextmanager
def _root_logging_left_alone() -> Iterator[None]:
    """ORT's quantizer calls ``logging.warning``, which configures the root logger with a stderr
    handler when it has none; every later yqt log line would then reach the terminal."""
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    try:
        yield
    finally:
        root.removeHandler(guard)


class _OneImage:
    """ORT needs a data reader even when every range is given; one image keeps its pass short."""

    def __init__(self, x: np.ndarray, input_name: str) -> None:
        self._items = iter([{input_name: x}])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._items, None)


def quantize_activations(
    float_onnx: Path,
    out_path: Path,
    arrays: Sequence[np.ndarray],
    weights: Mapping[str, IntWeights],
    layout: Layout,
    percentile: float,
    progress: ProgressFn | None = None,
) -> ActivationReport:
    """QDQ-quantize ``float_onnx`` into ``out_path``; ``weights`` maps Conv node name → yqt's integers."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    t0 = time.perf_counter()
    layout = Layout(layout)
    model = onnx.load(str(float_onnx))
    if name_unnamed_nodes(model):
        float_onnx = Path(out_path).with_name("named-float.onnx")
        onnx.save(model, str(float_onnx))
    post, finals = post_processing(model)
    float_convs = {n.name for n in model.graph.node if n.op_type == "Conv" and n.name not in weights}
    excluded = sorted(post | float_convs)
    tensors = _float_tensors(model, post)
    ranges = floor_silu_inputs(model, collect_ranges(model, tensors, arrays, percentile, progress))
    ranges = keep_probabilities_whole(model, ranges)
    overrides = {t: [{"rmin": np.float32(a), "rmax": np.float32(b)}] for t, (a, b) in ranges.items()}
    input_name = model.graph.input[0].name
    # TensorRT's explicit quantization takes symmetric signed int8 (zero point 0) only; ORT's uint8 kernels
    # want the asymmetric uint8 that uses the whole range of a mostly positive activation.
    symmetric = activations_symmetric(layout)
    with tempfile.TemporaryDirectory(prefix="yqt-qdq-") as work, _root_logging_left_alone():
        staged = Path(work) / "qdq.onnx"
        quantize_static(
            str(float_onnx), str(staged), _OneImage(arrays[0], input_name),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=["Conv"] if conv_inputs_only(layout) else None,
            nodes_to_exclude=excluded,
            extra_options={"TensorQuantOverrides": overrides, "ActivationSymmetric": symmetric,
                           "WeightSymmetric": True},
        )  # fmt: skip
        qdq = onnx.load(str(staged))
    if conv_inputs_only(layout):
        keep_conv_input_qdq_only(qdq)
    replace_weights(qdq, weights)
    onnx.save(qdq, str(out_path))
    checked, stray = scales_not_from(onnx.load(str(out_path)), ranges, symmetric)
    calibration_s = time.perf_counter() - t0
    return ActivationReport(
        layout=layout.value,
        method=f"percentile {percentile} of |x|, 2048-bin histogram, clipped to observed min/max",
        images=len(arrays),
        quantized_tensors=len(ranges),
        excluded_nodes=tuple(excluded),
        excluded_reason=(
            f"post-processing after the {len(finals)} final head convs ({len(post)} nodes: DFL, decode, "
            f"sigmoid, TopK, gather), plus {len(float_convs)} conv(s) kept float"
        ),
        int8_convs_fused=count_fused_int8_convs(out_path),
        int8_convs_expected=len(weights) if layout is Layout.ORT else None,
        calibration_s=calibration_s,
        scales_checked=checked,
        scales_not_from_calibration=stray,
    )


def conv_inputs_only(layout: Layout) -> bool:
    """Whether a layout puts activation Q/DQ on conv inputs only (TensorRT's and OpenVINO's)."""
    return Layout(layout) in (Layout.TENSORRT, Layout.OPENVINO)


def activations_symmetric(layout: Layout) -> bool:
    """Whether a layout's activations are symmetric signed int8 (zero point 0): TensorRT's."""
    return Layout(layout) is Layout.TENSORRT


def scales_not_from(
    model: Any, ranges: Mapping[str, tuple[float, float]], symmetric: bool = False
) -> tuple[int, tuple[str, ...]]:
    """(activation QuantizeLinear nodes read, the tensors among them whose scale and zero point are not
    those of any range in ``ranges``). ORT gives a tensor it ties to another (a Slice output, its input)
    that tensor's parameters, so each pair is looked up among all of yqt's, computed as ORT computes them
    (uint8 asymmetric, or int8 symmetric for ``symmetric``)."""
    from onnx import TensorProto, numpy_helper
    from onnxruntime.quantization.quant_utils import compute_scale_zp, get_qmin_qmax_for_qType

    qtype = TensorProto.INT8 if symmetric else TensorProto.UINT8
    qmin, qmax = get_qmin_qmax_for_qType(qtype, symmetric=symmetric)
    ours = set()
    for lo, hi in ranges.values():
        zero, scale = compute_scale_zp(np.float32(lo), np.float32(hi), qmin, qmax, symmetric=symmetric)
        ours.add((float(np.float32(scale)), int(zero)))
    inits = {t.name: t for t in model.graph.initializer}
    qs = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits]
    stray = []
    for q in qs:
        scale, zero = (numpy_helper.to_array(inits[name]) for name in q.input[1:3])
        if (float(np.float32(scale)), int(zero)) not in ours:
            stray.append(q.input[0])
    return len(qs), tuple(sorted(set(stray)))


def keep_conv_input_qdq_only(model: Any) -> int:
    """Drop every activation Q→DQ pair that feeds no conv: the conv-inputs-only layout.

    ORT's QDQ quantizer also quantizes each quantized conv's output; TensorRT's explicit mode wants
    Q/DQ only where a conv reads an activation. Returns how many Q and DQ nodes were removed.
    """
    nodes = list(model.graph.node)
    consumers = consumers_by_tensor(nodes)
    inits = {t.name for t in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    drop: set[int] = set()
    for q in (n for n in nodes if n.op_type == "QuantizeLinear" and n.input[0] not in inits):
        users = consumers.get(q.output[0], [])
        dqs = [d for d in users if d.op_type == "DequantizeLinear"]
        readers = [r for d in dqs for r in consumers.get(d.output[0], [])]
        if len(dqs) != len(users) or any(r.op_type == "Conv" for r in readers):
            continue
        if any(d.output[0] in outputs for d in dqs):
            continue  # a graph output keeps its Q/DQ rather than being renamed
        for d in dqs:
            for r in consumers.get(d.output[0], []):
                r.input[:] = [q.input[0] if i == d.output[0] else i for i in r.input]
            drop.add(id(d))
        drop.add(id(q))
    replace_nodes(model, drop=drop)
    return len(drop)


# ------------------------------------------------------------------------------------ weights


def _set_initializer(model: Any, name: str, array: np.ndarray) -> str:
    from onnx import numpy_helper

    model.graph.initializer.append(numpy_helper.from_array(array, name))
    return name


def replace_weights(model: Any, weights: Mapping[str, IntWeights]) -> None:
    """Swap ORT's weight integers and scales for yqt's, re-derive int32 biases, mark bits with a Clip.

    A weight below 8 bits stays in int8 (ORT's int8 kernels take int8 weights) behind a Clip to
    ±(2^(bits-1)-1): the Clip is what tells a reader the bit width, and ORT folds it at load.
    """
    import onnx

    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: t for t in model.graph.initializer}
    stems: set[str] = set()
    rewritten: set[int] = set()
    clips: dict[int, list[Any]] = {}
    for conv in [n for n in model.graph.node if n.op_type == "Conv" and n.name in weights]:
        w = weights[conv.name]
        dq = producer.get(conv.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or id(dq) in rewritten:
            continue  # left float by ORT, or a weight shared with a conv already done: the gate reports it
        rewritten.add(id(dq))
        stem = "yqt." + (conv.name.strip("/").replace("/", ".") or "conv")
        while stem in stems:
            stem += "_"
        stems.add(stem)
        q_name = _set_initializer(model, f"{stem}.w_int{w.bits}", w.ints.astype(np.int8))
        if w.bits < 8:
            top = 2 ** (w.bits - 1) - 1
            lo = _set_initializer(model, f"{stem}.w_min", np.array(-top, dtype=np.int8))
            hi = _set_initializer(model, f"{stem}.w_max", np.array(top, dtype=np.int8))
            clipped = f"{stem}.w_int{w.bits}_clip"
            clips[id(dq)] = [onnx.helper.make_node("Clip", [q_name, lo, hi], [clipped], name=f"{stem}/w_clip")]
            q_name = clipped
        scale = _set_initializer(model, f"{stem}.w_scale", w.scale.astype(np.float32))
        zero = _set_initializer(model, f"{stem}.w_zero", np.zeros_like(w.scale, dtype=np.int8))
        dq.input[:] = [q_name, scale, zero]
        set_axis(dq, 0)
        if len(conv.input) > 2 and conv.input[2] and w.bias is not None:
            _replace_bias(model, conv, w, producer, inits, stem)
    replace_nodes(model, before=clips)
    drop_unused_initializers(model)


def _replace_bias(model: Any, conv: Any, w: IntWeights, producer: Any, inits: Any, stem: str) -> None:
    from onnx import numpy_helper

    bias_dq = producer.get(conv.input[2])
    x_dq = producer.get(conv.input[0])
    if bias_dq is None or bias_dq.op_type != "DequantizeLinear" or x_dq is None or x_dq.op_type != "DequantizeLinear":
        return
    x_scale = float(numpy_helper.to_array(inits[x_dq.input[1]]).reshape(-1)[0])
    b_scale = (x_scale * w.scale).astype(np.float32)
    b_int = np.clip(np.round(w.bias / np.where(b_scale == 0, 1, b_scale)), -(2**31), 2**31 - 1).astype(np.int32)
    q = _set_initializer(model, f"{stem}.b_int32", b_int)
    s = _set_initializer(model, f"{stem}.b_scale", b_scale)
    z = _set_initializer(model, f"{stem}.b_zero", np.zeros_like(b_int))
    bias_dq.input[:] = [q, s, z]
    set_axis(bias_dq, 0)


# ------------------------------------------------------------------------------------ what ORT made of it


def count_fused_int8_convs(path: Path) -> int:
    """How many convs ORT CPU runs as int8 kernels, read from the graph it optimises at load."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="yqt-ortopt-") as work:
        optimized = Path(work) / "optimized.onnx"
        options = ort.SessionOptions()
        # EXTENDED applies the QDQ fusions; ALL would add NCHWc layout rewrites specific to this CPU.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(optimized)
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(str(optimized), load_external_data=False).graph
    return sum(1 for n in graph.node if n.op_type in ("QLinearConv", "ConvInteger"))
