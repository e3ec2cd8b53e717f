"""How quantized weights are stored on disk, and the simplified ``-opt`` copy.

Brevitas writes a 4-bit weight as an int8 initializer behind a ``Clip`` to ±7: correct, but no
smaller than 8 bits. From opset 21 ONNX has INT4 tensors, which ONNX Runtime dequantizes per axis,
so yqt repacks each such weight as a packed INT4 initializer and drops the Clip: half the bytes.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from yqt.errors import YqtError
from yqt.quant.modes import INT4_OPSET
from yqt.quant.onnx_edit import consumers_by_tensor, drop_unused_initializers, replace_nodes
from yqt.records import Simplifier, StorageReport


def _clip_bounds(clip: Any, inits: dict[str, Any]) -> tuple[int, int] | None:
    from onnx import numpy_helper

    if len(clip.input) < 3 or clip.input[1] not in inits or clip.input[2] not in inits:
        return None
    return int(numpy_helper.to_array(inits[clip.input[1]])), int(numpy_helper.to_array(inits[clip.input[2]]))


def _zero_point_is_zero(dq: Any, inits: dict[str, Any]) -> bool:
    from onnx import numpy_helper

    if len(dq.input) < 3 or not dq.input[2]:
        return True
    return dq.input[2] in inits and not numpy_helper.to_array(inits[dq.input[2]]).any()


def pack_int4(model: Any) -> int:
    """Rewrite int8 → Clip(within ±7) → DequantizeLinear as INT4 → DequantizeLinear. Returns how many.

    Only a Clip on an int8 initializer whose every reader is a symmetric DequantizeLinear is
    rewritten (once, however many readers); anything else is left as it is.
    """
    import ml_dtypes
    from onnx import numpy_helper

    nodes = list(model.graph.node)
    consumers = consumers_by_tensor(nodes)
    inits = {t.name: t for t in model.graph.initializer}
    dropped: set[int] = set()
    for clip in (n for n in nodes if n.op_type == "Clip" and n.input[0] in inits):
        bounds = _clip_bounds(clip, inits)
        readers = consumers.get(clip.output[0], [])
        raw = numpy_helper.to_array(inits[clip.input[0]])
        if (
            bounds is None or bounds[0] < -8 or bounds[1] > 7 or raw.dtype != np.int8 or not readers
            or any(r.op_type != "DequantizeLinear" or not _zero_point_is_zero(r, inits) for r in readers)
        ):  # fmt: skip
            continue
        name = f"{clip.input[0]}_int4"
        values = np.clip(raw.astype(np.int16), *bounds).astype(ml_dtypes.int4)
        model.graph.initializer.append(numpy_helper.from_array(values, name))
        for i, dq in enumerate(readers):
            scale = numpy_helper.to_array(inits[dq.input[1]])
            zero = numpy_helper.from_array(np.zeros(scale.shape, dtype=ml_dtypes.int4), f"{name}_zero{i}")
            model.graph.initializer.append(zero)
            dq.input[:] = [name, dq.input[1], zero.name]
        dropped.add(id(clip))
    replace_nodes(model, drop=dropped)
    drop_unused_initializers(model)
    return len(dropped)


def store_low_bit(path: Path, opset: int, weight_bits: int) -> StorageReport:
    """Pack 4-bit weights as INT4 when the opset allows it; otherwise say why they stay int8 + Clip."""
    import onnx

    if weight_bits >= 8:
        return StorageReport(format="int8", opset=opset, note="8-bit weights: int8 initializers")
    if opset < INT4_OPSET:
        return StorageReport(
            format="int8",
            opset=opset,
            note=f"--opset {opset} < {INT4_OPSET}: 4-bit weights stay int8 + Clip (no smaller than 8-bit); "
            f"use --opset {INT4_OPSET} for packed INT4",
        )
    model = onnx.load(str(path))
    packed = pack_int4(model)
    onnx.save(model, str(path))
    if not packed:
        return StorageReport(format="int8", opset=opset, note="no 4-bit weight found to pack: int8 + Clip")
    return StorageReport(
        format="int4", opset=opset, note=f"{packed} weight(s) packed as INT4 initializers (opset {opset})"
    )


def require_simplifier(simplifier: Simplifier) -> None:
    """Fail before minutes of GPTQ, not after, when the chosen simplifier is not installed."""
    import importlib.util

    if Simplifier(simplifier) is Simplifier.ONNXSIM and importlib.util.find_spec("onnxsim") is None:
        raise YqtError("--simplifier onnxsim needs the onnxsim package", "pip install 'yqt[onnxsim]' (or onnxsim)")


def simplify(src: Path, dst: Path, simplifier: Simplifier) -> None:
    """The ``-opt`` copy. The gate then checks that quantization survived it."""
    import onnx

    simplifier = Simplifier(simplifier)
    model = onnx.load(str(src))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if simplifier is Simplifier.ONNXSIM:
            require_simplifier(simplifier)
            import onnxsim

            try:
                simplified, ok = onnxsim.simplify(model)
            except Exception as exc:
                raise YqtError(f"onnxsim failed on {src.name}: {exc}", "use --simplifier onnxslim") from None
            if not ok:
                raise YqtError(f"onnxsim could not validate its copy of {src.name}", "use --simplifier onnxslim")
        else:
            import onnxslim

            simplified = onnxslim.slim(model)
    for prop in model.metadata_props:  # simplifiers may drop the provenance metadata
        if prop.key not in {p.key for p in simplified.metadata_props}:
            simplified.metadata_props.add(key=prop.key, value=prop.value)
    onnx.save(simplified, str(dst))
