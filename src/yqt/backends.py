"""Which runtime runs a model, behind one call: ONNX Runtime (:mod:`yqt.runtime`) or OpenVINO
(:mod:`yqt.runtime_openvino`, the ``yqt[openvino]`` extra).

:func:`open_model` returns a session with the ``InferenceSession`` surface smoke, eval and bench use,
the provider report, and a :class:`~yqt.records.RuntimeInfo` that says what actually ran: the
runtime, its version, the device, the precision and how many convolutions ran as int8 kernels.
"""

from __future__ import annotations

import collections
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from yqt.errors import YqtError
from yqt.filetypes import OPENVINO_IR, describe, require_onnx_file
from yqt.records import KernelCensus, ProviderReport, Runtime, RuntimeInfo

# ORT op types that are convolutions after its graph optimizations, and those that run int8 kernels.
_ORT_CONVS = {"Conv", "FusedConv", "NhwcFusedConv", "ConvTranspose", "QLinearConv", "ConvInteger", "NhwcConv"}
_ORT_INT8_CONVS = {"QLinearConv", "ConvInteger"}


def parse_runtime(value: str | Runtime) -> Runtime:
    """``"openvino"`` → :attr:`Runtime.OPENVINO`; anything unknown is one line naming the choices."""
    if isinstance(value, Runtime):
        return value
    try:
        return Runtime(str(value).strip().lower())
    except ValueError:
        allowed = " or ".join(r.value for r in Runtime)
        raise YqtError(f"unknown --runtime {value!r}", f"use {allowed}") from None


def parse_runtimes(spec: str) -> tuple[Runtime, ...]:
    """``"ort,openvino"`` → both, in order, without repeats."""
    names = [p for p in (s.strip() for s in spec.split(",")) if p]
    if not names:
        raise YqtError("--runtime names no runtime", "use ort, openvino or ort,openvino")
    return tuple(dict.fromkeys(parse_runtime(n) for n in names))


def check_threads(threads: int | None) -> int | None:
    if threads is not None and threads < 1:
        raise YqtError(f"--threads must be at least 1, got {threads}", "pass e.g. --threads 2, or leave it out")
    return threads


def require_model_file(path: Path, runtime: Runtime) -> None:
    """ORT takes ONNX only; OpenVINO takes ONNX or an IR .xml. Anything else is named in one line."""
    path = Path(path)
    if runtime is Runtime.ORT:
        require_onnx_file(path)
        return
    from yqt.runtime_openvino import import_openvino

    import_openvino()  # without the extra, that is the problem to name, whatever the file
    if not path.is_file():
        raise YqtError(f"model not found: {path}", "pass an .onnx file or an OpenVINO IR .xml")
    with open(path, "rb") as fh:
        what = describe(fh.read(512))
    if what not in (None, OPENVINO_IR):
        raise YqtError(f"{path.name} is {what}, not a model", "pass an .onnx file or an OpenVINO IR .xml")


def _input_precision(session: Any) -> str:
    return "f16" if "float16" in session.get_inputs()[0].type else "f32"


def ort_census(onnx_path: Path, threads: int | None = None) -> KernelCensus:
    """Convolutions in the graph ORT's CPU provider runs, after its fusions (QDQ → QLinearConv)."""
    import onnx

    from yqt.runtime import open_session

    with tempfile.TemporaryDirectory(prefix="yqt-ort-opt-") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        open_session(onnx_path, ("cpu",), threads=threads, optimized_model=optimized)
        graph = onnx.load(str(optimized), load_external_data=False).graph
    counts: collections.Counter[str] = collections.Counter()
    for node in graph.node:
        if node.op_type in _ORT_CONVS:
            counts["int8" if node.op_type in _ORT_INT8_CONVS else "float"] += 1
    return KernelCensus(
        convs=sum(counts.values()),
        int8_convs=counts.get("int8", 0),
        precisions=dict(sorted(counts.items())),
        source="ORT CPU optimized graph (QLinearConv/ConvInteger are int8 kernels)",
    )


def open_model(
    path: Path,
    runtime: Runtime = Runtime.ORT,
    providers: Sequence[str] = ("cuda", "cpu"),
    *,
    spin: bool = True,
    threads: int | None = None,
    census: bool = True,
) -> tuple[Any, ProviderReport, RuntimeInfo]:
    """Open ``path`` on ``runtime``: the session, which providers ran, and what the runtime ran it as.

    ``census`` reads how many convolutions run as int8 kernels (on ORT it builds the session once
    more, to save its optimized graph; only on the CPU provider, whose fusions the census reads)."""
    path = Path(path)
    check_threads(threads)
    require_model_file(path, runtime)
    if runtime is Runtime.OPENVINO:
        from yqt.runtime_openvino import open_openvino

        return open_openvino(path, threads)
    import onnxruntime

    from yqt.runtime import open_session

    session, report = open_session(path, providers, spin=spin, threads=threads)
    on_cpu = report.used[:1] == ("CPUExecutionProvider",)
    info = RuntimeInfo(
        runtime=Runtime.ORT,
        version=onnxruntime.__version__,
        device=report.used[0] if report.used else "?",
        precision=_input_precision(session),
        threads=threads,
        kernels=ort_census(path, threads) if census and on_cpu else None,
    )
    return session, report, info


def run_name(path: Path, runtime: Runtime) -> str:
    """The name a model's smoke and eval take in a run: its stem on ORT, ``<stem>-openvino`` on
    OpenVINO, so the two evaluations of one file sit side by side in compare."""
    stem = Path(path).stem
    return stem if runtime is Runtime.ORT else f"{stem}-{runtime.value}"


def runtime_label(info: RuntimeInfo | None) -> str:
    """``OpenVINO 2026.4.1 CPU bf16, 83/83 int8 convs`` for tables and summaries."""
    if info is None:
        return "ONNX Runtime"
    name = "OpenVINO" if info.runtime is Runtime.OPENVINO else "ONNX Runtime"
    device = info.device.removesuffix("ExecutionProvider")
    text = f"{name} {info.version} {device} {info.precision}"
    if info.threads is not None:
        text += f", {info.threads} threads"
    if info.kernels is not None and info.kernels.int8_convs:
        text += f", {info.kernels.int8_convs}/{info.kernels.convs} convs int8"
    return text
