"""COCO subsets, image decoding and the Ultralytics-predict letterbox.

Nothing here imports torch or Ultralytics: eval must start fast. The letterbox reproduces
Ultralytics' ``LetterBox(auto=False, center=True)`` exactly (INTER_LINEAR, pad 114, the same
rounding), and :func:`unletterbox_xyxy` is the inverse used to map boxes back.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from yqt.errors import YqtError

if TYPE_CHECKING:
    from yqt.yolo_data import YoloGroundTruth

PAD_VALUE = 114
VAL_IMAGES = "val2017"
VAL_ANNOTATIONS = "annotations/instances_val2017.json"

# Ultralytics' coco80_to_coco91_class(): contiguous 80-class index → original COCO category id.
COCO80_TO_91 = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33,
    34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61,
    62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)  # fmt: skip


@dataclass(frozen=True)
class CocoPaths:
    images_dir: Path
    annotations: Path


@dataclass(frozen=True)
class LabelledImages:
    """The ground truth to score against, from a COCO root or an Ultralytics dataset YAML."""

    coco: Any  # pycocotools' COCO index
    paths: Mapping[int, Path]  # image id → image file
    order: tuple[int, ...]  # the order --max-images takes images in
    images_dir: Path
    annotations_path: Path | None  # the COCO JSON read; None when built from YOLO labels
    annotations_sha256: str
    yolo: YoloGroundTruth | None = None
    ground_truth_json: bytes | None = None  # for YOLO labels: the COCO JSON hashed above, as eval writes it

    @property
    def in_name_order(self) -> bool:
        return self.yolo is not None


@dataclass(frozen=True)
class Letterbox:
    """How an image was letterboxed: per-axis gains and the left/top padding."""

    gain_x: float
    gain_y: float
    pad_x: int
    pad_y: int
    orig_w: int
    orig_h: int


@dataclass(frozen=True)
class PreparedImage:
    image_id: int
    tensor: np.ndarray  # 1x3xSxS float, RGB, 0..1
    letterbox: Letterbox


def resolve_coco_paths(
    coco_root: Path | None, images_dir: Path | None = None, annotations: Path | None = None
) -> CocoPaths:
    """Standard layout under ``coco_root``; ``images_dir``/``annotations`` override either part."""
    if coco_root is None and (images_dir is None or annotations is None):
        raise YqtError(
            "no COCO data given",
            "pass --coco-root DIR (with val2017/ and annotations/), or --images-dir and --annotations",
        )
    if coco_root is not None and not Path(coco_root).is_dir():
        raise YqtError(f"--coco-root not found: {coco_root}", "point it at a folder holding val2017/ and annotations/")
    images = Path(images_dir) if images_dir else Path(coco_root) / VAL_IMAGES  # type: ignore[arg-type]
    ann = Path(annotations) if annotations else Path(coco_root) / VAL_ANNOTATIONS  # type: ignore[arg-type]
    if not ann.is_file():
        raise YqtError(f"annotations file not found: {ann}", "pass --annotations FILE (instances_val2017.json)")
    if not images.is_dir():
        raise YqtError(f"images folder not found: {images}", "pass --images-dir DIR holding the val2017 images")
    return CocoPaths(images_dir=images, annotations=ann)


def load_coco(annotations: Path) -> Any:
    """pycocotools' COCO index, quietly, with a one-line error for a broken file."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(annotations))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise YqtError(
            f"annotations file is not COCO instances JSON: {annotations} ({type(exc).__name__}: {exc})",
            "pass the official instances_val2017.json",
        ) from None
    if not coco.getImgIds():
        raise YqtError(f"annotations file lists no images: {annotations}", "pass the official instances_val2017.json")
    return coco


def check_data_options(data: Path | None, split: str, skip_bad_labels: bool, default_split: str = "val") -> None:
    """``--split`` and ``--skip-bad-labels`` mean something only with ``--data``."""
    from yqt.yolo_data import SPLITS

    if split not in SPLITS:
        raise YqtError(f"unknown --split {split!r}", "use val, train or test")
    if data is None and (split != default_split or skip_bad_labels):
        option = "--split" if split != default_split else "--skip-bad-labels"
        raise YqtError(f"{option} applies to a dataset YAML only", f"pass --data FILE.yaml with {option}")


def labelled_images(
    coco_root: Path | None,
    images_dir: Path | None = None,
    annotations: Path | None = None,
    data: Path | None = None,
    split: str = "val",
    skip_bad_labels: bool = False,
) -> LabelledImages:
    """The ground truth of ``--data`` (a YAML split) or of a COCO root; never both."""
    if data is not None:
        given = [o for o, v in (("--coco-root", coco_root), ("--images-dir", images_dir),
                                ("--annotations", annotations)) if v is not None]  # fmt: skip
        if given:
            raise YqtError(
                f"--data and {' and '.join(given)} both name the data to score",
                "pass --data FILE.yaml for a YOLO-format dataset, or --coco-root DIR for a COCO one",
            )
        return yolo_labelled_images(Path(data), split, skip_bad_labels)
    paths = resolve_coco_paths(coco_root, images_dir, annotations)
    coco = load_coco(paths.annotations)
    from yqt.runs import sha256_file

    return LabelledImages(
        coco=coco,
        paths={i: paths.images_dir / coco.imgs[i]["file_name"] for i in coco.getImgIds()},
        order=tuple(sorted(coco.getImgIds())),
        images_dir=paths.images_dir,
        annotations_path=paths.annotations,
        annotations_sha256=sha256_file(paths.annotations),
    )


def yolo_labelled_images(data: Path, split: str, skip_bad_labels: bool = False) -> LabelledImages:
    from yqt.yolo_data import build_ground_truth, coco_from_json, ground_truth_bytes, load_dataset_yaml

    truth = build_ground_truth(load_dataset_yaml(data), split, skip_bad_labels)
    payload = ground_truth_bytes(truth)  # serialised once: hashed here, written by eval as is
    return LabelledImages(
        coco=coco_from_json(truth.coco_json),
        paths=truth.paths,
        order=truth.order,
        images_dir=truth.dataset.root,
        annotations_path=None,
        annotations_sha256=hashlib.sha256(payload).hexdigest(),
        yolo=truth,
        ground_truth_json=payload,
    )


def read_ids_list(path: Path) -> list[int]:
    """Image ids, one per line or comma/space separated; '#' starts a comment."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YqtError(
            f"image id list not found: {path}", "pass --image-ids-list FILE with one image id per line"
        ) from None
    ids: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for token in line.split("#", 1)[0].replace(",", " ").split():
            try:
                ids.append(int(token))
            except ValueError:
                raise YqtError(
                    f"{path}:{lineno}: {token!r} is not an integer image id",
                    "list one COCO image id per line",
                ) from None
    if not ids:
        raise YqtError(f"image id list is empty: {path}", "list one COCO image id per line")
    return ids


@dataclass(frozen=True)
class IdSelection:
    ids: tuple[int, ...]
    warnings: tuple[str, ...]


def select_image_ids(
    available: Iterable[int],
    max_images: int | None = None,
    ids_list: Sequence[int] | None = None,
    in_given_order: bool = False,
) -> IdSelection:
    """The deterministic subset: the first N ids in ascending order (or in the order given, for a
    dataset YAML's file-name order), or exactly the listed ids. The ids come back ascending."""
    pool = list(dict.fromkeys(int(i) for i in available)) if in_given_order else sorted(set(int(i) for i in available))
    warnings: list[str] = []
    if max_images is not None and max_images < 1:
        raise YqtError(f"--max-images must be at least 1, got {max_images}", "pass --max-images N with N >= 1")
    if ids_list is not None:
        known = set(pool)
        missing = [i for i in ids_list if i not in known]
        if missing:
            shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
            raise YqtError(
                f"{len(missing)} id(s) in the image id list are not in the annotations: {shown}",
                "list only ids present in the annotations file",
            )
        unique = set(ids_list)
        if len(unique) != len(ids_list):
            warnings.append(f"image id list has {len(ids_list) - len(unique)} duplicate(s); each id is scored once")
        pool = [i for i in pool if i in unique]
    if max_images is not None:
        if max_images > len(pool):
            warnings.append(f"--max-images {max_images} exceeds the {len(pool)} images available; using all of them")
        pool = pool[:max_images]
    return IdSelection(ids=tuple(sorted(pool)), warnings=tuple(warnings))


def ids_sha256(ids: Sequence[int]) -> str:
    """Hash of the id list as scored: ascending, comma-joined."""
    return hashlib.sha256(",".join(str(i) for i in sorted(ids)).encode()).hexdigest()


def letterbox_params(w: int, h: int, size: int) -> tuple[int, int, Letterbox, tuple[int, int, int, int]]:
    r = min(size / h, size / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    lb = Letterbox(gain_x=new_w / w, gain_y=new_h / h, pad_x=left, pad_y=top, orig_w=w, orig_h=h)
    return new_w, new_h, lb, (top, bottom, left, right)


def letterbox(bgr: np.ndarray, size: int, dtype: Any = np.float32) -> tuple[np.ndarray, Letterbox]:
    """BGR HxWx3 uint8 → 1x3xSxS RGB in [0,1], as Ultralytics predict does."""
    import cv2

    h, w = bgr.shape[:2]
    new_w, new_h, lb, (top, bottom, left, right) = letterbox_params(w, h, size)
    if (w, h) != (new_w, new_h):
        bgr = cv2.resize(bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    padded = cv2.copyMakeBorder(bgr, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    chw = padded[..., ::-1].transpose(2, 0, 1)
    tensor = np.ascontiguousarray(chw[None]).astype(dtype) / np.asarray(255, dtype=dtype)
    return tensor, lb


def unletterbox_xyxy(boxes: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Letterboxed-pixel xyxy boxes → original-image pixels, clipped to the image."""
    out = boxes.astype(np.float64, copy=True)
    out[:, [0, 2]] = ((out[:, [0, 2]] - lb.pad_x) / lb.gain_x).clip(0, lb.orig_w)
    out[:, [1, 3]] = ((out[:, [1, 3]] - lb.pad_y) / lb.gain_y).clip(0, lb.orig_h)
    return out


def read_image(path: Path) -> np.ndarray:
    """Decode an image as BGR uint8, or raise a one-line error.

    A corrupt or unreadable image fails the command instead of being skipped: a skipped image
    would silently change the scored set, and metrics from different sets are not comparable.
    """
    import cv2

    if not Path(path).is_file():
        raise YqtError(f"image not found: {path}", "check --images-dir, or drop the id with --image-ids-list")
    fix = "replace the file, or leave its id out with --image-ids-list"
    data = Path(path).read_bytes()  # read once: decoded and checked for truncation from the same bytes
    try:
        img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
    except cv2.error as exc:  # e.g. a header claiming more than CV_IO_MAX_IMAGE_PIXELS
        raise YqtError(f"image cannot be decoded: {path} ({getattr(exc, 'err', '') or 'OpenCV error'})", fix) from None
    if img is None or img.size == 0:
        raise YqtError(f"image cannot be decoded: {path}", fix)
    if _jpeg_is_truncated(data):
        raise YqtError(f"image is truncated (JPEG has no end-of-image marker after its last scan): {path}", fix)
    return img


def _jpeg_is_truncated(data: bytes) -> bool:
    """A JPEG cut short in its pixel data, which libjpeg decodes anyway (gray rows, a stderr warning).

    Markers cannot occur inside entropy-coded data (0xFF is stuffed there), so a complete JPEG has
    EOI (FFD9) after its last SOS (FFDA); bytes after EOI are allowed. Searched from the last EOI on,
    which a complete file has at its end: scanning back to the last SOS read the whole file.
    """
    return data.startswith(b"\xff\xd8") and data.find(b"\xff\xda", max(data.rfind(b"\xff\xd9"), 0)) != -1


def default_smoke_image() -> Path:
    """Ultralytics' bundled ``assets/bus.jpg``, found without importing Ultralytics (and torch)."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        raise YqtError("ultralytics is not installed, so there is no default image", "pass --image PATH")
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / "bus.jpg"


def prefetch_images(
    items: Sequence[tuple[int, Path]], size: int, dtype: Any = np.float32, workers: int = 2, depth: int = 4
) -> Iterator[PreparedImage]:
    """Decode and letterbox ahead of the consumer, in order, with at most ``depth`` images in flight.

    cv2 releases the GIL while decoding and resizing, so this overlaps with ``session.run``.
    """

    def prepare(item: tuple[int, Path]) -> PreparedImage:
        image_id, path = item
        tensor, lb = letterbox(read_image(path), size, dtype)
        return PreparedImage(image_id=image_id, tensor=tensor, letterbox=lb)

    if workers < 1:
        yield from map(prepare, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="yqt-prefetch") as pool:
        pending: list[Any] = []
        it = iter(items)
        for item in it:
            pending.append(pool.submit(prepare, item))
            if len(pending) >= depth:
                break
        while pending:
            ready = pending.pop(0).result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(prepare, nxt))
            yield ready
