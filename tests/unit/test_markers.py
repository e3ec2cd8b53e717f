"""A missing prerequisite skips locally and fails under CI=true, naming what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import markers


@pytest.mark.parametrize(
    ("variable", "check", "named"),
    [
        ("YQT_COCO_ROOT", markers.coco_root_or_skip, "shared COCO data absent"),
        ("YQT_YOLO_DATA", markers.yolo_data_or_skip, "shared YOLO data absent"),
    ],
)
def test_missing_data_skips_locally_and_fails_in_ci(variable, check, named, tmp_path: Path, monkeypatch):
    absent = tmp_path / "absent"
    monkeypatch.setenv(variable, str(absent))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=named):
        check()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"CI=true and {named}: {absent}"):
        check()


def test_missing_chromium_fails_in_ci(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(markers, "CHROMIUM", tmp_path / "chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and no Chromium at"):
        markers.chromium_or_skip()


def test_the_default_data_is_found_beside_the_repo(monkeypatch):
    monkeypatch.delenv("YQT_COCO_ROOT", raising=False)
    monkeypatch.delenv("YQT_YOLO_DATA", raising=False)
    monkeypatch.delenv("CI", raising=False)
    assert markers.coco_root_or_skip() == markers.SHARED_COCO
    assert markers.yolo_data_or_skip() == markers.SHARED_YOLO
