"""Skip reasons, in one place.

In CI (``CI=true``) a missing prerequisite that CI provides (the shared data, Chromium) is a failure
that names what is missing, never a skip: a CI run must not go green by skipping. CUDA is not one of
them; CI machines have none.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SHARED_COCO = SHARED_DATA / "coco2017-mini"
SHARED_YOLO = SHARED_DATA / "coco128-yolo" / "data.yaml"
CHROMIUM = Path("/usr/bin/chromium")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(reason: str) -> None:
    """Skip for ``reason``; under ``CI=true``, fail with it."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def coco_root_or_skip() -> Path:
    """The real COCO dev set: ``$YQT_COCO_ROOT`` or ``../shared/data/coco2017-mini``."""
    root = Path(os.environ.get("YQT_COCO_ROOT") or SHARED_COCO)
    if not (root / "annotations" / "instances_val2017.json").is_file() or not (root / "val2017").is_dir():
        missing(f"shared COCO data absent: {root} (set YQT_COCO_ROOT or place coco2017-mini beside the repo)")
    return root


def yolo_data_or_skip() -> Path:
    """The real YOLO-format dataset: ``$YQT_YOLO_DATA`` or ``../shared/data/coco128-yolo/data.yaml``."""
    yaml = Path(os.environ.get("YQT_YOLO_DATA") or SHARED_YOLO)
    if not yaml.is_file() or not (yaml.parent / "images" / "val2017").is_dir():
        missing(f"shared YOLO data absent: {yaml} (set YQT_YOLO_DATA or place coco128-yolo beside the repo)")
    return yaml


def chromium_or_skip():
    """Playwright's sync API, with Debian's Chromium at ``/usr/bin/chromium`` to drive."""
    if not CHROMIUM.is_file():
        missing(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does where apt-get exists)")
    try:
        from playwright import sync_api
    except ImportError:
        missing("playwright not installed (pip install -e '.[test]')")
    return sync_api


def cuda_or_skip() -> None:
    from yqt.runtime import cuda_status

    ok, reason = cuda_status()
    if not ok:
        pytest.skip(f"no CUDA: {reason}")


def openvino_or_skip() -> None:
    """OpenVINO is the optional ``yqt[openvino]`` extra (in the ``test`` extra)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        pytest.skip("OpenVINO absent: pip install 'yqt[openvino]' (or the test extra)")
