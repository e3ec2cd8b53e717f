"""OpenVINO behind the session surface yqt uses from ONNX Runtime.

:class:`OpenVinoSession` answers ``run``, ``get_inputs``, ``get_outputs``, ``get_modelmeta`` and
``get_providers`` the way an ``onnxruntime.InferenceSession`` does, so smoke, eval and bench run an
ONNX file (or an OpenVINO IR ``.xml``) on OpenVINO without a second code path. OpenVINO is the
optional ``yqt[openvino]`` extra and is imported only here, only when asked for.

What OpenVINO actually ran is read from the compiled model, not assumed: its inference precision
(on a CPU with AMX or AVX512-BF16 OpenVINO computes an f32 file in bf16 unless told otherwise) and
the runtime precision of every convolution (u8/i8: an int8 kernel).
"""

from __future__ import annotations

import collections
import logging
from pathlib import Path
from typing import Any

import numpy as np

from yqt.errors import YqtError
from yqt.records import KernelCensus, ProviderReport, Runtime, RuntimeInfo

log = logging.getLogger(__name__)

EXTRA = "yqt[openvino]"
DEVICE = "CPU"
_CONV_LAYERS = {"Convolution", "GroupConvolution", "Deconvolution", "ConvolutionBackpropData"}
_INT8 = {"u8", "i8"}
_TYPE_NAMES = {"f32": "tensor(float)", "f16": "tensor(float16)", "bf16": "tensor(bfloat16)"}


def import_openvino() -> Any:
    """The ``openvino`` module, or one line naming the extra that brings it."""
    try:
        import openvino
    except ImportError:
        raise YqtError(
            "--runtime openvino needs OpenVINO, which is not installed",
            f"pip install '{EXTRA}' (or pip install openvino), or use --runtime ort",
        ) from None
    return openvino


def openvino_version() -> str:
    """``2026.4.1``: the release, without the build hash OpenVINO appends."""
    ov = import_openvino()
    return str(ov.__version__).split("-")[0]


class _Arg:
    """An input or output as ``onnxruntime.NodeArg`` describes it: name, shape, ``tensor(float)`` type."""

    def __init__(self, port: Any) -> None:
        self.name = port.get_any_name()
        shape = port.get_partial_shape()
        self.shape = [d.get_length() if d.is_static else "?" for d in shape]
        self.type = _TYPE_NAMES.get(port.get_element_type().get_type_name(), "tensor(float)")


class _Meta:
    def __init__(self, custom: dict[str, str]) -> None:
        self.custom_metadata_map = custom


class OpenVinoSession:
    """A compiled OpenVINO model with the ``InferenceSession`` methods yqt calls."""

    def __init__(self, compiled: Any, metadata: dict[str, str], device: str) -> None:
        self.compiled = compiled
        self._request = compiled.create_infer_request()
        self._metadata = metadata
        self._device = device
        self._inputs = [_Arg(p) for p in compiled.inputs]
        self._outputs = [_Arg(p) for p in compiled.outputs]

    def run(self, output_names: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = self._request.infer(feeds)
        return [np.asarray(result[port]) for port in self.compiled.outputs]

    def get_inputs(self) -> list[_Arg]:
        return self._inputs

    def get_outputs(self) -> list[_Arg]:
        return self._outputs

    def get_modelmeta(self) -> _Meta:
        return _Meta(self._metadata)

    def get_providers(self) -> list[str]:
        return [f"OpenVINO {self._device}"]


def _metadata(model: Any) -> dict[str, str]:
    """The ONNX file's metadata_props (OpenVINO keeps them in rt_info['framework']); an IR has none."""
    info = model.get_rt_info()
    if "framework" not in info:
        return {}
    out = {}
    for key, value in info["framework"].items():
        try:
            out[str(key)] = value.astype(str)
        except Exception:  # a nested or non-string entry: not one of the keys yqt reads
            continue
    return out


def _read_error(path: Path, exc: BaseException) -> YqtError:
    text = " ".join(str(exc).split())
    return YqtError(
        f"OpenVINO cannot read {path}: {text[:240] or type(exc).__name__}",
        "pass an .onnx file or an OpenVINO IR .xml with its .bin beside it",
    )


def open_openvino(path: Path, threads: int | None = None) -> tuple[OpenVinoSession, ProviderReport, RuntimeInfo]:
    """Compile ``path`` (ONNX or IR .xml) for OpenVINO's CPU device, latency-first like ORT's single stream."""
    ov = import_openvino()
    core = ov.Core()
    try:
        model = core.read_model(str(path))
    except Exception as exc:
        raise _read_error(path, exc) from None
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    try:
        compiled = core.compile_model(model, DEVICE, config)
    except Exception as exc:
        raise _read_error(path, exc) from None
    session = OpenVinoSession(compiled, _metadata(model), DEVICE)
    options = tuple(f"{k}={v}" for k, v in config.items())
    device = f"OpenVINO {DEVICE}"
    report = ProviderReport(requested=(device,), attempted=(device,), used=(device,), session_options=options)
    precision = compiled.get_property("INFERENCE_PRECISION_HINT")
    info = RuntimeInfo(
        runtime=Runtime.OPENVINO,
        version=openvino_version(),
        device=DEVICE,
        precision=str(getattr(precision, "get_type_name", lambda: precision)()),
        threads=threads,
        kernels=openvino_census(compiled),
    )
    log.info("OpenVINO %s compiled %s on %s at %s", info.version, path, DEVICE, info.precision)
    return session, report, info


def _rt(info: Any, key: str) -> str:
    return info[key].astype(str) if key in info else ""


def openvino_census(compiled: Any) -> KernelCensus:
    """Each convolution of the compiled model's runtime graph, by the precision the plugin runs it in."""
    counts: collections.Counter[str] = collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if _rt(info, "layerType") in _CONV_LAYERS:
            precision = _rt(info, "runtimePrecision") or "?"
            counts["int8" if precision in _INT8 else precision] += 1
    return KernelCensus(
        convs=sum(counts.values()),
        int8_convs=counts.get("int8", 0),
        precisions=dict(sorted(counts.items())),
        source="OpenVINO runtime model (runtimePrecision of each convolution)",
    )
