"""The pipeline's pure parts: fingerprints, what the data allows, step bookkeeping in run.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from yqt.errors import YqtError
from yqt.pipeline import (
    PipelineEvents,
    _Executor,
    calibration_digest,
    data_availability,
    fingerprint,
    step_count,
    validate_pipeline_config,
)
from yqt.records import EvalConfig, PipelineConfig, StepStatus
from yqt.runs import Run, process_alive, step_tags


def test_a_fingerprint_follows_config_and_inputs_and_nothing_else():
    cfg = EvalConfig(onnx=Path("/r/m.onnx"), max_images=100)
    base = fingerprint("eval-m", cfg, {"onnx": "a" * 64})
    assert base == fingerprint("eval-m", EvalConfig(onnx=Path("/r/m.onnx"), max_images=100), {"onnx": "a" * 64})
    assert base != fingerprint("eval-m", EvalConfig(onnx=Path("/r/m.onnx"), max_images=99), {"onnx": "a" * 64})
    assert base != fingerprint("eval-m", cfg, {"onnx": "b" * 64})
    assert base != fingerprint("eval-n", cfg, {"onnx": "a" * 64})


def test_a_quantize_fingerprint_follows_the_package_versions_and_torch_threads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """GPTQ's integers depend on the packages and torch's thread count (README), so a 4-bit quantize
    step made by other software, or on another number of threads, is not reused; an 8-bit one
    follows the packages only (a Ray worker on one thread reuses a serial run's w8a16)."""
    import yqt.pipeline as pipeline

    (tmp_path / "a.jpg").write_bytes(b"calibration image")
    software = {"versions": {"torch": "2.5.1", "yqt": "0.1.0"}, "threads": 4}
    monkeypatch.setattr(pipeline, "package_versions", lambda: dict(software["versions"]), raising=False)
    monkeypatch.setattr(pipeline, "torch_threads", lambda: software["threads"], raising=False)
    cfg = PipelineConfig(modes=("w8a16", "w4a16"), calib_dir=tmp_path)
    plan = pipeline._Plan(cfg=cfg, data=data_availability(cfg), weights_sha="a" * 64)

    class Recorder:
        def execute(self, name, config, inputs, action):  # stands in for _Executor.execute
            return fingerprint(name, config, inputs)

    def fingerprints() -> dict[str, str]:
        return {mode: pipeline._quantize(Recorder(), plan, mode) for mode in cfg.modes}  # type: ignore[arg-type]

    first = fingerprints()
    assert fingerprints() == first
    software["threads"] = 2
    assert fingerprints()["w4a16"] != first["w4a16"] and fingerprints()["w8a16"] == first["w8a16"]
    software["threads"] = 4
    software["versions"] = {"torch": "2.6.0", "yqt": "0.1.0"}
    assert all(fingerprints()[m] != first[m] for m in cfg.modes)


def test_the_calibration_digest_reads_the_first_n_images_by_name(tmp_path: Path):
    from yqt.quant.calibrate import folder_images

    for name, data in (("b.jpg", b"2"), ("a.jpg", b"1"), ("c.jpg", b"3"), ("notes.txt", b"x")):
        (tmp_path / name).write_bytes(data)
    assert [p.name for p in folder_images(tmp_path)] == ["a.jpg", "b.jpg", "c.jpg"]
    two = calibration_digest(folder_images(tmp_path), 2)
    (tmp_path / "c.jpg").write_bytes(b"changed")  # the third image is not read at 2
    assert calibration_digest(folder_images(tmp_path), 2) == two
    (tmp_path / "a.jpg").write_bytes(b"changed")
    assert calibration_digest(folder_images(tmp_path), 2) != two


def test_data_availability_says_what_to_pass(tmp_path: Path):
    none = data_availability(PipelineConfig())
    assert "--coco-root DIR" in none.calibration_missing() and "val2017/" in none.eval_missing()
    absent = data_availability(PipelineConfig(coco_root=tmp_path / "absent"))
    assert absent.coco_root is None and "not found" in absent.eval_missing()
    (tmp_path / "train2017").mkdir()
    found = data_availability(PipelineConfig(coco_root=tmp_path))
    assert found.calib_dir == tmp_path / "train2017" and found.calibration_missing() is None
    assert found.eval_missing() is None


def test_step_count_covers_every_model():
    assert step_count(PipelineConfig(modes=("w8a16", "w8a8"))) == 1 + 2 + 3 * 2 + 3  # + bench, compare, report


def test_a_target_bits_sweep_makes_one_model_per_target_of_each_4bit_mode_after_one_ranking():
    from yqt.pipeline import parse_targets, sweeps_sensitivity, variants

    cfg = PipelineConfig(modes=("w8a16", "w4a16", "w4a8"), target_bits=parse_targets("4.25, 4.5,5"))
    assert cfg.target_bits == (4.25, 4.5, 5.0)
    assert [v.label for v in variants(cfg)] == [
        "w8a16", "w4a16-4.25bit", "w4a16-4.5bit", "w4a16-5bit", "w4a8-4.25bit", "w4a8-4.5bit", "w4a8-5bit",
    ]  # fmt: skip
    assert sweeps_sensitivity(cfg) and not sweeps_sensitivity(PipelineConfig(modes=("w4a16",)))
    # export, the sweep, 7 quantizes, smoke and eval of 8 models, bench, compare, report
    assert step_count(cfg) == 1 + 1 + 7 + 2 * 8 + 3
    assert [v.label for v in variants(PipelineConfig(modes=("w4a16",)))] == ["w4a16"]


@pytest.mark.parametrize(
    ("text", "message"),
    [("4.5,x", "--target-bits takes numbers separated by commas, got '4.5,x'"), (",", "takes numbers")],
)
def test_target_bits_that_are_not_numbers_are_refused(text: str, message: str):
    from yqt.pipeline import parse_targets

    with pytest.raises(YqtError, match=message):
        parse_targets(text)


@pytest.mark.parametrize(
    ("targets", "message"),
    [((4.5, 4.5), "--target-bits names 4.5 twice"), ((4.5, 9.0), "--target-bits must be between 4 and 8, got 9")],
)
def test_a_sweep_with_a_repeated_or_impossible_target_is_refused(targets: tuple, message: str):
    with pytest.raises(YqtError, match=message):
        validate_pipeline_config(PipelineConfig(modes=("w4a16",), target_bits=targets))


def test_validation_makes_paths_absolute_and_names_modes_canonically(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = validate_pipeline_config(PipelineConfig(modes=("W8A16",), coco_root=Path("coco")))
    assert cfg.modes == ("w8a16",) and cfg.coco_root == tmp_path / "coco"
    with pytest.raises(YqtError, match="unknown quantization mode"):
        validate_pipeline_config(PipelineConfig(modes=("w2a2",)))


def test_process_alive_tells_a_finished_process_from_this_one():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert process_alive(os.getpid())
    assert not process_alive(proc.pid)


def test_steps_record_their_process_and_tagged_fingerprint(tmp_path: Path):
    run = Run.open(tmp_path, "r")
    with step_tags("eval-a", fingerprint="f" * 64), run.step("eval-a", {}), run.step("eval-b", {}):
        pass
    steps = {s["name"]: s for s in json.loads(run.manifest_path.read_text())["steps"]}
    assert steps["eval-a"]["fingerprint"] == "f" * 64 and "fingerprint" not in steps["eval-b"]
    assert steps["eval-a"]["pid"] == os.getpid() and steps["eval-a"]["host"]
    assert run.latest_step("eval-a")["status"] == "ok" and run.latest_step("eval-c") is None


def _executor(run: Run) -> _Executor:
    return _Executor(run, PipelineEvents(), total=3)


def test_a_finished_step_is_reused_only_while_its_files_are_as_recorded(tmp_path: Path):
    run = Run.open(tmp_path, "r")
    made = tmp_path / "r" / "out.txt"

    def action() -> None:
        with run.step("make", {"n": 1}) as step:
            made.parent.mkdir(parents=True, exist_ok=True)
            made.write_text("one")
            step.add_artifact(made, "text")

    first = _executor(run).execute("make", {"n": 1}, {}, action)
    assert first.step.status is StepStatus.DONE and first.step.outputs == ("out.txt",)
    assert _executor(run).execute("make", {"n": 1}, {}, action).step.status is StepStatus.REUSED
    changed = _executor(run).execute("make", {"n": 2}, {}, action).step
    assert changed.status is StepStatus.DONE and "config or inputs changed" in changed.note
    made.write_text("tampered")
    again = _executor(run).execute("make", {"n": 2}, {}, action).step
    assert again.status is StepStatus.DONE and "out.txt is missing or changed" in again.note


def test_a_stage_that_refuses_its_input_is_still_recorded_failed(tmp_path: Path):
    run = Run.open(tmp_path, "r")

    def refuse() -> None:
        raise YqtError("no images in --calib-dir /x", "pass a folder of images")

    outcome = _executor(run).execute("quantize-w8a8", {"mode": "w8a8"}, {}, refuse)
    assert outcome.step.status is StepStatus.FAILED
    assert outcome.step.reason == "no images in --calib-dir /x; pass a folder of images"
    record = run.latest_step("quantize-w8a8")
    assert record["status"] == "failed" and record["error"] == outcome.step.reason


def test_a_bug_in_one_step_becomes_its_one_line_failure(tmp_path: Path):
    run = Run.open(tmp_path, "r")

    def crash() -> None:
        raise RuntimeError("shape mismatch\nat layer 3")

    step = _executor(run).execute("smoke-x", {}, {}, crash).step
    assert step.status is StepStatus.FAILED and step.reason == "RuntimeError: shape mismatch at layer 3"
