"""``sensitivity --verify-top`` on a raw-head model (issue 25): yolov10n's NMS head gives ``[84, 8400]``,
which must be decoded as eval decodes it before it is scored."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.integration

IMAGES = 8


@pytest.mark.slow
def test_verify_top_scores_a_raw_head_model_as_eval_does(coco_root: Path):
    """The same trained network with either head: the float mAP the check starts from is a real one for
    both (the NMS head scored as ``[N,6]`` rows was near 0), and close between the heads."""
    from yqt.data import load_coco
    from yqt.models import RAW, load_detector
    from yqt.quant import calibrate
    from yqt.records import LayerSensitivity
    from yqt.sensitivity import SweepLabels, verify_ranking

    images, _ = calibrate.select_calibration(coco_root / calibrate.CALIB_SUBDIR, IMAGES)
    annotations = coco_root / "annotations" / f"instances_{calibrate.CALIB_SUBDIR}.json"
    labels = SweepLabels(load_coco(annotations), annotations)
    top = LayerSensitivity("model.0.conv", rank=1, score=1.0, params=432, bytes_to_keep_8bit=216.0, seconds=0.0)
    sweep = SimpleNamespace(images=images, bits=4, ranked=lambda: [top])
    maps = {}
    for end2end in (True, False):
        detector = load_detector(None, 640, end2end=end2end)
        assert (detector.contract.kind == RAW) == (not end2end)
        check = verify_ranking(detector, sweep, labels, 1, None)  # type: ignore[arg-type]
        assert check.images == IMAGES and len(check.layers) == 1
        maps[end2end] = check.float_mAP_50_95
    assert maps[False] > 0.3, maps  # the float yolov10n scores about 0.45 on these images
    assert abs(maps[True] - maps[False]) < 0.05, maps
