"""What a model file says about the images it was calibrated on, by content.

Quantize writes the calibration set into the ONNX metadata; eval reads it back to refuse scoring a
model on images it has seen. Both sides import this module, so neither imports the other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from yqt.errors import YqtError
from yqt.records import CalibrationSet
from yqt.runs import sha256_file

METADATA_KEY = "yqt.calibration"


def calibration_metadata(calib: CalibrationSet) -> dict[str, str]:
    """The ONNX metadata entry that lets eval recognise calibration images by content."""
    payload = {
        "folder": str(calib.folder),
        "count": len(calib.images),
        "sha256": calib.sha256,
        "images": [[i.name, i.sha256] for i in calib.images],
    }
    return {METADATA_KEY: json.dumps(payload, separators=(",", ":"))}


def calibration_hashes(metadata: Mapping[str, str]) -> dict[str, str]:
    """sha256 → file name of the images a model was calibrated on, from its ONNX metadata."""
    raw = metadata.get(METADATA_KEY)
    if not raw:
        return {}
    try:
        return {sha: name for name, sha in json.loads(raw)["images"]}
    except (ValueError, KeyError, TypeError):
        raise YqtError(
            f"the model's {METADATA_KEY} metadata is unreadable", "re-quantize the model with yqt quantize"
        ) from None


def calibration_overlap(metadata: Mapping[str, str], images: list[Path]) -> list[str]:
    """Names of ``images`` whose content is one of the model's calibration images."""
    known = calibration_hashes(metadata)
    if not known:
        return []
    return [p.name for p in images if sha256_file(p) in known]
