"""yqt sensitivity and --target-bits on the real yolov10n: the sweep finds a broken layer, reruns
agree, the budget holds, the JSON feeds quantize, and bad input gets one line. Few images keep CI
short; the accuracy numbers come from benchmarks/mixed_precision.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, run_yqt

pytestmark = pytest.mark.integration

IMAGES = 4
# The proxy's top 3 on these 4 images rank model.0, model.2.cv2, model.1; their real mAP drops are
# +2.5, -1.4 and +5.0 pt (yqt sensitivity --calib-images 4 --verify-top 3, CPU): ρ = -0.5, not held.
EXPECTED_SPEARMAN = -0.5


@pytest.fixture(scope="session")
def calib4(coco_root: Path):
    from yqt.quant.calibrate import select_calibration

    return select_calibration(coco_root / "train2017", IMAGES)[0]


@pytest.fixture(scope="session")
def sweep_cli(session_runs: Path, coco_root: Path) -> dict:
    """`yqt sensitivity --json` in its own run, as a user runs it."""
    result = run_yqt(
        "sensitivity", "--coco-root", str(coco_root), "--calib-images", str(IMAGES), "--verify-top", "3",
        "--run", "sens", "--json", runs_dir=session_runs,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _measure(detector, calib):
    from yqt.quant.ranking import measure
    from yqt.records import SensitivityConfig

    return measure(detector, calib, SensitivityConfig(calib_images=IMAGES, batch=IMAGES))


@pytest.mark.slow
def test_a_broken_layer_ranks_first_and_the_model_is_left_untouched(calib4, monkeypatch: pytest.MonkeyPatch):
    """A probe whose low-bit weight is 100x off must top the ranking: the sweep attributes the error
    to the layer that made it (block caching, hooks and undo included), and leaves every weight as it was."""
    import torch

    import yqt.quant.probe as probe
    from yqt.models import load_detector

    detector = load_detector()
    module = detector.module
    victim = "model.8.m.0.cv1.conv"  # a large mid-network layer that ranks low on the real weights
    real = probe.quantized_weight

    def broken_for_victim(layer, bits):
        weight = real(layer, bits)
        return weight * 100 if layer is module.get_submodule(victim) else weight

    monkeypatch.setattr(probe, "quantized_weight", broken_for_victim)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    result = _measure(detector, calib4)
    ranked = result.ranked()
    assert ranked[0].name == victim, [r.name for r in ranked[:5]]
    assert ranked[0].score > 2 * ranked[1].score
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a probe left a weight changed"


@pytest.mark.slow
def test_reruns_on_the_same_images_rank_identically(calib4):
    from yqt.models import load_detector

    detector = load_detector()
    first, again = _measure(detector, calib4), _measure(detector, calib4)
    assert [(r.name, r.rank, r.score) for r in first.layers] == [(r.name, r.rank, r.score) for r in again.layers]


@pytest.mark.slow
def test_sweep_json_png_and_ranking(sweep_cli: dict, session_runs: Path):
    layers = sweep_cli["layers"]
    assert len(layers) == 82  # every conv of yolov10n but the DFL
    assert sorted(r["rank"] for r in layers) == list(range(1, 83))
    assert all(r["score"] > 0 and r["params"] > 0 for r in layers)
    assert len(sweep_cli["head_outputs"]) == 6
    saved = Path(sweep_cli["json_path"])
    assert saved == session_runs / "sens" / "sensitivity" / "yolov10n-w4.json"
    assert json.loads(saved.read_text())["layers"] == layers
    png = Path(sweep_cli["plot_path"]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert sweep_cli["images"]["sha256"] and len(sweep_cli["images"]["images"]) == IMAGES
    top = min(layers, key=lambda r: r["rank"])["name"]
    assert top.startswith(("model.0.", "model.1.", "model.2.", "model.9.")), top  # early, small layers lead


@pytest.mark.slow
def test_verify_top_rescores_by_real_map(sweep_cli: dict):
    check = sweep_cli["verification"]
    ranked = sorted(sweep_cli["layers"], key=lambda r: r["rank"])[:3]
    assert [v["name"] for v in check["layers"]] == [r["name"] for r in ranked]
    assert sorted(v["drop_rank"] for v in check["layers"]) == [1, 2, 3]
    assert check["images"] == IMAGES and 0.2 < check["float_mAP_50_95"] < 0.8
    for v in check["layers"]:
        assert v["drop_pt"] == pytest.approx(100 * (check["float_mAP_50_95"] - v["mAP_50_95"]))
    # drop_rank orders the real mAP drops, largest first, and ρ is Spearman's between that order and
    # the proxy's (layers listed in proxy order), recomputed here from the ranks alone.
    by_drop = sorted(check["layers"], key=lambda v: -v["drop_pt"])
    assert [v["drop_rank"] for v in by_drop] == [1, 2, 3]
    d2 = sum((proxy - v["drop_rank"]) ** 2 for proxy, v in enumerate(check["layers"], 1))
    assert check["spearman"] == pytest.approx(1 - 6 * d2 / (3 * (3 * 3 - 1)))
    assert check["spearman"] == pytest.approx(EXPECTED_SPEARMAN)
    assert check["held"] is False
    assert check["verdict"].startswith("held" if check["held"] else "did not hold")


@pytest.mark.slow
def test_the_json_feeds_quantize_and_the_budget_holds(sweep_cli: dict, session_runs: Path, coco_root: Path):
    from yqt.quant.mixed import Candidate, choose_high_precision

    result = run_yqt(
        "quantize", "--mode", "w4a16", "--no-gptq", "--target-bits", "4.5", "--sensitivity", sweep_cli["json_path"],
        "--parity-images", str(coco_root / "val2017"), "--parity-max", "4", "--device", "cpu", "--providers", "cpu",
        "--run", "sens", "--json", runs_dir=session_runs,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    mixed = doc["mixed_precision"]
    assert doc["mean_weight_bits"] <= 4.5 and mixed["mean_bits"] == pytest.approx(doc["mean_weight_bits"])
    assert mixed["mean_bits"] > 4.4  # the budget is used, not left idle
    eight = {d["name"] for d in doc["layers"] if d["bits"] == 8}
    assert eight == {p["name"] for p in mixed["promoted"]}
    # The same choice, recomputed from the JSON alone.
    params = {d["name"]: d["params"] for d in doc["layers"]}
    bits = {d["name"]: 32.0 if d["bits"] is None else 4.0 for d in doc["layers"]}
    rows = {r["name"]: r for r in sweep_cli["layers"]}
    candidates = [Candidate(n, rows[n]["score"], params[n]) for n in params if bits[n] == 4.0]
    assert set(choose_high_precision(candidates, bits, params, 4.5).high) == eight
    assert mixed["sensitivity"] == sweep_cli["json_path"]
    # inspect-graph reads the same bits back from the file, layer by layer.
    census = run_yqt("inspect-graph", doc["onnx"]["path"], "--json", runs_dir=session_runs)
    from yqt.graph import module_path

    layers = [layer for layer in json.loads(census.stdout)["layers"] if layer["has_weight"]]
    bits = {module_path(layer["name"]): layer["weight_bits"] for layer in layers}
    assert {m for m, b in bits.items() if b == 8} == eight
    assert {m for m, b in bits.items() if b == 4} == {d["name"] for d in doc["layers"] if d["bits"] == 4}


@pytest.mark.parametrize("target", ["3.5", "8.5"])
def test_target_bits_outside_4_to_8(target: str, tmp_path: Path):
    result = run_yqt("quantize", "--mode", "w4a16", "--target-bits", target, runs_dir=tmp_path / "runs")
    assert_one_line_error(result, "--target-bits must be between 4 and 8")
    assert not (tmp_path / "runs").exists()


def test_target_bits_needs_a_4bit_mode(tmp_path: Path):
    result = run_yqt("quantize", "--mode", "w8a16", "--target-bits", "5", runs_dir=tmp_path / "runs")
    assert_one_line_error(result, "w8a16 has no 4-bit layers", "--mode w4a16")


@pytest.mark.slow
def test_sensitivity_json_of_another_model_is_refused(sweep_cli: dict, tmp_path: Path):
    result = run_yqt(
        "quantize", "--mode", "w4a16", "--no-gptq", "--target-bits", "4.5", "--sensitivity", sweep_cli["json_path"],
        "--weights", "yolov10s.yaml", runs_dir=tmp_path / "runs",
    )  # fmt: skip
    assert_one_line_error(result, "ranks another model", "yolov10n", "yolov10s")


@pytest.mark.slow
def test_sensitivity_json_missing_layers_is_refused(sweep_cli: dict, tmp_path: Path):
    doc = json.loads(Path(sweep_cli["json_path"]).read_text())
    dropped = doc["layers"].pop(5)["name"]
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    result = run_yqt(
        "quantize", "--mode", "w4a16", "--no-gptq", "--target-bits", "4.5", "--sensitivity", str(edited),
        runs_dir=tmp_path / "runs",
    )  # fmt: skip
    assert_one_line_error(result, "has no score for 1 of the model's layers", dropped)


def test_sensitivity_file_that_is_not_one(tmp_path: Path):
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"hello": 1}')
    result = run_yqt(
        "quantize", "--mode", "w4a16", "--no-gptq", "--target-bits", "4.5", "--sensitivity", str(bogus),
        runs_dir=tmp_path / "runs",
    )  # fmt: skip
    assert_one_line_error(result, "is not a yqt sensitivity JSON")


def test_sensitivity_on_an_empty_folder(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_yqt("sensitivity", "--calib-dir", str(empty), runs_dir=tmp_path / "runs")
    assert_one_line_error(result, "no images in --calib-dir")
    assert not (tmp_path / "runs").exists()


def test_sensitivity_without_images(tmp_path: Path):
    result = run_yqt("sensitivity", runs_dir=tmp_path / "runs")
    assert_one_line_error(result, "yqt sensitivity needs calibration images", "--coco-root")


def test_verify_top_without_labels(tmp_path: Path, coco_root: Path):
    result = run_yqt(
        "sensitivity", "--calib-dir", str(coco_root / "train2017"), "--verify-top", "3", runs_dir=tmp_path / "runs"
    )
    assert_one_line_error(result, "--verify-top needs labels", "--verify-annotations")


def test_sensitivity_bits_out_of_range(tmp_path: Path, coco_root: Path):
    result = run_yqt("sensitivity", "--bits", "9", "--coco-root", str(coco_root), runs_dir=tmp_path / "runs")
    assert_one_line_error(result, "--bits must be between 2 and 8")


@pytest.mark.slow
def test_copy_of_json_keeps_working(sweep_cli: dict, tmp_path: Path):
    """The file is self-contained: copied elsewhere, it still loads for the same model."""
    from yqt.models import load_detector
    from yqt.quant.ranking import load_ranking

    copy = tmp_path / "ranking.json"
    shutil.copy(sweep_cli["json_path"], copy)
    rows = load_ranking(copy, load_detector(), [r["name"] for r in sweep_cli["layers"]], 4)
    assert len(rows) == 82


@pytest.mark.slow
def test_sensitivity_output_at_80_columns(calib4, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The ranked table, the check on labels and the result block fit 80 columns, words whole."""
    import yqt.sensitivity
    from tests.integration.test_output import _check
    from yqt.models import load_detector
    from yqt.records import SensitivityConfig

    detector = load_detector()
    cfg = SensitivityConfig(calib_images=IMAGES, batch=IMAGES)
    result = yqt.sensitivity.measure(detector, calib4, cfg)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("YQT_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(yqt.sensitivity, "sensitivity", lambda cfg, run, progress: result)
    text = _check(["sensitivity", "--top", "10"], 0, "OK", "ranked 82 layers", "most sensitive")
    assert "top 10 of 82" in text


@pytest.mark.slow
def test_target_bits_measures_the_ranking_itself_and_saves_it(session_runs: Path, coco_root: Path):
    from yqt.quantize import quantize
    from yqt.records import QuantizeConfig
    from yqt.runs import Run, sha256_file

    cfg = QuantizeConfig(
        mode="w4a16", gptq=False, target_bits=5.0, coco_root=coco_root, calib_images=IMAGES, sensitivity_images=2,
        parity_images=coco_root / "val2017", parity_max_images=2, providers=("cpu",), device="cpu",
    )  # fmt: skip
    result = quantize(cfg, Run.open(session_runs, "sens-measured"))
    assert result.passed, result.failures
    mixed = result.mixed_precision
    assert mixed.sensitivity == session_runs / "sens-measured" / "sensitivity" / "yolov10n-w4a16-5bit-qcdq-ptq.json"
    assert sha256_file(mixed.sensitivity) == mixed.sensitivity_sha256  # the file the choice was made from
    saved = json.loads(mixed.sensitivity.read_text())
    assert saved["schema"] == "yqt/sensitivity/2" and len(saved["images"]["images"]) == 2
    assert 4.9 < result.mean_weight_bits <= 5.0
    assert {d.name for d in result.layers if d.bits == 8} == {p.name for p in mixed.promoted}
