"""Measure every layer's sensitivity with :mod:`yqt.quant.probe`, rank the layers, and read a saved
ranking back (refusing one made for another model). ``yqt sensitivity`` and ``yqt quantize
--target-bits`` both call it; neither depends on the other.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from yqt.errors import YqtError
from yqt.models import LoadedDetector
from yqt.quant import calibrate
from yqt.records import CalibrationSet, LayerSensitivity, SensitivityConfig, SensitivityResult

ProgressFn = Callable[[int, int], None]

SCORE_TEXT = (
    "relative squared error of the head's box and class logits against float, with this layer alone at "
    "the probe bits; higher: keep it at 8 bits"
)


def image_batches(calib: CalibrationSet, imgsz: int, batch: int) -> list[Any]:
    import torch

    tensors = calibrate.torch_batches(calib, imgsz)
    return [torch.cat(tensors[i : i + batch]) for i in range(0, len(tensors), batch)]


def rank_layers(scores: Sequence[Any], params: dict[str, int], bits: int) -> tuple[LayerSensitivity, ...]:
    """Rank 1 is the highest score; ties go by name, so a rerun ranks identically."""
    order = sorted(scores, key=lambda s: (-s.score, s.layer))
    rank = {s.layer: i for i, s in enumerate(order, 1)}
    return tuple(_layer_row(s, rank[s.layer], params[s.layer], bits) for s in scores)


def _layer_row(s: Any, rank: int, params: int, bits: int) -> LayerSensitivity:
    return LayerSensitivity(
        name=s.layer, rank=rank, score=s.score, params=params,
        bytes_to_keep_8bit=params * (8 - bits) / 8, seconds=s.seconds,
    )  # fmt: skip


def measure(
    detector: LoadedDetector,
    calib: CalibrationSet,
    cfg: SensitivityConfig,
    progress: ProgressFn | None = None,
    cluster: Any = None,
) -> SensitivityResult:
    """The sweep on an already loaded float model (left exactly as it was); with ``cluster`` (a
    :class:`yqt.ray_backend.Cluster`), the layers' probes run in shards on Ray workers."""
    import torch

    from yqt.quant import probe

    t = time.perf_counter()
    module = detector.module
    if cluster is not None:
        images_s = 0.0  # each shard reads the images itself
        targets = probe.probe_targets(module)
        scores, timings = cluster.sweep_layers(cfg, detector.info.sha256, calib, targets, progress)
    else:
        batches = image_batches(calib, cfg.imgsz, cfg.batch)
        images_s = time.perf_counter() - t
        with torch.no_grad():
            scores, timings = probe.sweep_layers(
                module, batches, cfg.bits, cfg.act, cfg.calib_percentile, None, progress
            )
    params = {name: int(module.get_submodule(name).weight.numel()) for name in probe.probe_targets(module)}
    return SensitivityResult(
        model=detector.info, bits=cfg.bits, act=cfg.act, score=SCORE_TEXT,
        head_outputs=probe.head_output_convs(module), layers=rank_layers(scores, params, cfg.bits), images=calib,
        timings={"images_s": images_s, **timings}, config=cfg,
    )  # fmt: skip


def load_ranking(path: Path, detector: LoadedDetector, layers: Sequence[str], bits: int) -> dict[str, Any]:
    """A sensitivity JSON for this very model, checked: same weights, same bits, every layer scored."""
    path = Path(path)
    try:
        doc = json.loads(path.read_bytes())
        rows = {r["name"]: r for r in doc["layers"]}
        model, probe_bits = doc["model"], int(doc["bits"])
    except FileNotFoundError:
        raise YqtError(f"--sensitivity file not found: {path}", "run yqt sensitivity first") from None
    except (ValueError, KeyError, TypeError):
        raise YqtError(
            f"{path} is not a yqt sensitivity JSON", "pass sensitivity/<model>-w4.json from a yqt sensitivity run"
        ) from None
    mine = detector.info
    if model.get("sha256") != mine.sha256 or model.get("arch") != mine.arch:
        theirs = f"{model.get('arch')} {str(model.get('sha256'))[:12]}"
        raise YqtError(
            f"{path.name} ranks another model ({theirs}), not {mine.arch} {str(mine.sha256)[:12]}",
            "run yqt sensitivity with the same --weights, or drop --sensitivity to measure it now",
        )
    if probe_bits != bits:
        raise YqtError(
            f"{path.name} probed {probe_bits}-bit weights, but this mode's weights are {bits}-bit",
            f"run yqt sensitivity --bits {bits}",
        )
    missing = [n for n in layers if n not in rows]
    if missing:
        raise YqtError(
            f"{path.name} has no score for {len(missing)} of the model's layers (e.g. {missing[0]})",
            "rerun yqt sensitivity on this model; the file may have been edited or made with other --exclude",
        )
    return rows
