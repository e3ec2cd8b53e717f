"""Ultralytics dataset YAMLs as COCO ground truth: the YAML's keys, the label rules, ids and bad labels.

Small datasets are written here (tiny real PNGs, real label files); nothing imports torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from yqt.data import labelled_images, select_image_ids
from yqt.errors import YqtError
from yqt.quant.calibrate import select_dataset_calibration
from yqt.yolo_data import build_ground_truth, image_ids_for, label_path, load_dataset_yaml, split_images


def _image(path: Path, w: int = 40, h: int = 20) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(path)
    return path


def _dataset(root: Path, labels: dict[str, str | None], yaml: str | None = None, split: str = "val") -> Path:
    """``labels``: image stem → label file text (None: no label file)."""
    for stem, text in labels.items():
        _image(root / "images" / split / f"{stem}.png")
        if text is not None:
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / f"{stem}.txt").write_text(text)
    path = root / "data.yaml"
    path.write_text(yaml or f"{split}: images/{split}\nnames: [person, car, dog]\n")
    return path


def test_boxes_become_coco_pixels_and_an_image_without_labels_is_a_negative(tmp_path: Path):
    data = _dataset(tmp_path, {"a": "1 0.5 0.5 0.5 0.5\n", "b": None, "c": ""})
    truth = build_ground_truth(load_dataset_yaml(data), "val")
    images = {im["file_name"]: im for im in truth.coco_json["images"]}
    assert set(images) == {"images/val/a.png", "images/val/b.png", "images/val/c.png"}
    assert (images["images/val/a.png"]["width"], images["images/val/a.png"]["height"]) == (40, 20)
    (ann,) = truth.coco_json["annotations"]
    assert ann["category_id"] == 1 and ann["iscrowd"] == 0 and ann["id"] == 1
    assert ann["bbox"] == pytest.approx([10.0, 5.0, 20.0, 10.0]) and ann["area"] == pytest.approx(200.0)
    assert [c["name"] for c in truth.coco_json["categories"]] == ["person", "car", "dog"]


def test_a_polygon_line_gives_the_box_around_it_and_repeated_rows_are_dropped(tmp_path: Path):
    data = _dataset(tmp_path, {"a": "2 0.1 0.2 0.5 0.1 0.3 0.6\n0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n"})
    truth = build_ground_truth(load_dataset_yaml(data), "val")
    boxes = sorted((a["category_id"], *a["bbox"]) for a in truth.coco_json["annotations"])
    np.testing.assert_allclose(boxes, [(0, 16.0, 8.0, 8.0, 4.0), (2, 4.0, 2.0, 16.0, 10.0)], atol=1e-9)
    assert truth.duplicate_rows == 1


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("0 0.5 0.5 0.2", "4 fields"),
        ("3 0.5 0.5 0.2 0.2", "class 3 is not below nc=3"),
        ("0 nan 0.5 0.2 0.2", "NaN"),
        ("0 0.5 1.2 0.2 0.2", "outside [0, 1]"),
        ("0 0.5 0.5 0.0 0.2", "zero width or height"),
        ("x 0.5 0.5 0.2 0.2", "not a number"),
        ("1.5 0.5 0.5 0.2 0.2", "not a class id"),
    ],
)
def test_a_malformed_label_names_its_file_line_and_the_count_of_bad_files(tmp_path: Path, line: str, problem: str):
    data = _dataset(tmp_path, {"a": "0 0.5 0.5 0.1 0.1\n" + line + "\n", "b": line + "\n", "c": "0 0.5 0.5 0.1 0.1\n"})
    with pytest.raises(YqtError) as err:
        build_ground_truth(load_dataset_yaml(data), "val")
    assert "labels/val/a.txt:2: " in err.value.message and problem in err.value.message
    assert "(2 label file(s) of the val split are malformed)" in err.value.message
    assert "--skip-bad-labels" in err.value.hint


def test_skip_bad_labels_leaves_those_images_out_and_says_which(tmp_path: Path):
    data = _dataset(tmp_path, {"a": "0 0.5 0.5 0.2\n", "b": "5 0.5 0.5 0.1 0.1\n", "c": "0 0.5 0.5 0.1 0.1\n"})
    truth = build_ground_truth(load_dataset_yaml(data), "val", skip_bad_labels=True)
    assert [truth.paths[i].name for i in truth.order] == ["c.png"]
    assert [i.where().rsplit("/", 1)[1] for i in truth.skipped] == ["a.txt:1", "b.txt:1"]


def test_coordinates_may_overshoot_by_rounding_only(tmp_path: Path):
    data = _dataset(tmp_path, {"a": "0 0.5 0.5 1.0005 0.2\n"})  # a labelling tool's rounding: clipped
    (ann,) = build_ground_truth(load_dataset_yaml(data), "val").coco_json["annotations"]
    assert ann["bbox"][0] == pytest.approx(0.0) and ann["bbox"][2] == pytest.approx(40.0)


@pytest.mark.parametrize(
    ("names", "expected"),
    [("names: [a, b]", ("a", "b")), ("names:\n  0: a\n  1: b", ("a", "b")), ("nc: 2", ("class0", "class1"))],
)
def test_names_as_a_list_a_dict_or_only_nc(tmp_path: Path, names: str, expected: tuple[str, ...]):
    (tmp_path / "d.yaml").write_text(f"val: images\n{names}\n")
    assert load_dataset_yaml(tmp_path / "d.yaml").names == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("nc: 80\nbackbone: []\nhead: []\n", "none of train:, val:, test:"),  # a model config
        ("val: images\n", "neither names: nor nc:"),
        ("- a\n- b\n", "not a mapping"),
        ("val: images\nnames: {0: a, 2: b}\n", "keys must be 0..1"),
        ("val: [1, 2]\nnames: [a]\n", "val: must be a folder"),
        ("val: images\nnames: [a\n", "does not parse"),
    ],
)
def test_a_yaml_that_is_not_a_dataset_is_refused(tmp_path: Path, text: str, fragment: str):
    (tmp_path / "d.yaml").write_text(text)
    with pytest.raises(YqtError) as err:
        load_dataset_yaml(tmp_path / "d.yaml")
    assert fragment in err.value.message


def test_nc_must_match_the_names(tmp_path: Path):
    (tmp_path / "d.yaml").write_text("val: images\nnc: 3\nnames: [a, b]\n")
    with pytest.raises(YqtError, match="nc: 3 but names: lists 2 classes"):
        load_dataset_yaml(tmp_path / "d.yaml")


def test_a_relative_path_resolves_against_the_yaml_folder_not_the_working_directory(tmp_path: Path, monkeypatch):
    _dataset(tmp_path / "sets" / "mine", {"a": ""}, yaml="x: 1\n")
    (tmp_path / "configs").mkdir()
    yaml = tmp_path / "configs" / "d.yaml"
    yaml.write_text("path: ../sets/mine\nval: images/val\nnames: [a]\n")
    monkeypatch.chdir(tmp_path)
    ds = load_dataset_yaml(Path("configs/d.yaml"))
    assert ds.root == tmp_path / "sets" / "mine"
    assert [p.name for p in split_images(ds, "val")] == ["a.png"]


def test_a_split_can_be_a_list_of_folders_or_a_txt_list(tmp_path: Path):
    for name in ("one/x.png", "two/y.png", "two/deep/z.png"):
        _image(tmp_path / "images" / name)
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "val.txt").write_text("# chosen\n../images/two/y.png\n" + str(tmp_path / "images/one/x.png"))
    (tmp_path / "d.yaml").write_text("train: [images/one, images/two]\nval: lists/val.txt\nnames: [a]\n")
    ds = load_dataset_yaml(tmp_path / "d.yaml")
    assert [p.name for p in split_images(ds, "train")] == ["x.png", "y.png", "z.png"]  # folders are searched deep
    assert [p.name for p in split_images(ds, "val")] == ["x.png", "y.png"]


def test_missing_or_empty_splits_name_the_problem(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "d.yaml").write_text("train: nowhere\nval: empty\nnames: [a]\n")
    ds = load_dataset_yaml(tmp_path / "d.yaml")
    with pytest.raises(YqtError, match=r"the train split of d\.yaml is missing: .*nowhere is not a folder"):
        split_images(ds, "train")
    with pytest.raises(YqtError, match=r"the val split of d\.yaml has no images"):
        split_images(ds, "val")
    with pytest.raises(YqtError, match="has no test: split"):
        split_images(ds, "test")


def test_labels_are_found_by_ultralytics_rule():
    assert label_path(Path("/d/images/train/a.jpg")) == Path("/d/labels/train/a.txt")
    assert label_path(Path("/images/x/images/b.png")) == Path("/images/x/labels/b.txt")  # the last /images/


def test_image_ids_are_numeric_stems_or_stable_path_hashes(tmp_path: Path):
    coco = [tmp_path / "images" / f"{i:012d}.jpg" for i in (139, 285)]
    assert image_ids_for(coco, tmp_path) == [139, 285]
    named = [tmp_path / "images" / "cat.jpg", tmp_path / "images" / "000000000139.jpg"]
    ids = image_ids_for(named, tmp_path)
    elsewhere = [Path("/somewhere/else") / p.relative_to(tmp_path) for p in named]
    assert ids == image_ids_for(elsewhere, Path("/somewhere/else"))  # relative paths decide, not the machine
    assert len(set(ids)) == 2 and all(0 < i < 2**52 for i in ids)


def test_max_images_takes_the_first_by_file_name(tmp_path: Path):
    data = _dataset(tmp_path, {"zebra": "", "apple": "", "mango": ""})
    truth = labelled_images(None, data=data)
    chosen = select_image_ids(truth.order, 2, in_given_order=True).ids
    assert sorted(truth.paths[i].name for i in chosen) == ["apple.png", "mango.png"]


def test_data_and_a_coco_root_together_are_refused(tmp_path: Path):
    data = _dataset(tmp_path, {"a": ""})
    with pytest.raises(YqtError, match="--data and --coco-root both name"):
        labelled_images(tmp_path, data=data)


def test_calibration_takes_the_first_images_of_the_train_split_by_name(tmp_path: Path):
    data = _dataset(tmp_path, {"b": "", "a": "", "c": ""}, yaml="train: images/train\nnames: [a]\n", split="train")
    calib, warnings = select_dataset_calibration(data, "train", 2)
    assert [i.name for i in calib.images] == ["images/train/a.png", "images/train/b.png"]
    assert (calib.folder / calib.images[0].name).is_file() and warnings == ()


def test_compare_pairs_evaluations_by_images_and_ground_truth(tmp_path: Path):
    """The same COCO ids under another dataset's labels (say, 3 of the 80 classes) are another set:
    an mAP of one is no baseline for the other."""
    from yqt.compare import Evaluation, pair_by_image_set

    def evaluation(name: str, onnx: str, truth: str) -> Evaluation:
        doc = {"name": name, "image_ids": [1, 2], "image_ids_sha256": "i" * 64, "annotations_sha256": truth,
               "onnx_sha256": onnx, "providers_used": ["CPUExecutionProvider"], "metrics": {}}  # fmt: skip
        return Evaluation(label=name, run_id="r", path=tmp_path / name, doc=doc)

    base = evaluation("base", "a", "t" * 64)
    same = evaluation("w8a8", "b", "t" * 64)
    other = evaluation("w8a8-on-3-classes", "c", "u" * 64)
    kept, _, _ = pair_by_image_set([base, same], base, force=False)
    assert kept == [base, same]
    with pytest.raises(YqtError, match="not comparable") as err:
        pair_by_image_set([base, same, other], base, force=False)
    assert "ground truth uuuuuuuuuuuu" in err.value.message
