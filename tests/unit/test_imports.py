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


def test_the_weight_only_check_in_eval_reads_bytes_not_onnx(tmp_path):
    """eval's session setup decides weight-only QDQ without importing onnx (through ml_dtypes, slower
    than the ORT session: benchmarks/eval_overhead.py), and agrees with onnx's own reading."""
    from onnx import TensorProto, helper, save

    def model(ops: list[str], path) -> str:
        nodes, name = [], "x"
        for i, op in enumerate(ops):
            inputs = [name, "s", "z"] if op.endswith("QuantizeLinear") else [name]
            nodes.append(helper.make_node(op, inputs, [f"t{i}"], name=f"QuantizeLinear_{i}"))  # names do not count
            name = f"t{i}"
        inits = [
            helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]),
            helper.make_tensor("z", TensorProto.INT8, [], [0]),
        ]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.INT8, [1])],
                                  [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1])], inits)  # fmt: skip
        save(helper.make_model(graph), str(path))
        return str(path)

    cases = {"weight-only": (["DequantizeLinear", "Relu"], True), "float": (["Relu"], False)}
    cases["activations"] = (["DequantizeLinear", "QuantizeLinear", "DequantizeLinear"], False)
    for name, (ops, expected) in cases.items():
        path = model(ops, tmp_path / f"{name}.onnx")
        code = f"from yqt.runtime import is_weight_only_qdq\nassert is_weight_only_qdq({path!r}) is {expected}"
        assert "onnx" not in _modules_after(code), name
