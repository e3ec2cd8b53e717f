"""What a user reads: every command's normal output at 80 columns, without colour. No word is broken
mid-word, and the last lines hold the result (passed or failed, and the artifact's path).

The CLI runs in-process on real records (the session's export, quantize and evaluations), each
rendered twice: at 80 columns, and at 400 as the reference of what every word is. A word of the
narrow output that the wide one lacks was broken; one shortened with "…" must start a real word.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from yqt.cli import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_BORDERS = re.compile(r"[\s│┃┏┓┗┛━─┡┩┯┷╇╈┣┫┠┨╭╮╰╯┌┐└┘├┤┬┴┼═║]+")


def _render(args: list[str], columns: int) -> tuple[int, str]:
    result = CliRunner().invoke(app, args, env={"COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


def _tokens(text: str) -> list[str]:
    return [t for t in _BORDERS.split(text) if t]


def broken_words(narrow: str, wide: str) -> list[str]:
    whole = set(_tokens(wide))
    broken = []
    for token in _tokens(narrow):
        if token in whole:
            continue
        if token.endswith("…") and any(w.startswith(token[:-1]) for w in whole):
            continue  # shortened visibly, not split
        head, mark, tail = token.partition("…")
        if mark and any(head in w[: len(w) - len(tail)] and w.endswith(tail) for w in whole):
            continue  # squeezed in the middle (compare's labels, maybe past a shared start), visibly
        if any(w.endswith(token) and w[: len(w) - len(token)].endswith(("-", "_", "/")) for w in whole):
            continue  # without the start every label shares (yolov10n-), at a separator
        broken.append(token)
    return broken


def overlong_lines(text: str, width: int) -> list[str]:
    """Lines past the width that are not one unbreakable token (a long path on its own line)."""
    return [ln for ln in text.splitlines() if len(ln) > width and max(map(len, ln.split())) < width - 20]


# What only a narrow page says: compare's note on the columns it had no room for.
_NARROW_ONLY = "note: not shown at 80 columns: size MB; widen the terminal, or use --markdown or --json"


def _check(args: list[str], expect_code: int, *last_words: str) -> str:
    code, narrow = _render(args, 80)
    wide_code, wide = _render(args, 400)
    assert code == wide_code == expect_code, narrow
    assert broken_words(narrow, f"{wide}\n{_NARROW_ONLY}") == [], narrow
    assert overlong_lines(narrow, 80) == [], narrow
    if os.environ.get("YQT_SHOW_OUTPUT"):
        print(f"\n$ yqt {' '.join(args)}\n{narrow}")
    tail = "\n".join(narrow.rstrip().splitlines()[-8:])
    for word in last_words:
        assert word in tail, f"{word!r} not in the last lines:\n{tail}"
    return narrow


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("YQT_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path


def test_export(baseline_export, in_tmp, monkeypatch: pytest.MonkeyPatch):
    import yqt.export

    monkeypatch.setattr(yqt.export, "export_baseline", lambda cfg, run: baseline_export)
    _check(["export", "--device", "cpu"], 0, "PASSED", baseline_export.onnx.path.name)


def test_smoke_passed_and_failed(w8a16, in_tmp, monkeypatch: pytest.MonkeyPatch):
    import yqt.runtime

    smoke = w8a16.smoke
    monkeypatch.setattr(yqt.runtime, "smoke", lambda cfg, run: smoke)
    _check(["smoke", str(w8a16.onnx.path), "--providers", "cpu"], 0, "PASSED", w8a16.onnx.path.name)
    failed = dataclasses.replace(smoke, passed=False, failure="--require-cuda: CUDAExecutionProvider did not attach")
    monkeypatch.setattr(yqt.runtime, "smoke", lambda cfg, run: failed)
    _check(["smoke", str(w8a16.onnx.path), "--require-cuda"], 1, "FAILED", "--require-cuda")


def test_eval(baseline_eval, in_tmp, monkeypatch: pytest.MonkeyPatch):
    import yqt.evaluate

    monkeypatch.setattr(yqt.evaluate, "evaluate", lambda cfg, run, progress: baseline_eval)
    _check(["eval", str(baseline_eval.onnx_path)], 0, "OK", "mAP50-95", "metrics.json")


def test_quantize_result_comes_first_and_names_the_file_to_ship(w8a16, in_tmp, monkeypatch: pytest.MonkeyPatch):
    import yqt.quantize

    monkeypatch.setattr(yqt.quantize, "quantize", lambda cfg, run, progress: w8a16)
    out = _check(["quantize", "--mode", "w8a16"], 0, "PASSED", "ship", w8a16.onnx.path.name)
    assert "82 convs: int8" in out and "1 kept float: model.23.dfl.conv" in out
    assert "Export device" not in out  # the device is one line, not a second table
    assert len(out.splitlines()) <= 30, out
    verbose = _check(["quantize", "--mode", "w8a16", "--verbose"], 0, "PASSED", w8a16.onnx.path.name)
    assert "model.2.m.0.cv1.conv" in verbose  # every layer, on request
    failed = dataclasses.replace(w8a16, passed=False, onnx=None, onnx_opt=None, smoke=None,
                                 failures=("parity: 60/75 detections matched (80.0% < 99%)",))  # fmt: skip
    monkeypatch.setattr(yqt.quantize, "quantize", lambda cfg, run, progress: failed)
    _check(["quantize"], 1, "FAILED", "parity: 60/75", "nothing")


def test_inspect_graph(w8a16, in_tmp):
    out = _check(["inspect-graph", str(w8a16.onnx.path)], 0, "OK", w8a16.onnx.path.name)
    assert "Layers" in out


@pytest.fixture(scope="module")
def comparisons(baseline_eval, w8a16_eval):
    """A passing and a failing comparison of the session's run (w8a16 gained +0.76 pt; -1 demands +1)."""
    from yqt.compare import compare
    from yqt.records import CompareConfig

    run_dir = str(Path(baseline_eval.metrics_path).parents[1])
    passing = compare(CompareConfig(inputs=(run_dir,), bootstrap=100, max_drop_pt=0.5))
    failing = compare(CompareConfig(inputs=(run_dir,), bootstrap=100, max_drop_pt=-1.0))
    return passing, failing


def test_compare_verdict_says_its_rule_on_stdout(comparisons, in_tmp, monkeypatch: pytest.MonkeyPatch):
    import yqt.compare

    passing, failing = comparisons
    monkeypatch.setattr(yqt.compare, "compare", lambda cfg: passing)
    out = _check(["compare", "x", "--max-drop", "0.5"], 0, "PASSED", "--max-drop 0.5", "saved")
    assert "PASS: ΔmAP50-95 +" in out and "is within the −0.50 pt allowed (--max-drop 0.5)" in " ".join(out.split())
    monkeypatch.setattr(yqt.compare, "compare", lambda cfg: failing)
    out = _check(["compare", "x", "--max-drop", "-1"], 1, "FAILED", "--max-drop -1")
    assert "FAIL: ΔmAP50-95" in out and "is below the +1.00 pt allowed" in " ".join(out.split())
