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
from yqt.records import Simplifier, StorageReport


def opset_of(model: Any) -> int:
    return int(next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0))


def _clip_bounds(model: Any, clip: Any) -> tuple[int, int] | None:
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    if len(clip.input) < 3 or clip.input[1] not in inits or clip.input[2] not in inits:
        return None
    return int(numpy_helper.to_array(inits[clip.input[1]])), int(numpy_helper.to_array(inits[clip.input[2]]))


def pack_int4(model: Any) -> int:
    """Rewrite int8 → Clip(±7 or narrower) → DequantizeLinear as INT4 → DequantizeLinear. Returns how many."""
    import ml_dtypes
    from onnx import numpy_helper

    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: t for t in model.graph.initializer}
    dropped: set[str] = set()
    packed = 0
    for dq in [n for n in model.graph.node if n.op_type == "DequantizeLinear"]:
        clip = producer.get(dq.input[0])
        if clip is None or clip.op_type != "Clip" or clip.input[0] not in inits:
            continue
        bounds = _clip_bounds(model, clip)
        if bounds is None or bounds[0] < -8 or bounds[1] > 7:
            continue
        raw = numpy_helper.to_array(inits[clip.input[0]])
        values = np.clip(raw.astype(np.int16), *bounds).astype(ml_dtypes.int4)
        name = f"{clip.input[0]}_int4"
        model.graph.initializer.append(numpy_helper.from_array(values, name))
        zero_name = f"{name}_zero"
        scale = numpy_helper.to_array(inits[dq.input[1]])
        model.graph.initializer.append(numpy_helper.from_array(np.zeros(scale.shape, dtype=ml_dtypes.int4), zero_name))
        dq.input[:] = [name, dq.input[1], zero_name]
        dropped.add(clip.name)
        packed += 1
    keep = [n for n in model.graph.node if n.name not in dropped]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    used = {i for n in model.graph.node for i in n.input}
    live = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(live)
    return packed


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
    return StorageReport(
        format="int4", opset=opset, note=f"{packed} weight(s) packed as INT4 initializers (opset {opset})"
    )


def simplify(src: Path, dst: Path, simplifier: Simplifier) -> None:
    """The ``-opt`` copy. The gate then checks that quantization survived it."""
    import onnx

    simplifier = Simplifier(simplifier)
    model = onnx.load(str(src))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if simplifier is Simplifier.ONNXSIM:
            try:
                import onnxsim
            except ImportError:
                raise YqtError("--simplifier onnxsim needs the onnxsim package", "pip install onnxsim") from None
            simplified, ok = onnxsim.simplify(model)
            if not ok:
                raise RuntimeError("onnxsim could not validate its simplified model")
        else:
            import onnxslim

            simplified = onnxslim.slim(model)
    for prop in model.metadata_props:  # simplifiers may drop the provenance metadata
        if prop.key not in {p.key for p in simplified.metadata_props}:
            simplified.metadata_props.add(key=prop.key, value=prop.value)
    onnx.save(simplified, str(dst))
