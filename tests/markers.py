"""Skip reasons, in one place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_COCO = REPO.parent / "shared" / "data" / "coco2017-mini"


def coco_root_or_skip() -> Path:
    """The real COCO dev set: ``$YQT_COCO_ROOT`` or ``../shared/data/coco2017-mini``."""
    root = Path(os.environ.get("YQT_COCO_ROOT") or SHARED_COCO)
    if not (root / "annotations" / "instances_val2017.json").is_file() or not (root / "val2017").is_dir():
        pytest.skip(f"shared COCO data absent: {root} (set YQT_COCO_ROOT or place coco2017-mini beside the repo)")
    return root


def cuda_or_skip() -> None:
    from yqt.runtime import cuda_status

    ok, reason = cuda_status()
    if not ok:
        pytest.skip(f"no CUDA: {reason}")
