"""Every bad input: one ``yqt: error:`` line naming the problem and the fix, exit 2, no traceback,
and nothing in the run root that looks complete."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, run_yqt

pytestmark = pytest.mark.integration


def _complete_looking_files(runs: Path) -> list[Path]:
    if not runs.exists():
        return []
    return [p for p in runs.rglob("*") if p.suffix == ".onnx" or p.name == "metrics.json"]


def test_missing_weights(tmp_path: Path):
    runs = tmp_path / "runs"
    result = run_yqt("export", "--weights", str(tmp_path / "nope.pt"), runs_dir=runs)
    assert_one_line_error(result, "weights not found", "--weights PATH")
    assert not runs.exists()  # rejected before any run folder is made


def test_file_that_is_not_a_checkpoint(tmp_path: Path):
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"this is not a pickle")
    runs = tmp_path / "runs"
    assert_one_line_error(run_yqt("export", "--weights", str(bogus), runs_dir=runs), "cannot load", "checkpoint")
    text = tmp_path / "weights.txt"
    text.write_text("hello")
    assert_one_line_error(run_yqt("export", "--weights", str(text), runs_dir=runs), "is not a checkpoint")
    assert _complete_looking_files(runs) == []


def test_checkpoint_that_is_not_a_detector(tmp_path: Path):
    import torch
    from ultralytics import YOLO

    ckpt = tmp_path / "yolov8n-cls-random.pt"
    torch.save({"model": YOLO("yolov8n-cls.yaml").model}, ckpt)
    runs = tmp_path / "runs"
    result = run_yqt("export", "--weights", str(ckpt), runs_dir=runs)
    assert_one_line_error(result, "is not a YOLO detector", "head is Classify")
    assert _complete_looking_files(runs) == []


def test_end2end_asked_of_a_model_without_that_head(tmp_path: Path):
    runs = tmp_path / "runs"
    result = run_yqt("export", "--weights", "yolov8n.yaml", "--end2end", runs_dir=runs)
    assert_one_line_error(result, "has no NMS-free head", "drop --end2end")
    assert _complete_looking_files(runs) == []


def test_missing_coco_root(baseline_onnx: Path, tmp_path: Path):
    runs = tmp_path / "runs"
    result = run_yqt("eval", str(baseline_onnx), "--coco-root", str(tmp_path / "nope"), "--run", "x", runs_dir=runs)
    assert_one_line_error(result, "--coco-root not found")
    assert not (runs / "x").exists()


def test_missing_annotations_file(baseline_onnx: Path, tmp_path: Path):
    (tmp_path / "coco" / "val2017").mkdir(parents=True)
    result = run_yqt("eval", str(baseline_onnx), "--coco-root", str(tmp_path / "coco"), runs_dir=tmp_path / "runs")
    assert_one_line_error(result, "annotations file not found", "--annotations")


def test_ids_list_with_unknown_ids(baseline_onnx: Path, coco_root: Path, tmp_path: Path):
    ids = tmp_path / "ids.txt"
    ids.write_text("139\n999999999\n")
    result = run_yqt(
        "eval", str(baseline_onnx), "--coco-root", str(coco_root), "--image-ids-list", str(ids),
        runs_dir=tmp_path / "runs",
    )  # fmt: skip
    assert_one_line_error(result, "not in the annotations: 999999999")


def test_zero_max_images(baseline_onnx: Path, coco_root: Path, tmp_path: Path):
    result = run_yqt("eval", str(baseline_onnx), "--coco-root", str(coco_root), "--max-images", "0", runs_dir=tmp_path)
    assert_one_line_error(result, "--max-images must be at least 1")


def _tiny_coco_with_corrupt_image(coco_root: Path, dest: Path) -> Path:
    data = json.loads((coco_root / "annotations" / "instances_val2017.json").read_text())
    images = sorted(data["images"], key=lambda im: im["id"])[:2]
    keep = {im["id"] for im in images}
    subset = {
        "images": images,
        "categories": data["categories"],
        "annotations": [a for a in data["annotations"] if a["image_id"] in keep],
    }
    (dest / "annotations").mkdir(parents=True)
    (dest / "val2017").mkdir()
    (dest / "annotations" / "instances_val2017.json").write_text(json.dumps(subset))
    shutil.copy(coco_root / "val2017" / images[0]["file_name"], dest / "val2017" / images[0]["file_name"])
    (dest / "val2017" / images[1]["file_name"]).write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return dest


def test_corrupt_image_fails_the_eval_and_writes_no_metrics(baseline_onnx: Path, coco_root: Path, tmp_path: Path):
    tiny = _tiny_coco_with_corrupt_image(coco_root, tmp_path / "coco")
    runs = tmp_path / "runs"
    result = run_yqt(
        "eval",
        str(baseline_onnx),
        "--coco-root",
        str(tiny),
        "--run",
        "corrupt",
        "--providers",
        "cpu",
        runs_dir=runs,
    )
    assert_one_line_error(result, "image cannot be decoded", "--image-ids-list")
    assert _complete_looking_files(runs) == []
    manifest = json.loads((runs / "corrupt" / "run.json").read_text())
    assert manifest["steps"][-1]["status"] == "failed"


def _onnx_model(path: Path, nodes: list, outputs: dict[str, list[int]], size: int = 640, inits=()) -> Path:
    """A tiny ONNX file reading ``images`` [1,3,size,size] and writing ``outputs`` (name → shape)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "bad",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in outputs.items()],
        initializer=list(inits),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


def _onnx_with_wrong_output(path: Path) -> Path:
    from onnx import helper

    return _onnx_model(path, [helper.make_node("Identity", ["images"], ["output0"])], {"output0": [1, 3, 640, 640]})


def _onnx_with_two_outputs(path: Path) -> Path:
    from onnx import helper

    nodes = [helper.make_node("Identity", ["images"], [name]) for name in ("boxes", "scores")]
    return _onnx_model(path, nodes, {"boxes": [1, 3, 640, 640], "scores": [1, 3, 640, 640]})


def _onnx_with_rank2_output(path: Path) -> Path:
    from onnx import helper

    return _onnx_model(path, [helper.make_node("Flatten", ["images"], ["output0"])], {"output0": [1, 3 * 640 * 640]})


def _onnx_raw_head_with_3_classes(path: Path) -> Path:
    """A raw [1,4+3,A] head, no class names: 3 classes cannot be the dataset's 80."""
    import numpy as np
    from onnx import helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((7, 3, 1, 1), np.float32), "w")
    shape = numpy_helper.from_array(np.array([1, 7, 32 * 32], np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["images", "w"], ["maps"]),
        helper.make_node("Reshape", ["maps", "shape"], ["output0"]),
    ]
    return _onnx_model(path, nodes, {"output0": [1, 7, 32 * 32]}, size=32, inits=[weight, shape])


def test_onnx_without_the_output_contract(coco_root: Path, tmp_path: Path):
    model = _onnx_with_wrong_output(tmp_path / "wrong.onnx")
    runs = tmp_path / "runs"
    assert_one_line_error(run_yqt("smoke", str(model), runs_dir=runs), "[1, 3, 640, 640] is neither")
    result = run_yqt("eval", str(model), "--coco-root", str(coco_root), "--max-images", "2", runs_dir=runs)
    assert_one_line_error(result, "is neither the end-to-end [B,N,6]", "nor the raw [B,4+nc,A]")
    assert _complete_looking_files(runs) == []


def test_onnx_with_two_outputs(coco_root: Path, tmp_path: Path):
    model = _onnx_with_two_outputs(tmp_path / "two.onnx")
    runs = tmp_path / "runs"
    for args in (["smoke", str(model)], ["eval", str(model), "--coco-root", str(coco_root), "--max-images", "2"]):
        assert_one_line_error(run_yqt(*args, runs_dir=runs), "model has 2 outputs", "[B,N,6]", "[B,4+nc,A]")
    assert _complete_looking_files(runs) == []


def test_onnx_with_a_rank2_output(coco_root: Path, tmp_path: Path):
    model = _onnx_with_rank2_output(tmp_path / "flat.onnx")
    runs = tmp_path / "runs"
    for args in (["smoke", str(model)], ["eval", str(model), "--coco-root", str(coco_root), "--max-images", "2"]):
        assert_one_line_error(run_yqt(*args, runs_dir=runs), "output shape [1, 1228800] is neither", "[B,4+nc,A]")
    assert _complete_looking_files(runs) == []


def test_raw_head_whose_classes_disagree_with_the_dataset(coco_root: Path, tmp_path: Path):
    model = _onnx_raw_head_with_3_classes(tmp_path / "three.onnx")
    runs = tmp_path / "runs"
    result = run_yqt("eval", str(model), "--coco-root", str(coco_root), "--max-images", "2", runs_dir=runs)
    assert_one_line_error(result, "the output has 3 classes", "[1, 7, 1024]", "the dataset has 80 categories")
    assert _complete_looking_files(runs) == []


def test_file_that_is_not_onnx(tmp_path: Path):
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"\x00\x01garbage")
    result = run_yqt("smoke", str(bogus), runs_dir=tmp_path / "runs")
    line = assert_one_line_error(result, "ONNX Runtime cannot load", "Protobuf parsing failed; ")
    assert ".;" not in line and "export it again" in line  # an unreadable .onnx may be a cut-short export
    assert_one_line_error(run_yqt("smoke", str(tmp_path / "missing.onnx"), runs_dir=tmp_path), "ONNX model not found")


@pytest.mark.parametrize("command", ["eval", "smoke", "inspect-graph"])
def test_an_image_passed_as_a_model_is_named_from_its_magic_bytes(command: str, tmp_path: Path):
    import cv2
    import numpy as np

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.zeros((8, 8, 3), np.uint8))
    line = assert_one_line_error(run_yqt(command, str(photo), runs_dir=tmp_path / "runs"))
    assert line.startswith("yqt: error: photo.png is a PNG image, not an ONNX model; pass an .onnx file"), line
    assert "export it again" not in line and ".;" not in line
    jpeg = tmp_path / "shot.onnx"  # the name does not matter, the bytes do
    cv2.imwrite(str(tmp_path / "shot.jpg"), np.zeros((8, 8, 3), np.uint8))
    jpeg.write_bytes((tmp_path / "shot.jpg").read_bytes())
    assert_one_line_error(run_yqt(command, str(jpeg), runs_dir=tmp_path / "runs"), "shot.onnx is a JPEG image")
    assert not (tmp_path / "runs").exists()


def test_a_user_error_under_json_prints_the_error_document_on_stdout(tmp_path: Path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    result = run_yqt("eval", str(photo), "--json", runs_dir=tmp_path / "runs")  # validated against yqt/error/1
    line = assert_one_line_error(result, "photo.png is a PNG image")
    doc = json.loads(result.stdout)
    assert doc == {
        "schema": "yqt/error/1",
        "error": "photo.png is a PNG image, not an ONNX model",
        "hint": "pass an .onnx file (yqt export and yqt quantize write them under runs/<id>/onnx/)",
        "exit_code": 2,
    }
    assert line == f"yqt: error: {doc['error']}; {doc['hint']}"
    bad_value = run_yqt("compare", "a", "b", "--max-drop", "lots", "--json", runs_dir=tmp_path / "runs")
    assert bad_value.returncode == 2 and "--max-drop" in json.loads(bad_value.stdout)["error"]


def test_bad_device_and_half_combinations(tmp_path: Path):
    assert_one_line_error(run_yqt("export", "--device", "tpu", runs_dir=tmp_path), "unknown --device")
    assert_one_line_error(run_yqt("export", "--device", "cpu", "--half", runs_dir=tmp_path), "FP16 export needs CUDA")
    assert_one_line_error(run_yqt("export", "--imgsz", "100", runs_dir=tmp_path), "multiple of 32")
