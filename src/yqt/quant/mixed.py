"""Automatic mixed precision: which layers to keep at 8 bits within a mean-bits budget.

Pure logic over a sensitivity ranking and the layers' parameter counts. The budget is the
parameter-weighted mean of every conv/linear weight's bits, float layers counted at 32, the same
number ``yqt quantize`` reports, so "≤ 4.5 bits" is checked with the arithmetic it is shown with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yqt.errors import YqtError

MIN_TARGET_BITS = 4.0
MAX_TARGET_BITS = 8.0


@dataclass(frozen=True)
class Candidate:
    name: str
    score: float  # how much the layer alone at low bits moves the head; higher: keep it at 8 bits
    params: int


@dataclass(frozen=True)
class MixedPlan:
    high: tuple[str, ...]  # chosen for the high precision, in the order picked
    mean_bits: float
    target_bits: float
    floor_bits: float  # the mean bits with nothing promoted: the lowest target that can be met


def check_target(target_bits: float) -> None:
    if not MIN_TARGET_BITS <= target_bits <= MAX_TARGET_BITS:
        raise YqtError(
            f"--target-bits must be between {MIN_TARGET_BITS:g} and {MAX_TARGET_BITS:g}, got {target_bits:g}",
            "pick a mean weight budget such as 4.5 (4: every layer 4-bit, 8: every layer 8-bit)",
        )


def lowest_target(floor: float) -> str:
    """``floor`` rounded *up* to 4 decimals, as text: a target that the floor check accepts (a float DFL
    puts yolov10n's floor at 4.0002..., which rounded to nearest would be refused again)."""
    return f"{math.ceil(floor * 1e4) / 1e4:.4f}"


def mean_bits(bits_by_layer: Mapping[str, float], params: Mapping[str, int]) -> float:
    total = sum(params[n] for n in bits_by_layer)
    return sum(bits_by_layer[n] * params[n] for n in bits_by_layer) / total if total else 0.0


def choose_high_precision(
    candidates: Sequence[Candidate],
    bits_by_layer: Mapping[str, float],
    params: Mapping[str, int],
    target_bits: float,
    high_bits: int = 8,
) -> MixedPlan:
    """Greedy knapsack: promote candidates in order of score per extra weight bit while the mean
    stays ≤ ``target_bits``; one that does not fit is skipped and smaller ones still get a chance.

    ``bits_by_layer`` holds every conv/linear layer's bits before promotion (float ones at 32),
    ``candidates`` the layers that may be promoted (those at low bits).

    Greedy rather than exact: on yolov10n's sweep an exact 0/1 knapsack over the same scores
    removed 2.4108 of the 2.7357 total score at 4.5 bits, against greedy's 2.4088 (5.0 bits: 2.5567
    vs 2.5558; 4.25 bits: the same set).
    """
    check_target(target_bits)
    total_params = sum(params[n] for n in bits_by_layer)
    spent = sum(bits_by_layer[n] * params[n] for n in bits_by_layer)
    floor = spent / total_params
    if floor > target_bits + 1e-12:
        lowest = lowest_target(floor)
        raise YqtError(
            f"--target-bits {target_bits:g} is below {lowest}, the mean bits of the model with no layer promoted "
            "(layers kept float count as 32 bits)",
            f"use --target-bits {lowest} or more"
            if float(lowest) <= MAX_TARGET_BITS
            else "keep fewer layers float (--exclude), or use a mode without --target-bits",
        )
    allowance = target_bits * total_params
    extra = {c.name: (high_bits - bits_by_layer[c.name]) * c.params for c in candidates}
    order = sorted(
        (c for c in candidates if extra[c.name] > 0),
        key=lambda c: (-c.score / extra[c.name], c.name),  # the name breaks ties, so reruns agree
    )
    chosen = []
    for c in order:
        if c.score <= 0:
            break
        if spent + extra[c.name] <= allowance + 1e-9:
            spent += extra[c.name]
            chosen.append(c.name)
    return MixedPlan(tuple(chosen), spent / total_params, target_bits, floor)


def choose_mixed_precision(
    decisions: Sequence[Any],
    ranking: dict[str, Any],
    target_bits: float,
    source: Path | None,
    source_sha256: str,
) -> tuple[tuple[tuple[str, str], ...], Any]:
    """The layers to keep at 8 bits for ``target_bits``: (layer, why) pairs and the report."""
    from yqt.records import MixedPrecisionReport, PromotedLayer

    bits = {d.name: float(d.bits if d.bits is not None else 32) for d in decisions}
    params = {d.name: d.params for d in decisions}
    low = [d for d in decisions if d.quantized and d.bits is not None and d.bits < 8]
    candidates = [Candidate(d.name, float(ranking[d.name]["score"]), d.params) for d in low]
    plan = choose_high_precision(candidates, bits, params, target_bits)
    promoted = tuple(
        PromotedLayer(n, int(ranking[n]["rank"]), float(ranking[n]["score"]), params[n]) for n in plan.high
    )
    # One reason for all, so the layer table groups them; each one's rank and score is in the report.
    why = tuple((p.name, f"--target-bits {target_bits:g}: among the most sensitive per bit") for p in promoted)
    report = MixedPrecisionReport(
        target_bits=target_bits, mean_bits=plan.mean_bits, floor_bits=plan.floor_bits, promoted=promoted,
        sensitivity=source, sensitivity_sha256=source_sha256,
        rule="greedy: highest sensitivity score per extra weight bit first, while the parameter-weighted "
        "mean weight bits (float layers at 32) stays within the target",
    )  # fmt: skip
    return why, report
