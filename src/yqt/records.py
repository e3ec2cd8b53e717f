"""Typed records that flow between stages: ``*Config`` in, ``*Result`` out.

Records hold plain values only (str, numbers, bool, Path, tuples, nested records), so one helper,
:func:`to_jsonable`, turns any of them into the JSON written to the run root and printed by
``--json``. The two can therefore never drift apart. A record that is a whole document (a command's
result) names its JSON schema in ``SCHEMA`` (``yqt/<kind>/<version>``), and :func:`document` stamps
it first; the schema files live in ``yqt/schemas/``. This module imports neither torch nor rich.

Units: mAP values are fractions in [0, 1], as pycocotools gives them. Differences of mAP are in
points (1 pt = 0.01 mAP) and their keys end in ``_pt``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


def to_jsonable(value: Any) -> Any:
    """Convert a record (or any nesting of records, paths, tuples and dicts) to JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return os.path.abspath(value)  # absolute in JSON: a document read elsewhere still finds its files
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; pycocotools reports -1 for undefined stats, never NaN
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def document(record: Any) -> dict[str, Any]:
    """A whole JSON document: ``{"schema": "yqt/<kind>/<version>", ...the record's fields}``."""
    return {"schema": record.SCHEMA, **to_jsonable(record)}


def points(fraction_delta: float) -> float:
    """A difference of two mAP fractions in mAP points (1 pt = 0.01 mAP), the one unit for deltas."""
    return fraction_delta * 100.0


def signed(x: float, digits: int = 2) -> str:
    """``+0.76`` / ``−0.67`` for people: a true minus sign, so a negative delta never reads as a dash."""
    return f"{x:+.{digits}f}".replace("-", "\u2212")


def mode_with_bits(mode: str, bits: float | None) -> str:
    """``w8a8 8b``, ``w4a16 4.50b``; a float baseline by its precision alone (``fp32``)."""
    if "," in mode:
        return mode  # what the graph holds, for a file yqt did not quantize: "int8 QDQ, 82/83 convs"
    name, _, precision = mode.partition(" ")
    if name == "baseline":
        return precision or name
    if bits is None:
        return name
    return f"{name} {bits:.0f}b" if abs(bits - round(bits)) < 0.005 else f"{name} {bits:.2f}b"


# --------------------------------------------------------------------------------------------- common


@dataclass(frozen=True)
class LatencyStats:
    """Latency of repeated ``session.run`` calls, in milliseconds."""

    n: int
    mean_ms: float
    median_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float

    @classmethod
    def from_seconds(cls, samples: Sequence[float]) -> LatencyStats:
        if not samples:
            raise ValueError("latency needs at least one sample")
        ms = sorted(s * 1000.0 for s in samples)
        # Nearest-rank p90: a value that was actually measured, not an interpolation.
        p90 = ms[max(0, math.ceil(0.9 * len(ms)) - 1)]
        return cls(
            n=len(ms),
            mean_ms=statistics.fmean(ms),
            median_ms=statistics.median(ms),
            p90_ms=p90,
            min_ms=ms[0],
            max_ms=ms[-1],
        )


@dataclass(frozen=True)
class FileArtifact:
    """A file the run produced, identified by content."""

    path: Path
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class ModelInfo:
    """Where a PyTorch model came from and what it is."""

    source: str
    sha256: str | None
    arch: str
    pretrained: bool
    num_classes: int
    class_names_fixed: bool
    parameters: int
    imgsz: int
    family: str = ""  # yolov8 | yolo11 | yolov10 | ... (from the architecture name)
    head: str = ""  # "end2end" (NMS-free, [B,300,6]) | "nms" (raw [B,4+nc,A], NMS after the model)
    batchnorm: str = ""  # set when yqt gave a random-init model BatchNorm statistics, and how


@dataclass(frozen=True)
class ContractCheck:
    """The detector output contract, one of two kinds, both in letterboxed pixels:

    - ``end2end``: ``[B,N,6]`` = x1,y1,x2,y2,score,class (YOLOv10's NMS-free head);
    - ``raw``: ``[B,4+nc,A]`` = cx,cy,w,h then nc class scores after sigmoid, per anchor; yqt decodes
      it and runs NMS (:mod:`yqt.nms`), so everything after sees end2end rows.
    """

    passed: bool
    output_shape: tuple[Any, ...]
    detail: str
    kind: str | None = None  # "end2end" | "raw"; None when the shape is neither
    num_classes: int | None = None  # known from the shape for raw outputs


@dataclass(frozen=True)
class NmsSettings:
    """How a raw head's output is turned into detections: Ultralytics val's NMS, in NumPy."""

    iou: float = 0.7
    conf: float = 0.001
    max_det: int = 300
    max_candidates: int = 30000  # (box, class) pairs kept by score before NMS, as Ultralytics' max_nms
    multi_label: bool = True  # a box may be a candidate for several classes
    class_aware: bool = True  # boxes of different classes never suppress each other
    implementation: str = "numpy"


# --------------------------------------------------------------------------------------------- export


class ExportDevice(str, enum.Enum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


@dataclass(frozen=True)
class DeviceAttempt:
    """One candidate of the export device choice and what happened to it."""

    device: str
    precision: str
    outcome: str  # "chosen" | "failed" | "skipped"
    reason: str


@dataclass(frozen=True)
class DeviceChoice:
    requested_device: str
    requested_half: bool | None
    attempts: tuple[DeviceAttempt, ...]
    device: str
    precision: str


@dataclass(frozen=True)
class ExportConfig:
    weights: str | None = None
    imgsz: int = 640
    device: ExportDevice = ExportDevice.AUTO
    half: bool | None = None  # None: FP16 on CUDA, FP32 on CPU
    opset: int = 17
    verify_image: Path | None = None
    end2end: bool | None = None  # YOLOv10 only: True NMS-free head (default), False the NMS head


@dataclass(frozen=True)
class ColumnCheck:
    """The rows that decide an export check, column by column: boxes in letterboxed pixels, scores
    (a raw head's class scores) and the class, which must be exactly the same."""

    rows: str  # which rows were compared: "confident" ones, or the "top" ones when none is confident
    confident_rows: int
    compared_rows: int
    box_diff_px: float
    score_diff: float
    class_mismatches: int
    box_tolerance_px: float
    score_tolerance: float
    passed: bool

    def problems(self) -> list[str]:
        found = []
        if self.box_diff_px > self.box_tolerance_px:
            found.append(f"boxes differ by {self.box_diff_px:.4g} px (tolerance {self.box_tolerance_px:g})")
        if self.score_diff > self.score_tolerance:
            found.append(f"scores differ by {self.score_diff:.4g} (tolerance {self.score_tolerance:g})")
        if self.class_mismatches:
            found.append(f"{self.class_mismatches} of {self.compared_rows} classes differ (none may)")
        return found


@dataclass(frozen=True)
class ExportVerification:
    """ONNX Runtime output of the exported file against the PyTorch output, same input."""

    image: Path
    provider: str
    max_abs_diff: float  # over the whole output, recorded; the low-score tail may reorder, so it decides nothing
    columns: ColumnCheck
    passed: bool


@dataclass(frozen=True)
class ExportResult:
    SCHEMA: ClassVar[str] = "yqt/export/2"

    model: ModelInfo
    onnx: FileArtifact
    device_choice: DeviceChoice
    verification: ExportVerification
    contract: ContractCheck
    passed: bool = field(init=False)  # the verification and the output contract both passed

    def __post_init__(self) -> None:
        object.__setattr__(self, "passed", self.verification.passed and self.contract.passed)


# --------------------------------------------------------------------------------------------- runtime


@dataclass(frozen=True)
class ProviderReport:
    """Which execution providers were asked for, which were tried and which actually ran."""

    requested: tuple[str, ...]
    attempted: tuple[str, ...]
    used: tuple[str, ...]
    notes: tuple[str, ...] = ()
    session_options: tuple[str, ...] = ()  # ORT session config entries yqt set, and why

    @property
    def cuda_used(self) -> bool:
        return "CUDAExecutionProvider" in self.used

    @property
    def fell_back(self) -> bool:
        return bool(self.requested) and self.used[:1] != self.requested[:1]


class Runtime(str, enum.Enum):
    """Which inference engine runs a model: ONNX Runtime, or OpenVINO (the ``yqt[openvino]`` extra)."""

    ORT = "ort"
    OPENVINO = "openvino"


@dataclass(frozen=True)
class KernelCensus:
    """The convolutions as the runtime compiled them, not as the file declares them: ORT's optimized
    graph (QLinearConv/ConvInteger are int8 kernels) or OpenVINO's runtime model (each convolution's
    ``runtimePrecision``; u8/i8 are int8 kernels)."""

    convs: int
    int8_convs: int
    precisions: Mapping[str, int]  # runtime precision (int8, f32, bf16, ...) → convolutions
    source: str  # where the census was read


@dataclass(frozen=True)
class RuntimeInfo:
    """The engine that ran a model, its version, the device, and the precision it computed in."""

    runtime: Runtime
    version: str
    device: str  # OpenVINO's device (CPU), or the ORT execution provider that ran first
    # The float precision the runtime computed in: OpenVINO's INFERENCE_PRECISION_HINT (bf16 on a CPU
    # with AMX/AVX512-BF16, even for an f32 file), or the file's own input precision on ORT.
    precision: str
    threads: int | None = None  # intra-op threads asked for (None: the runtime's default)
    kernels: KernelCensus | None = None


@dataclass(frozen=True)
class SmokeConfig:
    onnx: Path
    image: Path | None = None
    providers: tuple[str, ...] = ("cuda", "cpu")
    runs: int = 10
    conf: float = 0.25
    require_cuda: bool = False
    min_detections: int | None = None  # fail below this many at ``conf``; None: 1 for a COCO detector on bus.jpg
    runtime: Runtime = Runtime.ORT
    threads: int | None = None  # intra-op threads (None: the runtime's default)


@dataclass(frozen=True)
class Detection:
    box_xyxy: tuple[float, float, float, float]
    score: float
    class_id: int
    class_name: str


@dataclass(frozen=True)
class SmokeResult:
    SCHEMA: ClassVar[str] = "yqt/smoke/3"

    onnx: FileArtifact
    image: Path
    imgsz: int
    providers: ProviderReport
    contract: ContractCheck
    conf: float
    num_detections: int
    top_detections: tuple[Detection, ...]
    latency: LatencyStats
    require_cuda: bool
    min_detections: int  # the check on num_detections; 0: no expectation
    expectation: str  # where min_detections comes from, in words
    passed: bool
    failure: str | None = None
    runtime: RuntimeInfo | None = None  # None in documents written before smoke/3


# --------------------------------------------------------------------------------------------- bench


@dataclass(frozen=True)
class BenchConfig:
    models: tuple[Path, ...]
    runtimes: tuple[Runtime, ...] = (Runtime.ORT,)
    threads: int | None = None  # intra-op threads of every runtime (None: each runtime's default)
    batch: int = 1
    rounds: int = 20
    runs_per_round: int = 5  # timed runs of each cell in each round
    warmup: int = 5  # untimed runs of each cell before the first round
    image: Path | None = None  # the input, letterboxed and repeated to the batch (None: bus.jpg)
    providers: tuple[str, ...] = ("cpu",)  # ORT's providers (OpenVINO runs on its CPU device)
    seed: int = 0  # of the bootstrap over rounds


@dataclass(frozen=True)
class BenchCell:
    """One model on one runtime: its latency over every timed run, and its speed against the reference
    (the first model on the first runtime), paired round by round so that load drift cancels."""

    index: int
    name: str  # the model's file stem
    model: FileArtifact
    runtime: RuntimeInfo
    session_options: tuple[str, ...]
    batch: int
    n: int  # timed runs
    median_ms: float  # per batch
    q1_ms: float
    q3_ms: float
    iqr_ms: float
    mean_ms: float
    throughput_ips: float  # images per second at the median: batch / median
    ratio: float  # median over rounds of (this cell's round median / the reference's); < 1 is faster
    ratio_ci95: tuple[float, float]  # bootstrap over rounds of that median
    round_ms: tuple[float, ...]  # each round's median, in round order

    @property
    def label(self) -> str:
        return f"{self.name} on {self.runtime.runtime.value}"


@dataclass(frozen=True)
class BenchHost:
    """Where and under what load the bench ran: latencies from another machine or load do not compare."""

    cpu_count: int
    cpu: str
    load_before: tuple[float, float, float]  # os.getloadavg() when the rounds began
    load_after: tuple[float, float, float]


@dataclass(frozen=True)
class BenchResult:
    """``yqt bench``: every model on every runtime in one process, warmed up, timed in alternating rounds."""

    SCHEMA: ClassVar[str] = "yqt/bench/1"

    config: BenchConfig
    cells: tuple[BenchCell, ...]
    reference: str  # the label of the cell every ratio is against
    image: Path
    host: BenchHost
    seconds: float
    created: str
    versions: Mapping[str, str]
    bench_path: Path | None = None  # bench/bench.json in the run
    run_id: str | None = None
    skipped: tuple[str, ...] = ()  # model x runtime cells that cannot run (an IR on ORT), each with why


# --------------------------------------------------------------------------------------------- eval


@dataclass(frozen=True)
class EvalConfig:
    onnx: Path
    coco_root: Path | None = None
    images_dir: Path | None = None
    annotations: Path | None = None
    max_images: int | None = None
    image_ids_list: Path | None = None
    conf: float = 0.001
    max_det: int = 300
    providers: tuple[str, ...] = ("cuda", "cpu")
    name: str | None = None
    workers: int = 2
    force: bool = False  # score even on images the model was calibrated on
    iou: float = 0.7  # NMS IoU, for models whose head needs NMS
    data: Path | None = None  # an Ultralytics dataset YAML (YOLO labels), instead of a COCO root
    split: str = "val"  # the YAML's split to score
    skip_bad_labels: bool = False  # leave out images whose label file is malformed, instead of refusing
    runtime: Runtime = Runtime.ORT
    threads: int | None = None  # intra-op threads (None: the runtime's default)


@dataclass(frozen=True)
class CocoMetrics:
    """The 12 COCOeval bbox stats, in pycocotools' order, under explicit names. Fractions in [0, 1]
    as pycocotools gives them (0.4459, not 44.59), or -1 where pycocotools has no ground truth."""

    mAP_50_95: float
    mAP_50: float
    mAP_75: float
    mAP_small: float
    mAP_medium: float
    mAP_large: float
    AR_1: float
    AR_10: float
    AR_100: float
    AR_small: float
    AR_medium: float
    AR_large: float

    @classmethod
    def from_stats(cls, stats: Sequence[float]) -> CocoMetrics:
        names = [f.name for f in dataclasses.fields(cls)]
        if len(stats) != len(names):
            raise ValueError(f"expected {len(names)} COCO stats, got {len(stats)}")
        return cls(**{n: float(v) for n, v in zip(names, stats, strict=True)})


# How tables and charts name the COCO metrics (the keys above stay the names in JSON and --metrics).
METRIC_LABELS = {
    "mAP_50_95": "mAP50-95", "mAP_50": "mAP50", "mAP_75": "mAP75", "mAP_small": "mAP-small",
    "mAP_medium": "mAP-medium", "mAP_large": "mAP-large", "AR_1": "AR1", "AR_10": "AR10", "AR_100": "AR100",
    "AR_small": "AR-small", "AR_medium": "AR-medium", "AR_large": "AR-large",
}  # fmt: skip


@dataclass(frozen=True)
class EvalTiming:
    """Where eval time went, in seconds. ``inference_wall_s / session_run_s`` shows the overhead."""

    total_s: float
    inference_wall_s: float
    session_run_s: float
    cocoeval_s: float
    nms_s: float = 0.0  # yqt's decode+NMS of a raw head output (0 for an end-to-end model)


@dataclass(frozen=True)
class YoloDataset:
    """Where a YOLO-format ground truth came from: the YAML, the split and every label file, by hash."""

    yaml_path: Path
    yaml_sha256: str
    root: Path  # the YAML's path: resolved (against the YAML's own folder when relative)
    split: str
    names: tuple[str, ...]
    split_images: int  # images in the split before --max-images or an id list
    labels_sha256: str  # of every label file's relative path and sha256 (or its absence), in name order
    bad_label_files: tuple[str, ...] = ()  # "file:line: problem" of each image --skip-bad-labels left out
    duplicate_label_rows: int = 0  # repeated rows dropped, as Ultralytics drops them


@dataclass(frozen=True)
class EvalResult:
    """The metrics document: every number with what produced it."""

    SCHEMA: ClassVar[str] = "yqt/eval/3"

    name: str
    metrics: CocoMetrics
    num_images: int
    image_ids: tuple[int, ...]
    image_ids_sha256: str
    num_detections: int
    onnx_path: Path
    onnx_sha256: str
    onnx_size_bytes: int
    model: Mapping[str, Any] = field(
        metadata={
            "description": "the ONNX file's yqt.* metadata, decoded: numbers as numbers, lists and objects as JSON",
            "schema": {
                "type": "object",
                "properties": {
                    "yqt.imgsz": {"type": "integer"},
                    "yqt.names": {"type": "array", "items": {"type": "string"}},
                    "yqt.pretrained": {"type": "boolean"},
                    "yqt.mean_weight_bits": {"type": "number"},
                    "yqt.calibration": {"type": "object"},
                },
                "additionalProperties": {"type": ["string", "number", "boolean", "array", "object"]},
            },
        }
    )
    providers_requested: tuple[str, ...]
    providers_used: tuple[str, ...]
    provider_notes: tuple[str, ...]
    session_options: tuple[str, ...]
    category_ids: tuple[int | None, ...]  # model class index → dataset category id (None: not scored)
    imgsz: int
    conf: float
    max_det: int
    latency: LatencyStats
    timing: EvalTiming
    annotations_path: Path | None  # COCO JSON scored against; for --data, ground_truth.json in the run (None: no run)
    annotations_sha256: str  # of that JSON; for --data, of the ground truth built from the labels
    images_dir: Path
    versions: Mapping[str, str]
    config: EvalConfig
    created: str
    warnings: tuple[str, ...] = ()
    detections_path: Path | None = None
    detections_sha256: str | None = None  # compare refuses a detections.json that no longer matches
    metrics_path: Path | None = None
    run_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    contract: ContractCheck | None = None  # which output contract the file has
    nms: NmsSettings | None = None  # set when yqt ran NMS on a raw head output
    dataset: YoloDataset | None = None  # set when scored on an Ultralytics dataset YAML
    dropped_detections: int = 0  # detections of model classes the dataset does not have (not scored)
    runtime: RuntimeInfo | None = None  # the engine, version, device and precision that ran the model
    # What the file's graph holds, e.g. "int8 QDQ, 82/83 convs"; None for a float graph (or an IR).
    graph_quantization: str | None = None


@dataclass(frozen=True)
class ClassAP:
    """One category's AP (area all, maxDets 100), -1 where the image set has no ground truth for it."""

    category_id: int
    name: str
    ap_50_95: float
    ap_50: float


@dataclass(frozen=True)
class EvalCurves:
    """``curves.json`` beside metrics.json: what the report plots from COCOeval's precision array.

    ``precision_*`` are the mean interpolated precision over categories that have ground truth, at
    each of ``recall`` (pycocotools' 101 thresholds), area all, maxDets 100; -1 where no category has
    ground truth. ``detections_sha256`` ties the file to the metrics.json of the same evaluation."""

    SCHEMA: ClassVar[str] = "yqt/curves/1"

    name: str
    recall: tuple[float, ...]
    precision_50: tuple[float, ...]
    precision_50_95: tuple[float, ...]
    classes: tuple[ClassAP, ...]
    detections_sha256: str | None = None
    area: str = "all"
    max_dets: int = 100


# --------------------------------------------------------------------------------------------- quantize


class Layout(str, enum.Enum):
    """Where activation Q/DQ go: ``ort`` quantizes conv outputs and the ops between convs, so ORT CPU
    fuses int8 kernels; ``tensorrt`` quantizes conv inputs only, symmetric int8 with zero point 0, as
    TensorRT's explicit mode wants; ``openvino`` quantizes conv inputs only, uint8 with a zero point,
    which OpenVINO's low-precision transformations run as int8 convolutions without requantizing
    between them."""

    ORT = "ort"
    TENSORRT = "tensorrt"
    OPENVINO = "openvino"


class Simplifier(str, enum.Enum):
    ONNXSLIM = "onnxslim"
    ONNXSIM = "onnxsim"


@dataclass(frozen=True)
class QuantizeConfig:
    mode: str = "w8a16"
    weights: str | None = None
    imgsz: int = 640
    exclude: tuple[str, ...] = ()
    keep_8bit: tuple[str, ...] = ()
    quantize_dfl: bool = False
    device: ExportDevice = ExportDevice.AUTO
    half: bool | None = None
    opset: int | None = None  # None: 21 for 4-bit modes (INT4 storage), else 17
    parity_images: Path | None = None
    parity_max_images: int = 16
    providers: tuple[str, ...] = ("cuda", "cpu")
    coco_root: Path | None = None
    calib_dir: Path | None = None  # None: <coco_root>/train2017, or the --data YAML's calib_split
    calib_images: int | None = None  # None: 128 when GPTQ runs (4-bit modes), else 64
    data: Path | None = None  # an Ultralytics dataset YAML to calibrate on, instead of a COCO root
    calib_split: str = "train"  # the YAML's split calibration reads
    gptq: bool = True
    act_order: bool = False
    layout: Layout = Layout.ORT
    calib_percentile: float = 99.999
    simplifier: Simplifier = Simplifier.ONNXSLIM
    target_bits: float | None = None  # choose the 8-bit layers of a w4 mode for this mean weight bits
    sensitivity: Path | None = None  # a `yqt sensitivity` JSON; None: measure it while quantizing
    sensitivity_images: int = 16  # the first N calibration images, when measuring it here


@dataclass(frozen=True)
class CalibrationImage:
    name: str
    sha256: str


@dataclass(frozen=True)
class CalibrationSet:
    """The images a model was calibrated on, traced by content."""

    folder: Path
    requested: int
    images: tuple[CalibrationImage, ...]
    sha256: str  # of the sorted image hashes


@dataclass(frozen=True)
class ActivationReport:
    """How activations were quantized: where, with what ranges, and what ORT made of it."""

    layout: str
    method: str
    images: int
    quantized_tensors: int
    excluded_nodes: tuple[str, ...]
    excluded_reason: str
    int8_convs_fused: int
    int8_convs_expected: int | None  # None: the layout does not aim for fused kernels
    calibration_s: float
    scales_checked: int  # activation QuantizeLinear nodes read back from the file
    scales_not_from_calibration: tuple[str, ...]  # tensors whose scale is none of yqt's ranges: must be empty


@dataclass(frozen=True)
class StorageReport:
    """How low-bit weights are stored in the file."""

    format: str  # "int4" (packed INT4 initializers) | "int8" (int8 + Clip carrying the bit width)
    opset: int
    note: str


@dataclass(frozen=True)
class LayerDecision:
    name: str
    kind: str
    shape: str
    quantized: bool
    reason: str
    bits: int | None = None  # None: kept float
    params: int = 0


@dataclass(frozen=True)
class GateCheck:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateReport:
    target: str
    checks: tuple[GateCheck, ...]
    passed: bool = field(init=False)  # every check passed

    def __post_init__(self) -> None:
        object.__setattr__(self, "passed", all(c.passed for c in self.checks))


@dataclass(frozen=True)
class ParityReport:
    """PyTorch (Brevitas) detections against ORT (QCDQ) detections on real images."""

    images: int
    provider: str
    score_threshold: float
    iou_threshold: float
    reference_detections: int
    ort_detections: int
    matched: int  # PyTorch's confident detections found among ORT's
    matched_fraction: float
    ort_matched: int  # ORT's confident detections found among PyTorch's: a box ORT adds fails too
    ort_matched_fraction: float
    required_fraction: float  # of both fractions
    passed: bool
    note: str = ""

    def counts(self) -> str:
        """Both directions in words, for the check row and the failure line."""
        return (
            f"{self.matched}/{self.reference_detections} PyTorch detections found by ORT "
            f"({self.matched_fraction:.1%}) and {self.ort_matched}/{self.ort_detections} ORT detections found "
            f"in PyTorch's ({self.ort_matched_fraction:.1%}), {self.required_fraction:.0%} of each required"
        )


@dataclass(frozen=True)
class SizeReport:
    qcdq_bytes: int
    opt_bytes: int
    float_bytes: int
    float_source: str
    ratio: float  # float / qcdq


@dataclass(frozen=True)
class QuantizeResult:
    SCHEMA: ClassVar[str] = "yqt/quantize/5"

    mode: str
    model: ModelInfo
    layers: tuple[LayerDecision, ...]
    device_choice: DeviceChoice
    verification: ExportVerification
    gate: GateReport
    gate_opt: GateReport | None
    parity: ParityReport | None
    onnx: FileArtifact | None
    onnx_opt: FileArtifact | None
    size: SizeReport | None
    smoke: SmokeResult | None
    passed: bool
    failures: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    mean_weight_bits: float | None = None
    calibration: CalibrationSet | None = None
    activations: ActivationReport | None = None
    storage: StorageReport | None = None
    gptq_layers: int = 0
    mixed_precision: MixedPrecisionReport | None = None
    config: QuantizeConfig | None = None
    versions: Mapping[str, str] = field(default_factory=dict)
    # GPTQ's 4-bit weights depend on float summation order: a rerun on another thread count
    # differed in ~10% of them (and by 0.85 pt mAP at 4.5 bits), so the count is part of the trace.
    torch_threads: int | None = None
    # --layout openvino: the OpenVINO IR (.xml; its .bin beside it) of the gated file, and its own gate
    openvino_ir: FileArtifact | None = None
    openvino_ir_bin: FileArtifact | None = None
    gate_ir: GateReport | None = None


# --------------------------------------------------------------------------------------------- compare


@dataclass(frozen=True)
class CompareConfig:
    inputs: tuple[str, ...]
    runs_dir: Path | None = None
    baseline: str | None = None
    force: bool = False
    bootstrap: int = 1000
    seed: int = 0
    max_drop_pt: float | None = None  # in mAP points (0.5 = 0.005 mAP)
    plot: Path | None = None
    markdown: Path | None = None
    metrics: tuple[str, ...] = ()  # the table's metric columns as typed (--metrics); () is mAP50-95 and mAP50
    all_metrics: bool = False  # --all: the 12 COCO metrics


@dataclass(frozen=True)
class MetricDelta:
    """One metric of one evaluation against the baseline's: values are mAP fractions, the
    difference and its paired-bootstrap 95% CI are in mAP points (null where there is none)."""

    value: float
    baseline: float
    delta_pt: float
    ci95_pt: tuple[float, float] | None = None
    ci_excludes_zero: bool | None = None  # this metric's CI lies wholly above or below 0; null without a CI


@dataclass(frozen=True)
class CompareRow:
    """One evaluation. ``within_max_drop`` judges ``metrics[max_drop_metric].delta_pt`` against
    ``-max_drop_pt``; ``stale`` says a later eval step of the same model failed or was interrupted."""

    label: str
    run_id: str | None
    name: str
    mode: str
    providers_used: tuple[str, ...]
    onnx_sha256: str
    onnx_size_bytes: int
    latency_median_ms: float = field(metadata={"schema": {"type": ["number", "null"]}})  # null: not recorded
    num_images: int
    image_ids_sha256: str
    metrics_path: Path
    is_baseline: bool
    metrics: Mapping[str, MetricDelta]
    within_max_drop: bool | None = None  # null without --max-drop
    verdict: str = ""  # the rule and the outcome in one sentence, as the table prints it
    stale: bool = False
    stale_reason: str | None = None
    model: str = ""  # architecture and head, e.g. "yolov10n, nms head"
    short_label: str = ""  # the label without the run when every row is of one run, e.g. "yolov10n-w8a8-qcdq-ptq"
    mean_weight_bits: float | None = None  # parameter-weighted; a float baseline counts 32 (fp32) or 16 (fp16)
    latency_source: str = "eval"  # "bench": latency_median_ms is a yqt bench's, side by side; "eval": its eval's
    latency_ratio: float | None = None  # latency / the baseline's (bench: median of per-round ratios)
    latency_ratio_ci95: tuple[float, float] | None = None  # bench only: bootstrap over rounds


@dataclass(frozen=True)
class CompareResult:
    SCHEMA: ClassVar[str] = "yqt/compare/3"

    baseline: str
    rows: tuple[CompareRow, ...]
    bootstrap: int
    seed: int
    max_drop_pt: float | None
    max_drop_metric: str
    passed: bool
    warnings: tuple[str, ...] = ()
    plot: Path | None = None
    markdown: Path | None = None
    left_out: tuple[str, ...] = ()  # evaluations not compared, each with the reason
    saved: Path | None = None  # the result's JSON in the baseline's run
    columns: tuple[str, ...] = ("mAP_50_95", "mAP_50")  # the metrics the table shows (--metrics, --all)
    latency_note: str = ""  # where the latencies come from: a yqt bench (side by side) or each eval's own timing


# --------------------------------------------------------------------------------------------- sensitivity


@dataclass(frozen=True)
class SensitivityConfig:
    weights: str | None = None
    imgsz: int = 640
    bits: int = 4  # the probe precision of one layer's weights
    act: bool = False  # also round the probed layer's input to uint8 (activation sensitivity)
    coco_root: Path | None = None
    calib_dir: Path | None = None  # None: <coco_root>/train2017
    calib_images: int = 16
    calib_percentile: float = 99.999  # input range of --act probes
    batch: int = 8
    seed: int = 0  # seeds torch: a random-init config (yolov10m.yaml) builds the same weights
    verify_top: int = 0  # re-score the top K layers by real mAP on labelled images (0: no)
    verify_annotations: Path | None = None  # COCO JSON labelling the images; None: <coco_root>'s train2017 one
    data: Path | None = None  # an Ultralytics dataset YAML: sweep images and --verify-top labels from its split
    split: str = "train"  # the YAML's split the sweep reads


@dataclass(frozen=True)
class LayerSensitivity:
    name: str
    rank: int  # 1: the layer whose low-bit weights move the head most
    score: float  # relative squared error of the head logits (see quant.probe)
    params: int
    bytes_to_keep_8bit: float  # extra weight bytes to hold it at 8 bits instead of the probe bits
    seconds: float


@dataclass(frozen=True)
class VerifiedLayer:
    name: str
    rank: int  # by the proxy score
    mAP_50_95: float  # with this layer alone at the probe bits
    drop_pt: float  # float mAP minus that, in mAP points
    drop_rank: int  # 1: the largest drop among the verified layers


@dataclass(frozen=True)
class RankingCheck:
    """``--verify-top K``: does the proxy order the top K layers as real mAP does?"""

    annotations: Path
    images: int
    float_mAP_50_95: float
    layers: tuple[VerifiedLayer, ...]
    spearman: float  # rank correlation of proxy order and mAP-drop order
    held: bool
    verdict: str


@dataclass(frozen=True)
class SensitivityResult:
    SCHEMA: ClassVar[str] = "yqt/sensitivity/2"

    model: ModelInfo
    bits: int
    act: bool
    score: str  # what the score measures, in words
    head_outputs: tuple[str, ...]  # the convs whose outputs are scored
    layers: tuple[LayerSensitivity, ...]  # network order
    images: CalibrationSet
    timings: Mapping[str, float]
    verification: RankingCheck | None = None
    json_path: Path | None = None
    plot_path: Path | None = None
    warnings: tuple[str, ...] = ()
    config: SensitivityConfig | None = None

    def ranked(self) -> tuple[LayerSensitivity, ...]:
        return tuple(sorted(self.layers, key=lambda r: r.rank))


@dataclass(frozen=True)
class PromotedLayer:
    name: str
    rank: int | None  # in the sensitivity ranking; None when promoted by --keep-8bit only
    score: float | None
    params: int


@dataclass(frozen=True)
class MixedPrecisionReport:
    """How ``--target-bits`` chose the layers kept at 8 bits."""

    target_bits: float
    mean_bits: float  # achieved, parameter-weighted, float layers at 32
    floor_bits: float  # with nothing promoted
    promoted: tuple[PromotedLayer, ...]
    sensitivity: Path | None  # the ranking JSON (measured by quantize: saved in its run; None without a run)
    sensitivity_sha256: str
    rule: str


# --------------------------------------------------------------------------------------------- pipeline


@dataclass(frozen=True)
class PipelineConfig:
    modes: tuple[str, ...] = ("w8a16", "w8a8")
    weights: str | None = None
    imgsz: int = 640
    device: ExportDevice = ExportDevice.AUTO
    coco_root: Path | None = None  # None (or a folder that is not there): only the steps that need no data
    calib_dir: Path | None = None  # None: <coco_root>/train2017, or the --data YAML's train split
    data: Path | None = None  # an Ultralytics dataset YAML: calibrate on its train split, score its val split
    calib_images: int | None = None  # None: each mode's quantize default
    target_bits: tuple[float, ...] = ()  # for the 4-bit modes: one mixed-precision model per mean weight bits
    max_images: int | None = None
    image_ids_list: Path | None = None
    providers: tuple[str, ...] = ("cuda", "cpu")
    bootstrap: int = 1000
    seed: int = 0
    max_drop_pt: float | None = 1.0


class StepStatus(str, enum.Enum):
    DONE = "done"  # ran now and finished
    REUSED = "reused"  # a finished step with the same fingerprint was kept
    FAILED = "failed"
    SKIPPED = "skipped"  # not run: missing data, or a step it needs failed or was skipped


@dataclass(frozen=True)
class PipelineStep:
    name: str  # the step's name in run.json: export, quantize-w8a8, smoke-<model>, eval-<model>, compare, report
    status: StepStatus
    reason: str | None = None  # why it failed or was skipped, in one line (with what to pass, when data is missing)
    fingerprint: str | None = None  # sha256 of its config and input hashes
    seconds: float = 0.0
    outputs: tuple[str, ...] = ()  # the files it made, relative to the run folder
    note: str | None = None  # e.g. why a step recorded as running was rerun


@dataclass(frozen=True)
class PipelineResult:
    SCHEMA: ClassVar[str] = "yqt/pipeline/4"

    run_id: str
    run_root: Path
    config: PipelineConfig
    steps: tuple[PipelineStep, ...]
    passed: bool  # no step failed (skipped ones do not fail the pipeline)
    seconds: float
    compare: Mapping[str, Any] | None = field(
        default=None,
        metadata={"description": "the compare step's result document (yqt/compare/*), when it ran or was reused"},
    )
    report: Path | None = None  # report/index.html
    created: str = ""
    versions: Mapping[str, str] = field(default_factory=dict)
    data: str | None = None  # for --data: the YAML, and the splits calibration and eval read

    def count(self, status: StepStatus) -> int:
        return sum(s.status is status for s in self.steps)


# --------------------------------------------------------------------------------------------- report


@dataclass(frozen=True)
class ReportConfig:
    run: Path  # the run folder
    max_drop_pt: float | None = 1.0  # the verdict: ΔmAP50-95 below -max_drop_pt fails; None: not judged
    bootstrap: int = 1000  # resamples, when the run holds no comparison of its current evaluations
    seed: int = 0
    open_browser: bool = False
    # A saved comparison to report, and only its models (yqt pipeline passes its own); None: the
    # newest one in the run that covers its current evaluations, else a new one.
    compare: Path | None = None


@dataclass(frozen=True)
class ReportRow:
    """One model of the run. ``status``: ``ok``, or ``failed`` (its latest quantize or eval step
    failed; ``error`` holds the one-line reason, numbers, if any, are from an older evaluation).
    Ratios are against the baseline: ``size_ratio`` = baseline bytes / these bytes (× smaller),
    ``latency_ratio`` = this median latency / the baseline's (× float)."""

    name: str
    mode: str
    status: str
    is_baseline: bool
    error: str | None = None
    mean_weight_bits: float | None = None
    size_bytes: int | None = None
    size_ratio: float | None = None
    mAP_50_95: float | None = None
    delta_pt: float | None = None
    ci95_pt: tuple[float, float] | None = None
    mAP_50: float | None = None
    latency_median_ms: float | None = None
    latency_ratio: float | None = None
    provider: str | None = None
    verdict: str = ""  # PASS | FAIL | baseline | not judged | FAILED
    verdict_detail: str = ""  # the rule and the outcome in one sentence
    metrics_path: Path | None = None
    onnx_sha256: str | None = None


@dataclass(frozen=True)
class ReportResult:
    """What ``yqt report`` wrote into ``runs/<id>/report/``. ``passed``: no row FAILED or FAIL."""

    SCHEMA: ClassVar[str] = "yqt/report/1"

    run_id: str
    run_dir: Path
    index_html: Path
    markdown: Path
    plots: tuple[Path, ...]
    rows: tuple[ReportRow, ...]
    baseline: str
    max_drop_pt: float | None
    bootstrap: int
    compare_json: Path | None  # the comparison the deltas and CIs come from
    compare_reused: bool  # False: the bootstrap was run now (none in the run covered its evaluations)
    passed: bool
    warnings: tuple[str, ...] = ()
    json_path: Path | None = None
    created: str = ""
