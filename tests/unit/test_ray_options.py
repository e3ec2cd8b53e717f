"""``--ray`` wiring that needs no cluster: the optional value, the missing extra, an address nobody
answers at, and how work is split into shards."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.conftest import CliResult, assert_one_line_error
from yqt.cli import _bare_ray
from yqt.ray_backend import _shards, is_address


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["m.onnx", "--ray"], ["m.onnx", "--ray", "local"]),
        (["--ray", "m.onnx"], ["--ray", "local", "m.onnx"]),
        (["--ray", "--max-images", "5"], ["--ray", "local", "--max-images", "5"]),
        (["--ray", "auto", "m.onnx"], ["--ray", "auto", "m.onnx"]),
        (["--ray", "127.0.0.1:6379"], ["--ray", "127.0.0.1:6379"]),
        (["--ray", "ray://head:10001"], ["--ray", "ray://head:10001"]),
        (["--ray=127.0.0.1:6379"], ["--ray=127.0.0.1:6379"]),
    ],
)
def test_bare_ray_means_a_local_instance(args, expected):
    assert _bare_ray(args) == expected


def test_addresses_and_paths_are_told_apart():
    assert is_address("auto") and is_address("10.0.0.5:6379") and is_address("[::1]:6379")
    assert not is_address("model.onnx") and not is_address("runs/a:b/model.onnx")


@pytest.mark.parametrize(("n", "parts"), [(128, 2), (7, 3), (2, 8), (1, 1), (10, 1)])
def test_shards_cover_every_item_once_in_order(n, parts):
    shards = _shards(n, parts)
    assert [i for s in shards for i in s] == list(range(n))
    assert all(len(s) for s in shards) and len(shards) == min(n, parts)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def _yqt(code: str, *args: str) -> CliResult:
    probe = f"import sys\n{code}\nsys.argv = ['yqt', *sys.argv[1:]]\nfrom yqt.cli import main\nmain()"
    proc = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize("command", [["eval", "m.onnx"], ["sensitivity"], ["pipeline"]])
def test_without_ray_installed_ray_names_the_extra(command, tmp_path):
    result = _yqt("sys.modules['ray'] = None  # import ray fails, as without the extra", *command, "--ray",
                  "--runs-dir", str(tmp_path))  # fmt: skip
    assert_one_line_error(result, "--ray needs Ray", "pip install 'yqt[ray]'")


def test_an_address_nobody_answers_at_is_one_line(tmp_path):
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = _yqt("", "eval", "m.onnx", "--ray", f"127.0.0.1:{port}", "--runs-dir", str(tmp_path))
    assert_one_line_error(result, f"no Ray cluster answers at 127.0.0.1:{port}")
