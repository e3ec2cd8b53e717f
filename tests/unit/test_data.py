from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from yqt.data import (
    COCO80_TO_91,
    Letterbox,
    ids_sha256,
    letterbox,
    letterbox_params,
    read_ids_list,
    read_image,
    resolve_coco_paths,
    select_image_ids,
    unletterbox_xyxy,
)
from yqt.errors import YqtError


def test_first_n_ids_are_taken_in_ascending_order():
    sel = select_image_ids([30, 10, 20, 40], max_images=2)
    assert sel.ids == (10, 20) and sel.warnings == ()


def test_more_images_than_available_uses_all_and_says_so():
    sel = select_image_ids([3, 1, 2], max_images=10)
    assert sel.ids == (1, 2, 3)
    assert "exceeds the 3 images available" in sel.warnings[0]


def test_zero_images_is_an_error():
    with pytest.raises(YqtError, match="--max-images must be at least 1"):
        select_image_ids([1, 2], max_images=0)


def test_ids_list_must_name_known_ids():
    with pytest.raises(YqtError, match="2 id\\(s\\) in the image id list are not in the annotations: 7, 9"):
        select_image_ids([1, 2, 3], ids_list=[1, 7, 9])
    sel = select_image_ids([1, 2, 3], ids_list=[3, 1, 3])
    assert sel.ids == (1, 3) and "duplicate" in sel.warnings[0]


def test_ids_list_file_parsing(tmp_path: Path):
    f = tmp_path / "ids.txt"
    f.write_text("# dev subset\n139, 802\n6818  # trailing comment\n\n")
    assert read_ids_list(f) == [139, 802, 6818]
    f.write_text("139\nabc\n")
    with pytest.raises(YqtError, match="'abc' is not an integer image id"):
        read_ids_list(f)


def test_ids_hash_ignores_order_but_not_content():
    assert ids_sha256([3, 1, 2]) == ids_sha256([1, 2, 3])
    assert ids_sha256([1, 2]) != ids_sha256([1, 2, 3])


def test_letterbox_matches_ultralytics_rounding():
    # 640x427 (a typical COCO landscape) → 640x427 content, 106.5 px of padding split 106/107.
    new_w, new_h, _, (top, bottom, left, right) = letterbox_params(640, 427, 640)
    assert (new_w, new_h) == (640, 427)
    assert (top, bottom, left, right) == (106, 107, 0, 0)
    assert new_h + top + bottom == 640


def test_letterbox_tensor_layout_and_padding_value():
    bgr = np.zeros((100, 200, 3), dtype=np.uint8)
    bgr[..., 0] = 255  # pure blue in BGR
    x, lb = letterbox(bgr, 64)
    assert x.shape == (1, 3, 64, 64) and x.dtype == np.float32
    assert x[0, 2, 32, 32] == pytest.approx(1.0)  # blue lands in the last RGB channel
    assert x[0, 0, 0, 0] == pytest.approx(114 / 255)  # padding
    assert (lb.pad_x, lb.pad_y) == (0, 16)


def test_unletterbox_inverts_letterbox_and_clips():
    lb = Letterbox(gain_x=0.5, gain_y=0.5, pad_x=0, pad_y=16, orig_w=200, orig_h=100)
    boxes = np.array([[10.0, 26.0, 50.0, 36.0], [-5.0, 0.0, 200.0, 80.0]])
    out = unletterbox_xyxy(boxes, lb)
    np.testing.assert_allclose(out[0], [20, 20, 100, 40])
    np.testing.assert_allclose(out[1], [0, 0, 200, 100])


def test_coco_category_map_is_the_standard_one():
    assert len(COCO80_TO_91) == 80 and len(set(COCO80_TO_91)) == 80
    assert COCO80_TO_91[0] == 1 and COCO80_TO_91[-1] == 90 and 12 not in COCO80_TO_91


def test_coco_paths_errors_name_the_fix(tmp_path: Path):
    with pytest.raises(YqtError, match="no COCO data given"):
        resolve_coco_paths(None)
    with pytest.raises(YqtError, match="--coco-root not found"):
        resolve_coco_paths(tmp_path / "nope")
    with pytest.raises(YqtError, match="annotations file not found"):
        resolve_coco_paths(tmp_path)


def test_corrupt_image_is_an_error(tmp_path: Path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(YqtError, match="cannot be decoded"):
        read_image(bad)
