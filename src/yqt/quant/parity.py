"""Detection parity between the PyTorch model and the exported file under ORT, per mode.

Parity compares *detections*, not raw tensors: the confident rows of the PyTorch model against
ORT's, matched one to one by class and IoU, both ways: PyTorch's confident detections must be found
among ORT's, and ORT's among PyTorch's, so a box ORT adds fails as a box it misses does. The
tolerance depends on what differs between the two:

- weight-only modes (w8a16, w4a16): the PyTorch fake-quant model and the file hold the same integer
  weights and scales, and both compute in float; only summation order differs. 99% of confident
  detections must match at IoU ≥ 0.99.
- activation modes (w8a8, w4a8): ORT also rounds every activation to 8 bits, which PyTorch (with
  the same weights) does not. A uint8 step is 1/255 of a tensor's range; the rounding moves box
  edges a little and pushes scores near the bar across it. So 90% of confident detections must
  match at IoU ≥ 0.85. Measured for w8a8 on 16 val2017 images: 71/75
  (94.7%).

Both heads are compared as detections: a raw ``[4+nc,A]`` output (YOLOv8, YOLO11, YOLOv10's NMS
head) goes through yqt's NMS (conf 0, so the score bar below decides) on both sides first.

A random-init model (``--weights yolo11n.yaml``) scores every box near zero (its class bias starts
at log(5/nc/(640/stride)^2), about 1e-5; scores stay below 1e-3 once its BatchNorms have
statistics, see :func:`yqt.models.wake_random_init`), so nothing reaches 0.25 and a plain bar would
compare nothing. When no image has a reference detection at 0.25, the bar drops, per image, to the
score of the reference's 10th best detection: the ten best boxes of each image must still match,
same class, at the same IoU; the note says so. A model with any confident detection keeps the
plain bar on every image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from yqt.data import default_smoke_image
from yqt.errors import YqtError
from yqt.export import TOP_ROWS, Candidate, torch_and_ort_outputs
from yqt.filetypes import IMAGE_SUFFIXES
from yqt.quant.modes import QuantMode
from yqt.records import ParityReport

PARITY_SCORE = 0.25
RANDOM_INIT_TOP = TOP_ROWS  # detections per image compared when none reaches PARITY_SCORE, as export does


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
    """Greedy one-to-one matching of ``ref``'s confident rows, same class and IoU ≥ ``iou``, among ``got``'s.
    Returns (matched, total). Called both ways round, with either backend as ``ref``."""
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
    images = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not images:
        raise YqtError(f"no images in --parity-images {folder}", "pass a folder of .jpg/.png images")
    return images


def image_detections(out: np.ndarray) -> np.ndarray:
    """One image's output as ``[K,6]`` detections, whichever head made it."""
    from yqt.models import check_output_shape
    from yqt.records import NmsSettings
    from yqt.runtime import image_rows

    return image_rows(out, check_output_shape((1, *out.shape)), NmsSettings(conf=0.0))


def random_init_bar(ref: np.ndarray) -> float:
    """The score of the image's RANDOM_INIT_TOP-th best reference detection (PARITY_SCORE if none)."""
    scores = np.sort(ref[:, 4])[::-1][:RANDOM_INIT_TOP]
    return float(scores[-1]) if len(scores) else PARITY_SCORE


def detection_parity(
    module: Any, onnx_path: Path, images: list[Path], imgsz: int, cand: Candidate, tol: ParityTolerance
) -> ParityReport:
    from yqt.runtime import open_session

    session, report = open_session(onnx_path, cand.providers)
    pairs = []
    for image in images:
        ref_out, got_out = torch_and_ort_outputs(module, session, image, imgsz, cand)
        pairs.append((image_detections(ref_out[0]), image_detections(got_out[0])))
    return judge_parity(pairs, tol, report.used[0])


def judge_parity(pairs: Sequence[tuple[np.ndarray, np.ndarray]], tol: ParityTolerance, provider: str) -> ParityReport:
    """Each image's ``(PyTorch, ORT)`` detections matched both ways: PyTorch's confident detections
    must be found in ORT's, and ORT's confident detections in PyTorch's, each at ``tol``."""
    confident = any((ref[:, 4] >= PARITY_SCORE).any() for ref, _ in pairs)
    bars = [PARITY_SCORE if confident else random_init_bar(ref) for ref, _ in pairs]
    matched = total = ort_matched = ort_total = 0
    for (ref, got), bar in zip(pairs, bars, strict=True):
        m, n = match_detections(ref, got, bar, tol.iou)
        matched, total = matched + m, total + n
        m, n = match_detections(got, ref, bar, tol.iou)  # what ORT adds must fail too
        ort_matched, ort_total = ort_matched + m, ort_total + n
    note = (
        ""
        if confident
        else f"no detection at score >= {PARITY_SCORE} on any image (random-init weights?): each image's "
        f"{RANDOM_INIT_TOP} best were compared instead (bar down to {min(bars):.2g})"
    )
    # No detections on a side: nothing of it to miss. Both sides empty passes; so both must agree on it.
    fraction = matched / total if total else 1.0
    ort_fraction = ort_matched / ort_total if ort_total else 1.0
    return ParityReport(
        images=len(pairs),
        provider=provider,
        score_threshold=PARITY_SCORE,
        iou_threshold=tol.iou,
        reference_detections=total,
        ort_detections=ort_total,
        matched=matched,
        matched_fraction=fraction,
        ort_matched=ort_matched,
        ort_matched_fraction=ort_fraction,
        required_fraction=tol.required_fraction,
        passed=min(fraction, ort_fraction) >= tol.required_fraction,
        note=note,
    )
