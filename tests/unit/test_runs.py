from __future__ import annotations

import json
from pathlib import Path

import pytest

from yqt.errors import YqtError
from yqt.runs import Run, atomic_path, atomic_write_json, new_run_id, read_json


def test_new_run_is_not_created_until_a_step_starts(tmp_path: Path):
    run = Run.open(tmp_path / "runs")
    assert not run.root.exists()
    with run.step("export", {"a": 1}) as step:
        target = run.onnx_dir / "m.onnx"
        target.write_bytes(b"x")
        step.add_artifact(target, "onnx")
    manifest = json.loads(run.manifest_path.read_text())
    (entry,) = manifest["steps"]
    assert entry["status"] == "ok" and entry["ended"]
    assert entry["artifacts"][0]["path"] == "onnx/m.onnx"
    config = json.loads(run.config_path("export").read_text())
    assert config == {"schema": "yqt/step-config/1", "step": "export", "a": 1}
    assert "step export finished" in run.log_path("export").read_text()


def test_failed_step_is_recorded_with_its_error(tmp_path: Path):
    run = Run.open(tmp_path, "r1")
    with pytest.raises(YqtError), run.step("eval-x", {}):
        raise YqtError("boom", "fix it")
    (entry,) = run.manifest()["steps"]
    assert entry["status"] == "failed"
    assert entry["error"].startswith("boom")


def test_existing_id_attaches_and_keeps_earlier_steps(tmp_path: Path):
    first = Run.open(tmp_path, "shared")
    with first.step("export", {}):
        pass
    again = Run.open(tmp_path, "shared")
    with again.step("smoke-m", {}):
        pass
    assert [s["name"] for s in again.manifest()["steps"]] == ["export", "smoke-m"]


def test_default_id_is_a_timestamp_and_never_collides(tmp_path: Path):
    first = new_run_id(tmp_path)
    assert len(first) == len("YYYY-MM-DD_HH-MM-SS")
    (tmp_path / first).mkdir()
    assert new_run_id(tmp_path) != first


@pytest.mark.parametrize("bad", ["../x", "a/b", "", " x"])
def test_invalid_run_ids_are_rejected(tmp_path: Path, bad: str):
    with pytest.raises(YqtError, match="invalid run id"):
        Run.open(tmp_path, bad)


def test_folder_that_is_not_a_run_is_refused(tmp_path: Path):
    (tmp_path / "other").mkdir()
    with pytest.raises(YqtError, match="not a yqt run"):
        Run.open(tmp_path, "other")


def test_artifact_inside_a_run_finds_its_run(tmp_path: Path):
    run = Run.open(tmp_path, "r")
    with run.step("export", {}):
        (run.onnx_dir / "m.onnx").write_bytes(b"x")
    found = Run.for_artifact(run.onnx_dir / "m.onnx", None, None)
    assert found.root.resolve() == run.root.resolve()
    assert Run.containing(tmp_path / "elsewhere.onnx") is None


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path: Path):
    target = tmp_path / "metrics.json"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_text('{"partial": ')
        raise KeyboardInterrupt
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_whole_file(tmp_path: Path):
    target = atomic_write_json(tmp_path / "a.json", {"v": 1})
    atomic_write_json(target, {"v": 2})
    assert read_json(target, "a") == {"v": 2}


def test_read_json_errors_are_one_line(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(YqtError, match="not valid JSON"):
        read_json(bad, "metrics")
    with pytest.raises(YqtError, match="not found"):
        read_json(tmp_path / "missing.json", "metrics")


def test_published_files_and_run_folders_follow_the_umask(tmp_path: Path):
    import os

    old = os.umask(0o022)
    try:
        run = Run.open(tmp_path, "perm")
        with run.step("export", {}):
            doc = {"schema": "yqt/error/1", "error": "x", "hint": None, "exit_code": 2}  # any valid yqt document
            target = atomic_write_json(run.onnx_dir / "x.json", doc)
        assert target.stat().st_mode & 0o777 == 0o644
        assert run.manifest_path.stat().st_mode & 0o777 == 0o644
        assert run.root.stat().st_mode & 0o777 == 0o755
    finally:
        os.umask(old)


def test_a_step_that_reports_a_failed_check_is_recorded_failed(tmp_path: Path):
    run = Run.open(tmp_path, "check")
    with run.step("quantize-w8a16", {}) as step:
        step.fail("parity: 3/10 detections matched")
    (entry,) = run.manifest()["steps"]
    assert entry["status"] == "failed" and entry["error"] == "parity: 3/10 detections matched"


def test_a_default_id_taken_meanwhile_moves_on_and_an_explicit_one_attaches(tmp_path: Path, monkeypatch):
    import datetime as dt
    import types

    import yqt.runs

    # One frozen second: on a loaded machine the two steps below can straddle a second boundary.
    frozen = dt.datetime(2026, 1, 2, 3, 4, 5)
    fake = types.SimpleNamespace(datetime=types.SimpleNamespace(now=lambda *a, **k: frozen))
    monkeypatch.setattr(yqt.runs, "_dt", types.SimpleNamespace(**{**vars(dt), **vars(fake)}))
    first = Run.open(tmp_path)
    second = Run.open(tmp_path)  # planned in the same second: the same id
    assert first.run_id == second.run_id
    with first.step("a", {}):
        pass
    with second.step("b", {}):
        pass
    assert first.root != second.root and second.run_id.startswith(first.run_id)
    assert [s["name"] for s in second.manifest()["steps"]] == ["b"]
    named = Run.open(tmp_path, first.run_id)
    with named.step("c", {}):
        pass
    assert [s["name"] for s in first.manifest()["steps"]] == ["a", "c"]
