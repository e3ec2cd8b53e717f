"""yqt: quantize, export, run and score Ultralytics YOLO detectors (YOLOv10, YOLOv8, YOLO11), with evidence.

The library is usable without the CLI; nothing here imports typer, rich or torch at import time.
"""

from __future__ import annotations

__version__ = "0.1.0"
