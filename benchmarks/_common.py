"""Helpers shared by the benchmark scripts: locating the dev set and timing whole processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_COCO = REPO.parent / "shared" / "data" / "coco2017-mini"
sys.path.insert(0, str(REPO))  # the tests' helpers, shared with the benchmarks

from tests.yolo_dataset import yolo_dataset  # noqa: E402  (re-exported for the benchmarks)

__all__ = [
    "REPO",
    "coco_root_or_exit",
    "cpu_quantize_config",
    "export_baseline",
    "ort_eval",
    "ort_map",
    "timed_process",
    "yolo_dataset",
    "yqt",
]


def coco_root_or_exit() -> Path:
    root = Path(os.environ.get("YQT_COCO_ROOT") or SHARED_COCO)
    if not (root / "annotations" / "instances_val2017.json").is_file():
        print(f"SKIP: shared COCO data absent at {root} (set YQT_COCO_ROOT)")
        sys.exit(0)
    return root


def timed_process(args: list[str], env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess]:
    """Wall time of a whole process, imports included."""
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})})
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(args)}")
    return elapsed, proc


def yqt(*args: str) -> list[str]:
    return [sys.executable, "-m", "yqt", *args]


def export_baseline(runs_dir: Path, run_id: str = "bench") -> Path:
    _, proc = timed_process(yqt("export", "--runs-dir", str(runs_dir), "--run", run_id, "--json"))
    return Path(json.loads(proc.stdout)["onnx"]["path"]).resolve()


def ort_eval(path: Path, run, **where):
    """ORT CPU evaluation of one ONNX, recorded in ``run``; ``where`` names the images (EvalConfig's
    fields: ``coco_root`` and ``max_images``, ``images_dir``/``annotations``/``image_ids_list``, or
    ``data``)."""
    from yqt.evaluate import evaluate
    from yqt.records import EvalConfig

    return evaluate(EvalConfig(onnx=path, providers=("cpu",), **where), run)


def ort_map(path: Path, coco: Path, max_images: int, run) -> float:
    """ORT CPU mAP50-95 of one ONNX on the first ``max_images`` dev ids, recorded in ``run``."""
    return ort_eval(path, run, coco_root=coco, max_images=max_images).metrics.mAP_50_95


def cpu_quantize_config(coco: Path, **fields):
    """The benchmarks' QuantizeConfig: export and ORT on the CPU, parity on the dev images, calibration
    on ``coco``'s train2017 unless ``fields`` name a ``data`` YAML; every other field as given."""
    from yqt.records import QuantizeConfig

    source = {} if fields.get("data") else {"coco_root": coco}
    return QuantizeConfig(providers=("cpu",), device="cpu", parity_images=coco / "val2017", **source, **fields)
