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


@pytest.mark.parametrize("command", ["export", "smoke", "eval"])
def test_each_command_has_json_and_run_options(command: str):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    for option in ("--json", "--runs-dir", "--run"):
        assert option in result.output


def test_unknown_provider_is_a_user_error():
    from yqt.errors import YqtError
    from yqt.runtime import parse_providers

    assert parse_providers("CUDA, cpu") == ("cuda", "cpu")
    with pytest.raises(YqtError, match="unknown execution provider"):
        parse_providers("cuda,rocm")
