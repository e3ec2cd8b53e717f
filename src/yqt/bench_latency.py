"""Which latency compare and the report show for a set of evaluations.

An eval's own timing was measured whenever that eval ran, beside whatever else the machine was
doing; two of them do not compare. A ``yqt bench`` timed its models side by side in one process. So
when one bench in the runs involved covers every evaluated model (by file sha256, on the runtime the
eval used), its latencies are shown, each ratio to the baseline paired round by round as bench pairs
them, labelled with the bench's runtime and threads. Otherwise each eval's timing is shown, and the
label says it is that fallback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BENCH_FILE = Path("bench") / "bench.json"
EVAL_NOTE = (
    "latency: each eval's own median, measured whenever that eval ran, not side by side; "
    "run yqt bench on the models (the pipeline does) to compare latencies"
)


@dataclass(frozen=True)
class LatencyPick:
    source: str  # "bench" or "eval"
    note: str  # where the latencies come from, in one line, for tables and the report
    median_ms: dict[int, float | None] = field(default_factory=dict)  # evaluation index → ms
    ratio: dict[int, float | None] = field(default_factory=dict)  # to the baseline's latency
    ratio_ci95: dict[int, tuple[float, float] | None] = field(default_factory=dict)  # bench only: over rounds


def _runtime(doc: Mapping[str, Any]) -> str:
    return str((doc.get("runtime") or {}).get("runtime") or "ort")


def _bench_docs(paths: Sequence[Path]) -> list[tuple[Path, dict[str, Any]]]:
    """Every bench.json of the runs the evaluations (``<run>/<name>-coco/metrics.json``) live in."""
    found: dict[Path, dict[str, Any]] = {}
    for path in paths:
        bench = Path(path).resolve().parent.parent / BENCH_FILE
        if bench in found or not bench.is_file():
            continue
        try:
            doc = json.loads(bench.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("unreadable %s: %s", bench, exc)
            continue
        if isinstance(doc, dict) and str(doc.get("schema", "")).startswith("yqt/bench/"):
            found[bench] = doc
    return sorted(found.items(), key=lambda item: str(item[1].get("created", "")), reverse=True)


def _cells_for(doc: Mapping[str, Any], evals: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for cell in doc.get("cells", []):
        key = ((cell.get("model") or {}).get("sha256", ""), (cell.get("runtime") or {}).get("runtime", ""))
        by_key.setdefault(key, cell)
    cells = [by_key.get((str(e.get("onnx_sha256", "")), _runtime(e))) for e in evals]
    return None if any(c is None for c in cells) else cells  # type: ignore[return-value]


def bench_label(doc: Mapping[str, Any], path: Path | None = None) -> str:
    cfg = doc.get("config") or {}
    runtimes = ", ".join("OpenVINO" if r == "openvino" else "ORT" for r in cfg.get("runtimes", []))
    threads = cfg.get("threads")
    text = (
        f"latency: yqt bench of {str(doc.get('created', ''))[:16]}, side by side in one process on {runtimes}, "
        f"{threads if threads else 'default'} threads, {cfg.get('rounds')} rounds; × base: paired by round"
    )
    return text + (f" ({path})" if path is not None else "")


def pick_latency(evals: Sequence[Mapping[str, Any]], paths: Sequence[Path], baseline: int = 0) -> LatencyPick:
    """The latencies to show for ``evals`` (metrics.json documents at ``paths``), against ``evals[baseline]``."""
    from yqt.bench import ratio_stats

    for path, doc in _bench_docs(paths):
        cells = _cells_for(doc, evals)
        if cells is None:
            continue
        base = cells[baseline]["round_ms"]
        pick = LatencyPick("bench", bench_label(doc, path))
        for i, cell in enumerate(cells):
            pick.median_ms[i] = float(cell["median_ms"])
            rounds = cell["round_ms"]
            if rounds and len(rounds) == len(base):  # the same bench: one round-ms per round for every cell
                ratio, lo, hi = ratio_stats(rounds, base, seed=i)
                pick.ratio[i], pick.ratio_ci95[i] = ratio, (lo, hi)
        return pick
    pick = LatencyPick("eval", EVAL_NOTE)
    for i, e in enumerate(evals):
        pick.median_ms[i] = (e.get("latency") or {}).get("median_ms")
    base_ms = pick.median_ms.get(baseline)
    for i, ms in pick.median_ms.items():
        pick.ratio[i] = ms / base_ms if ms and base_ms else None
    return pick
