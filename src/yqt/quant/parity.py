"""Detection parity between the PyTorch model and the exported file under ORT, per mode.

Parity compares *detections*, not raw tensors: the confident rows of the PyTorch model against
ORT's, matched one to one by class and IoU. The tolerance depends on what differs between the two:

- weight-only modes (w8a16, w4a16): the PyTorch fake-quant model and the file hold the same integer
  weights and scales, and both compute in float; only summation order differs. 99% of confident
  detections must match at IoU ≥ 0.99.
- activation modes (w8a8, w4a8): ORT also rounds every activation to 8 bits, which PyTorch (with
  the same weights) does not. A uint8 step is 1/255 of a tensor's range; the rounding moves box
  edges a little and pushes scores near the bar across it. So 90% of confident detections must
  match at IoU ≥ 0.85. Measured for w8a8 on 16 val2017 images: 71/75
  (94.7%).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yqt.data import default_smoke_image
from yqt.errors import YqtError
from yqt.export import Candidate, torch_and_ort_outputs
from yqt.quant.modes import QuantMode
from yqt.records import ParityReport

PARITY_SCORE = 0.25
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class ParityTolerance:
    iou: float
    required_fraction: float


WEIGHT_ONLY = ParityTolerance(iou=0.99, required_fraction=0.99)
INT8_ACTIVATIONS = ParityTolerance(iou=0.85, required_fraction=0.90)


def tolerance_for(mode: QuantMode) -> ParityTolerance:
    return WEIGHT_ONLY if mode.weight_only else INT8_ACTIVATIONS


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` against every box in ``b`` (xyxy)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def match_detections(ref: np.ndarray, got: np.ndarray, score: float, iou: float) -> tuple[int, int]:
    """Greedy one-to-one matching of confident rows, same class and IoU ≥ ``iou``. Returns (matched, total)."""
    ref = ref[ref[:, 4] >= score]
    got = got[got[:, 4] >= score * 0.9]  # a reference box just above the bar may sit just below it here
    if not len(ref) or not len(got):
        return 0, len(ref)
    ious = _iou(ref[:, :4], got[:, :4])
    ious[ref[:, 5][:, None] != got[:, 5][None, :]] = 0.0
    used: set[int] = set()
    matched = 0
    for i in np.argsort(-ref[:, 4]):
        for j in np.argsort(-ious[i]):
            if ious[i, j] < iou:
                break
            if j not in used:
                used.add(int(j))
                matched += 1
                break
    return matched, len(ref)


def parity_images(folder: Path | None, limit: int) -> list[Path]:
    if folder is None:
        bus = default_smoke_image()
        return [bus, bus.with_name("zidane.jpg")]
    if not Path(folder).is_dir():
        raise YqtError(f"--parity-images folder not found: {folder}", "pass a folder of real images, e.g. val2017/")
    images = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)[:limit]
    if not images:
        raise YqtError(f"no images in --parity-images {folder}", "pass a folder of .jpg/.png images")
    return images


def detection_parity(
    module: Any, onnx_path: Path, images: list[Path], imgsz: int, cand: Candidate, tol: ParityTolerance
) -> ParityReport:
    from yqt.runtime import open_session

    session, report = open_session(onnx_path, cand.providers)
    matched = total = ort_total = 0
    for image in images:
        ref, got = torch_and_ort_outputs(module, session, image, imgsz, cand)
        m, n = match_detections(ref[0], got[0], PARITY_SCORE, tol.iou)
        matched, total = matched + m, total + n
        ort_total += int((got[0, :, 4] >= PARITY_SCORE).sum())
    if total:
        fraction, passed, note = matched / total, matched / total >= tol.required_fraction, ""
    else:
        # Nothing confident to match (random-init weights): the backends must then agree on that too.
        fraction, passed = 0.0, ort_total == 0
        note = f"no reference detections at score >= {PARITY_SCORE}; ORT has {ort_total}"
    return ParityReport(
        images=len(images),
        provider=report.used[0],
        score_threshold=PARITY_SCORE,
        iou_threshold=tol.iou,
        reference_detections=total,
        ort_detections=ort_total,
        matched=matched,
        matched_fraction=fraction,
        required_fraction=tol.required_fraction,
        passed=passed,
        note=note,
    )
