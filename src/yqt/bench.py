"""``yqt bench``: latency of every model on every runtime, measured side by side in one process.

Latencies taken at different times on a shared machine do not compare: another job, a warmer cache
or a frequency change moves them by more than a quantization step does. Here every model × runtime
cell is loaded first and warmed up, then the rounds alternate: each round times every cell in
turn (the order rotated and reversed from round to round, so no cell always runs first or right
after the same neighbour), and each cell's speed is the median over rounds of its round median
divided by the reference's (the first model on the first runtime) in the same round. Load that
changes between rounds therefore hits both sides of each ratio; the CI is a bootstrap over rounds.

ORT sessions are built without intra-op spinning: a session whose idle threads busy-wait after its
run would take the cores from the cell timed next.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from yqt.backends import check_threads, open_model, require_model_file
from yqt.errors import YqtError
from yqt.records import BenchCell, BenchConfig, BenchHost, BenchResult, FileArtifact, Runtime, RuntimeInfo

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


def validate_bench_config(cfg: BenchConfig) -> None:
    if not cfg.models:
        raise YqtError("bench needs at least one model", "pass one or more MODEL.onnx files")
    if not cfg.runtimes:
        raise YqtError("--runtime names no runtime", "use ort, openvino or ort,openvino")
    check_threads(cfg.threads)
    for option, value, least in (("--batch", cfg.batch, 1), ("--rounds", cfg.rounds, 2),
                                 ("--runs-per-round", cfg.runs_per_round, 1), ("--warmup", cfg.warmup, 0)):  # fmt: skip
        if value < least:
            raise YqtError(f"{option} must be at least {least}, got {value}", f"pass e.g. {option} {max(least, 5)}")
    for model in cfg.models:
        if not any(runs_on(Path(model), r) for r in cfg.runtimes):
            require_model_file(Path(model), cfg.runtimes[0])  # says why, in one line
        for runtime in cfg.runtimes:
            if runs_on(Path(model), runtime):
                require_model_file(Path(model), runtime)


def runs_on(model: Path, runtime: Runtime) -> bool:
    """Whether ``runtime`` can run the file at all: an OpenVINO IR runs on OpenVINO only."""
    from yqt.filetypes import model_kind

    return not (runtime is Runtime.ORT and model.is_file() and model_kind(model) == "openvino-ir")


class _Cell:
    def __init__(self, index: int, model: Path, session: Any, info: RuntimeInfo, options: tuple[str, ...]) -> None:
        self.index, self.model, self.session, self.info, self.options = index, model, session, info, options
        self.feed: dict[str, np.ndarray] = {}
        self.samples: list[float] = []
        self.rounds: list[float] = []

    def once(self) -> float:
        t0 = time.perf_counter()
        self.session.run(None, self.feed)
        return time.perf_counter() - t0


def _feed(session: Any, model: Path, bgr: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    from yqt.data import letterbox
    from yqt.runtime import input_spec

    name, imgsz, dtype = input_spec(session)
    dim = session.get_inputs()[0].shape[0]
    if isinstance(dim, int) and dim != batch:
        raise YqtError(
            f"{model.name} takes a fixed batch of {dim}, not --batch {batch}",
            f"pass --batch {dim}, or export the model with a dynamic batch",
        )
    x, _ = letterbox(bgr, imgsz, dtype)
    return {name: np.ascontiguousarray(np.repeat(x, batch, axis=0))}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> tuple[float, float, float]:
    try:
        return tuple(round(v, 2) for v in os.getloadavg())  # type: ignore[return-value]
    except OSError:
        return (-1.0, -1.0, -1.0)


def round_order(n: int, r: int) -> list[int]:
    """Round ``r``'s order of ``n`` cells: rotated by ``r``, and reversed on odd rounds."""
    order = [(i + r) % n for i in range(n)]
    return order[::-1] if r % 2 else order


def ratio_stats(cell_rounds: Sequence[float], ref_rounds: Sequence[float], seed: int) -> tuple[float, float, float]:
    """Median of the per-round ratios, and a 95% bootstrap CI of that median (over rounds)."""
    ratios = np.asarray(cell_rounds, dtype=float) / np.asarray(ref_rounds, dtype=float)
    if np.allclose(ratios, 1.0, rtol=0, atol=1e-12):
        return 1.0, 1.0, 1.0
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(ratios), size=(2000, len(ratios)))
    medians = np.median(ratios[picks], axis=1)
    lo, hi = np.percentile(medians, [2.5, 97.5])
    return float(np.median(ratios)), float(lo), float(hi)


def _stats(cell: _Cell, ref: _Cell, batch: int, seed: int, artifact: FileArtifact) -> BenchCell:
    ms = sorted(s * 1000.0 for s in cell.samples)
    q1, median, q3 = (float(v) for v in np.percentile(ms, [25, 50, 75]))
    ratio, lo, hi = ratio_stats(cell.rounds, ref.rounds, seed)
    return BenchCell(
        index=cell.index,
        name=cell.model.stem,
        model=artifact,
        runtime=cell.info,
        session_options=cell.options,
        batch=batch,
        n=len(ms),
        median_ms=median,
        q1_ms=q1,
        q3_ms=q3,
        iqr_ms=q3 - q1,
        mean_ms=statistics.fmean(ms),
        throughput_ips=batch * 1000.0 / median,
        ratio=ratio,
        ratio_ci95=(lo, hi),
        round_ms=tuple(r * 1000.0 for r in cell.rounds),
    )


def bench(cfg: BenchConfig, run: Any = None, progress: ProgressFn | None = None) -> BenchResult:
    """Time every model of ``cfg`` on every runtime, side by side. With a run, writes bench/bench.json."""
    from yqt.data import default_smoke_image, read_image
    from yqt.runs import atomic_write_json, file_artifact, maybe_step, now_iso, package_versions, record_artifact

    validate_bench_config(cfg)
    t_start = time.perf_counter()
    image = Path(cfg.image) if cfg.image else default_smoke_image()
    bgr = read_image(image)
    cells: list[_Cell] = []
    skipped = []
    for model in (Path(m) for m in cfg.models):
        for runtime in cfg.runtimes:
            if not runs_on(model, runtime):
                skipped.append(f"{model.name} on {runtime.value}: an OpenVINO IR runs on OpenVINO only")
                continue
            session, report, info = open_model(model, runtime, cfg.providers, spin=False, threads=cfg.threads)
            cell = _Cell(len(cells), model, session, info, report.session_options)
            cell.feed = _feed(session, model, bgr, cfg.batch)
            cells.append(cell)
    artifacts = {m: file_artifact(m) for m in {c.model for c in cells}}
    with maybe_step(run, "bench", cfg) as step:
        for cell in cells:
            for _ in range(cfg.warmup):
                cell.once()
        load_before = _load()
        for r in range(cfg.rounds):
            for i in round_order(len(cells), r):
                times = [cells[i].once() for _ in range(cfg.runs_per_round)]
                cells[i].samples += times
                cells[i].rounds.append(statistics.median(times))
            if progress is not None:
                progress(r + 1, cfg.rounds)
        host = BenchHost(cpu_count=os.cpu_count() or 0, cpu=_cpu_name(), load_before=load_before, load_after=_load())
        ref = cells[0]
        result = BenchResult(
            config=cfg,
            cells=tuple(_stats(c, ref, cfg.batch, cfg.seed + c.index, artifacts[c.model]) for c in cells),
            reference=f"{ref.model.stem} on {ref.info.runtime.value}",
            image=image,
            host=host,
            seconds=time.perf_counter() - t_start,
            created=now_iso(),
            versions=package_versions(),
            bench_path=(run.root / "bench" / "bench.json").resolve() if run is not None else None,
            run_id=run.run_id if run is not None else None,
            skipped=tuple(skipped),
        )
        if run is not None:
            record_artifact(step, atomic_write_json(run.root / "bench" / "bench.json", result), "bench")
        if step is not None:
            cells = [
                {"name": c.name, "runtime": c.runtime.runtime.value, "median_ms": round(c.median_ms, 2),
                 "ratio": round(c.ratio, 4)} for c in result.cells
            ]  # fmt: skip
            step.summary.update(cells=cells, threads=cfg.threads)
        log.info("bench: %s", [(c.label, round(c.median_ms, 2), round(c.ratio, 3)) for c in result.cells])
        return result
