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


def test_unknown_mode_is_rejected_before_any_heavy_work():
    from yqt.errors import YqtError
    from yqt.modes import MODES, get_mode

    assert set(MODES) == {"w8a16", "w8a8", "w4a16", "w4a8"}
    assert get_mode("W8A16").weight_range == (-127, 127)
    with pytest.raises(YqtError, match="unknown quantization mode"):
        get_mode("int8")
    for name in ("w8a8", "w4a16", "w4a8"):
        with pytest.raises(YqtError, match="not implemented yet"):
            get_mode(name)
