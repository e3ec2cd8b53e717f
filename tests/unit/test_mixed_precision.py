"""The mixed-precision chooser: pure logic over scores and parameter counts (no torch)."""

from __future__ import annotations

import re

import pytest

from yqt.errors import YqtError
from yqt.quant.mixed import Candidate, choose_high_precision, mean_bits


def _model(sizes: dict[str, int], float_layers: tuple[str, ...] = ()) -> tuple[dict[str, float], dict[str, int]]:
    bits = {n: (32.0 if n in float_layers else 4.0) for n in sizes}
    return bits, dict(sizes)


def test_budget_is_never_exceeded_and_achieved_bits_are_exact():
    sizes = {f"l{i}": 100 * (i + 1) for i in range(20)}
    bits, params = _model(sizes)
    candidates = [Candidate(n, score=1.0 / (i + 1), params=sizes[n]) for i, n in enumerate(sizes)]
    for target in (4.0, 4.25, 4.5, 5.0, 6.0, 8.0):
        plan = choose_high_precision(candidates, bits, params, target)
        after = {**bits, **{n: 8.0 for n in plan.high}}
        assert plan.mean_bits == pytest.approx(mean_bits(after, params))
        assert plan.mean_bits <= target + 1e-9
    assert choose_high_precision(candidates, bits, params, 8.0).high  # everything fits at 8 bits
    assert len(choose_high_precision(candidates, bits, params, 8.0).high) == len(sizes)


def test_score_per_bit_decides_not_score_alone():
    # 'big' is the most sensitive but costs 100x more than 'small', which is half as sensitive.
    sizes = {"big": 10_000, "small": 100, "rest": 90_000}
    bits, params = _model(sizes)
    candidates = [Candidate("big", 1.0, 10_000), Candidate("small", 0.5, 100), Candidate("rest", 0.0, 90_000)]
    plan = choose_high_precision(candidates, bits, params, 4.1)
    assert plan.high == ("small",)  # 'big' (+0.4 bits) does not fit; 'small' does


def test_a_layer_that_does_not_fit_lets_smaller_ones_in():
    sizes = {"a": 1000, "b": 5000, "c": 400, "d": 93_600}
    bits, params = _model(sizes)
    candidates = [Candidate("a", 10.0, 1000), Candidate("b", 40.0, 5000), Candidate("c", 1.0, 400)]
    plan = choose_high_precision(candidates, bits, params, 4.06)  # room for 1500 params at +4 bits
    assert plan.high == ("a", "c")


def test_float_layers_count_32_bits_and_set_the_floor():
    sizes = {"dfl": 16, "x": 1000}
    bits, params = _model(sizes, float_layers=("dfl",))
    plan = choose_high_precision([Candidate("x", 1.0, 1000)], bits, params, 4.5)
    assert plan.floor_bits == pytest.approx((16 * 32 + 4000) / 1016)
    assert plan.high == ()  # +4 bits on x would be 8.4 mean bits
    with pytest.raises(YqtError, match=r"below 4\.4410, the mean bits"):
        choose_high_precision([Candidate("x", 1.0, 1000)], bits, params, 4.2)


def test_the_floor_in_the_refusal_is_a_target_that_is_accepted():
    """yolov10n's float DFL conv (16 of its 2,290,288 conv weights, at 32 bits) puts the floor just above
    4: the error states it rounded up, 4.0002 (the README's figure), and the target it names is accepted
    (the old hint, "4.00", was refused again)."""
    rest = 2_290_288 - 16
    bits, params = _model({"dfl": 16, "x": rest}, float_layers=("dfl",))
    floor = (16 * 32 + 4 * rest) / 2_290_288
    with pytest.raises(YqtError) as refused:
        choose_high_precision([Candidate("x", 1.0, rest)], bits, params, 4.0)
    stated = re.search(r"use --target-bits (\S+) or more", refused.value.hint or "")
    assert stated, refused.value.hint
    assert stated.group(1) == "4.0002" and floor <= 4.0002 < floor + 1e-4
    assert "below 4.0002, the mean bits" in refused.value.message
    plan = choose_high_precision([Candidate("x", 1.0, rest)], bits, params, float(stated.group(1)))
    assert plan.high == () and plan.floor_bits == pytest.approx(floor)


def test_reruns_agree_on_ties():
    sizes = {f"l{i}": 100 for i in range(10)}
    bits, params = _model(sizes)
    candidates = [Candidate(n, 1.0, 100) for n in sizes]
    first = choose_high_precision(candidates, bits, params, 4.8)
    again = choose_high_precision(list(reversed(candidates)), bits, params, 4.8)
    assert first.high == again.high == ("l0", "l1")


@pytest.mark.parametrize("target", [3.99, 8.01, 0.0, -1.0])
def test_target_outside_4_to_8_is_refused(target):
    bits, params = _model({"x": 10})
    with pytest.raises(YqtError, match="--target-bits must be between 4 and 8"):
        choose_high_precision([Candidate("x", 1.0, 10)], bits, params, target)


def test_zero_scores_are_not_promoted():
    sizes = {"a": 100, "b": 100}
    bits, params = _model(sizes)
    plan = choose_high_precision([Candidate("a", 0.0, 100), Candidate("b", 2.0, 100)], bits, params, 8.0)
    assert plan.high == ("b",)


def test_spearman_rank_correlation():
    from yqt.sensitivity import spearman

    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert spearman([1.0], [2.0]) == 0.0
