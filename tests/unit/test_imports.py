"""The library stays light: ``import yqt`` loads neither typer nor rich, records never load torch,
and ``yqt --help`` (argument parsing) imports none of the heavy packages."""

from __future__ import annotations

import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    return set(out.split())


HEAVY = {"torch", "ultralytics", "brevitas", "onnxruntime", "onnx", "pycocotools", "cv2"}


def test_import_yqt_loads_no_cli_or_ui_packages():
    loaded = _modules_after("import yqt")
    assert not {"typer", "rich", *HEAVY} & loaded


def test_records_and_runs_do_not_load_torch():
    loaded = _modules_after("import yqt.records, yqt.runs, yqt.errors")
    assert not HEAVY & loaded


def test_cli_help_imports_no_heavy_dependency():
    loaded = _modules_after(
        "from typer.testing import CliRunner\nfrom yqt.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0"
    )
    assert not HEAVY & loaded


def test_eval_module_does_not_import_torch():
    loaded = _modules_after("import yqt.evaluate")
    assert not {"torch", "ultralytics", "brevitas"} & loaded


def test_serial_commands_never_import_ray():
    """Ray is loaded by --ray only: not by the stage modules, nor by parsing eval, sensitivity or pipeline."""
    loaded = _modules_after(
        "import yqt.evaluate, yqt.pipeline, yqt.sensitivity\n"
        "from typer.testing import CliRunner\nfrom yqt.cli import app\n"
        "for c in ('eval', 'sensitivity', 'pipeline'):\n"
        "    r = CliRunner().invoke(app, [c, '--help'])\n    assert r.exit_code == 0 and '--ray' in r.output"
    )
    assert "ray" not in loaded
