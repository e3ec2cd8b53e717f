"""The output contract and the NumPy decode+NMS, without torch: synthetic heads against a plain
one-box-at-a-time greedy NMS written out below."""

from __future__ import annotations

import numpy as np
import pytest

from yqt.models import END2END, RAW, check_output_shape
from yqt.nms import BLOCK, nms_rows
from yqt.records import NmsSettings


@pytest.mark.parametrize(
    ("shape", "kind", "nc"),
    [
        ((1, 300, 6), END2END, None),
        (("batch", 300, 6), END2END, None),
        ((1, 84, 8400), RAW, 80),
        (("batch", 84, "anchors"), RAW, 80),
        ((1, 7, 2100), RAW, 3),
    ],
)
def test_both_contracts_are_recognised(shape, kind, nc):
    contract = check_output_shape(shape)
    assert contract.passed and contract.kind == kind and contract.num_classes == nc, contract


@pytest.mark.parametrize("shape", [(1, 3, 640, 640), (1, 84), (1, 8400, 84), (1, 4, 8400)])
def test_other_shapes_name_the_two_that_are_understood(shape):
    contract = check_output_shape(shape)
    assert not contract.passed and contract.kind is None
    assert str(list(shape)) in contract.detail
    assert "[B,N,6]" in contract.detail and "[B,4+nc,A]" in contract.detail


def reference_nms(boxes, scores, classes, iou, max_det):
    """Greedy NMS the textbook way: best box first, drop what overlaps it in its class, repeat."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    kept: list[int] = []
    for i in order:
        if all(classes[k] != classes[i] or _iou(boxes[k], boxes[i]) <= iou for k in kept):
            kept.append(i)
    return kept[:max_det]


def _iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = np.float32(w) * np.float32(h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def raw_head(xywh: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``[4+nc, A]`` from per-anchor boxes (cx,cy,w,h) and per-anchor class scores."""
    return np.concatenate([xywh.T, scores.T]).astype(np.float32)


def test_overlapping_boxes_of_one_class_keep_the_best_and_other_classes_stay():
    xywh = np.array([[100, 100, 50, 50], [102, 101, 50, 50], [100, 100, 50, 50], [300, 300, 40, 40]], float)
    scores = np.zeros((4, 3))
    scores[0, 0], scores[1, 0], scores[2, 1], scores[3, 0] = 0.9, 0.8, 0.7, 0.6
    rows = nms_rows(raw_head(xywh, scores), NmsSettings())
    assert rows[:, 4].tolist() == pytest.approx([0.9, 0.7, 0.6])  # anchor 1 suppressed by anchor 0
    assert rows[:, 5].tolist() == [0, 1, 0]
    assert rows[0, :4].tolist() == [75, 75, 125, 125]  # cx,cy,w,h → x1,y1,x2,y2


def test_one_box_can_be_a_candidate_for_several_classes():
    scores = np.array([[0.5, 0.4, 0.0005]])
    rows = nms_rows(raw_head(np.array([[50.0, 50, 20, 20]]), scores), NmsSettings(conf=0.001))
    assert rows[:, 5].tolist() == [0, 1]  # the 0.0005 class is below conf


def test_an_iou_at_the_threshold_does_not_suppress():
    # Two 10x10 boxes sharing 10x7 → IoU 70/130 ≈ 0.538; with iou=70/130 exactly the second stays.
    xywh = np.array([[5.0, 5, 10, 10], [5.0, 11, 10, 10]])
    scores = np.array([[0.9], [0.8]])
    iou = float(np.float32(40.0) / np.float32(160.0))  # overlap 10x4 = 40, union 160
    assert len(nms_rows(raw_head(xywh, scores), NmsSettings(iou=iou))) == 2
    assert len(nms_rows(raw_head(xywh, scores), NmsSettings(iou=iou - 1e-6))) == 1


def test_empty_and_all_below_conf():
    pred = raw_head(np.array([[5.0, 5, 10, 10]]), np.array([[0.0005, 0.0002]]))
    assert nms_rows(pred, NmsSettings()).shape == (0, 6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_greedy_nms_over_several_rounds(seed):
    """Clusters of jittered boxes (as a one-to-many head gives), more candidates than one round."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(50, 590, size=(60, 2))
    sizes = rng.uniform(20, 200, size=(60, 2))
    pick = rng.integers(0, 60, size=3 * BLOCK)
    xywh = np.concatenate([centres[pick], sizes[pick]], axis=1) * rng.uniform(0.95, 1.05, size=(len(pick), 4))
    scores = np.zeros((len(pick), 4))
    scores[np.arange(len(pick)), rng.integers(0, 4, size=len(pick))] = rng.uniform(0.002, 1.0, size=len(pick))
    settings = NmsSettings(max_det=400)  # the 400th box kept ranks ~650th by score: three rounds
    rows = nms_rows(raw_head(xywh, scores), settings)

    pred = raw_head(xywh, scores)
    boxes = np.concatenate([pred[:2] - pred[2:4] / 2, pred[:2] + pred[2:4] / 2]).T
    best = pred[4:].max(0)
    cls = pred[4:].argmax(0)
    want = reference_nms(boxes.tolist(), best.tolist(), cls.tolist(), settings.iou, settings.max_det)
    assert len(rows) == len(want) == 400
    np.testing.assert_array_equal(rows[:, 4], best[want])
    np.testing.assert_array_equal(rows[:, 5], cls[want])
    np.testing.assert_array_equal(rows[:, :4], boxes[want])


def test_max_candidates_keeps_the_best_pairs():
    xywh = np.array([[10.0 * i + 5, 5, 8, 8] for i in range(50)])
    scores = np.linspace(0.1, 0.9, 50)[:, None]
    rows = nms_rows(raw_head(xywh, scores), NmsSettings(max_candidates=5))
    assert rows[:, 4].tolist() == pytest.approx(scores[::-1][:5, 0].tolist())


class _Session:
    """Just enough of an ORT session for the metadata readers."""

    def __init__(self, meta: dict[str, str]) -> None:
        self._meta = meta

    def get_modelmeta(self):
        return type("Meta", (), {"custom_metadata_map": self._meta})()


def test_ultralytics_numbered_coco_names_read_as_coco():
    """THU-MIG's yolov10n names its classes '0'..'79', and Ultralytics' export of it keeps them."""
    from yqt.models import COCO80_NAMES
    from yqt.runtime import class_names_from_session

    numbered = str({i: str(i) for i in range(80)})
    assert class_names_from_session(_Session({"names": numbered})) == COCO80_NAMES
    assert class_names_from_session(_Session({"names": "{0: 'cat', 1: 'dog'}"})) == ("cat", "dog")


@pytest.mark.parametrize(
    ("meta", "kind", "label"),
    [
        ({"yqt.arch": "yolo11n", "yqt.head": "nms"}, RAW, "yolo11n, nms head"),
        ({"yqt.arch": "yolov10n"}, END2END, "yolov10n, end2end head"),  # written before yqt.head existed
        ({"description": "Ultralytics YOLOv10n model "}, RAW, "yolov10n, nms head"),  # Ultralytics' own export
        ({}, None, ""),
    ],
)
def test_model_label(meta, kind, label):
    from yqt.models import model_label

    assert model_label(meta, kind) == label


@pytest.mark.parametrize(("arch", "family"), [("yolov10n", "yolov10"), ("yolo11s", "yolo11"), ("yolov8x", "yolov8")])
def test_family_of(arch, family):
    from yqt.models import family_of

    assert family_of(arch) == family
