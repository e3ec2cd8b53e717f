"""Image decoding against odd but valid files, and broken ones.

Every decodable image must come out of ``read_image`` as HxWx3 uint8 BGR at its own size, and
letterbox to a 1x3x640x640 tensor whose content box maps back onto the whole image. Every broken
file must fail with a one-line ``YqtError`` naming it, never another exception or a silent image.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from yqt.data import PAD_VALUE, letterbox, letterbox_params, read_image, unletterbox_xyxy
from yqt.errors import YqtError

try:
    from PIL import Image
except ImportError:  # pragma: no cover - depends on the environment
    Image = None

SIZE = 640


def _write(path: Path, img: np.ndarray, *params: int) -> Path:
    assert cv2.imwrite(str(path), img, list(params)), path
    return path


def _gradient(h: int, w: int) -> np.ndarray:
    return ((np.arange(h)[:, None] * 7 + np.arange(w)[None, :] * 3) % 256).astype(np.uint8)


def _gray_png(tmp: Path) -> tuple[Path, np.ndarray]:
    g = _gradient(37, 53)
    return _write(tmp / "gray.png", g), np.repeat(g[..., None], 3, axis=2)


def _gray_jpeg(tmp: Path) -> tuple[Path, np.ndarray]:
    g = _gradient(37, 53)
    return _write(tmp / "gray.jpg", g, cv2.IMWRITE_JPEG_QUALITY, 100), np.repeat(g[..., None], 3, axis=2)


def _rgba_png(tmp: Path) -> tuple[Path, np.ndarray]:
    bgra = np.zeros((31, 47, 4), np.uint8)
    bgra[..., 0], bgra[..., 1], bgra[..., 2] = 200, _gradient(31, 47), 30
    bgra[..., 3] = np.linspace(0, 255, 47, dtype=np.uint8)[None, :]  # alpha from transparent to opaque
    return _write(tmp / "rgba.png", bgra), bgra[..., :3]  # IMREAD_COLOR drops alpha, no premultiply


def _png16_gray(tmp: Path) -> tuple[Path, np.ndarray]:
    v = np.full((24, 40), 32768, np.uint16)  # mid-gray: 128 after scaling, 255 if saturated
    v[:, :10] = np.array([0, 255, 256, 1000, 20000, 40000, 65279, 65280, 65535, 12345], np.uint16)
    return _write(tmp / "gray16.png", v), np.repeat((v >> 8).astype(np.uint8)[..., None], 3, axis=2)


def _png16_color(tmp: Path) -> tuple[Path, np.ndarray]:
    v = np.empty((24, 40, 3), np.uint16)
    v[..., 0], v[..., 1], v[..., 2] = 65535, 32768, 1000  # B, G, R
    return _write(tmp / "color16.png", v), (v >> 8).astype(np.uint8)


def _cmyk_jpeg(tmp: Path) -> tuple[Path, np.ndarray]:
    if Image is None:
        pytest.skip("PIL is not installed; it is the only writer here for a CMYK JPEG")
    path = tmp / "cmyk.jpg"
    Image.new("CMYK", (45, 29), (255, 0, 0, 0)).save(path, "JPEG", quality=95)  # pure cyan
    return path, np.broadcast_to(np.array([255, 255, 0], np.uint8), (29, 45, 3))


def _solid_png(name: str, h: int, w: int) -> Callable[[Path], tuple[Path, np.ndarray]]:
    def make(tmp: Path) -> tuple[Path, np.ndarray]:
        bgr = np.empty((h, w, 3), np.uint8)
        bgr[:] = (10, 120, 250)
        return _write(tmp / f"{name}.png", bgr), bgr

    return make


# (writer, largest allowed per-pixel difference from the expected BGR: 0 for lossless formats)
DECODABLE: dict[str, tuple[Callable[[Path], tuple[Path, np.ndarray]], int]] = {
    "gray_png": (_gray_png, 0),
    "gray_jpeg": (_gray_jpeg, 8),
    "rgba_png": (_rgba_png, 0),
    "png16_gray": (_png16_gray, 1),
    "png16_color": (_png16_color, 1),
    "cmyk_jpeg": (_cmyk_jpeg, 8),
    "one_pixel": (_solid_png("one_pixel", 1, 1), 0),
    "wide_10000x10": (_solid_png("wide", 10, 10000), 0),
    "tall_10x10000": (_solid_png("tall", 10000, 10), 0),
}


@pytest.mark.parametrize("case", list(DECODABLE))
def test_decodable_image_reads_and_letterboxes(tmp_path: Path, case: str):
    make, tol = DECODABLE[case]
    path, expected = make(tmp_path)
    h, w = expected.shape[:2]

    img = read_image(path)
    assert img.shape == (h, w, 3) and img.dtype == np.uint8
    diff = np.abs(img.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= tol, f"{case}: decoded BGR differs from the source by up to {diff.max()}"

    x, lb = letterbox(img, SIZE)
    assert x.shape == (1, 3, SIZE, SIZE) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert (lb.orig_w, lb.orig_h) == (w, h)

    new_w, new_h, _, (top, bottom, left, right) = letterbox_params(w, h, SIZE)
    assert new_w >= 1 and new_h >= 1, "letterbox must never resize to zero pixels"
    assert (lb.pad_x, lb.pad_y) == (left, top)
    assert new_w + left + right == SIZE and new_h + top + bottom == SIZE

    content = np.array([[left, top, left + new_w, top + new_h]], dtype=np.float64)
    np.testing.assert_allclose(unletterbox_xyxy(content, lb)[0], [0, 0, w, h], atol=1.0)

    outside = np.ones((SIZE, SIZE), dtype=bool)
    outside[top : top + new_h, left : left + new_w] = False
    assert outside.sum() == SIZE * SIZE - new_w * new_h
    np.testing.assert_allclose(x[0][:, outside], PAD_VALUE / 255, atol=1e-6)


def test_sixteen_bit_mid_gray_is_scaled_not_saturated(tmp_path: Path):
    path = _write(tmp_path / "mid16.png", np.full((8, 8), 32768, np.uint16))
    img = read_image(path)
    assert img.dtype == np.uint8 and abs(int(img.mean()) - 128) <= 1


@pytest.mark.parametrize(
    ("w", "h"), [(1, 1), (10000, 10), (10, 10000), (100000, 1), (1, 100000), (641, 1), (1, 641), (640, 640)]
)
def test_letterbox_params_never_resize_to_zero(w: int, h: int):
    new_w, new_h, lb, (top, bottom, left, right) = letterbox_params(w, h, SIZE)
    assert 1 <= new_w <= SIZE and 1 <= new_h <= SIZE
    assert new_w + left + right == SIZE and new_h + top + bottom == SIZE
    assert min(top, bottom, left, right) >= 0
    assert lb.gain_x > 0 and lb.gain_y > 0


@pytest.mark.parametrize(("w", "h"), [(100000, 1), (1, 100000)])
def test_letterbox_of_a_one_pixel_line(w: int, h: int):
    x, lb = letterbox(np.full((h, w, 3), 50, np.uint8), SIZE)
    assert x.shape == (1, 3, SIZE, SIZE)
    back = unletterbox_xyxy(np.array([[lb.pad_x, lb.pad_y, SIZE - lb.pad_x, SIZE - lb.pad_y]], float), lb)
    np.testing.assert_allclose(back[0], [0, 0, w, h], atol=1.0)


def _assert_one_line_error(path: Path, exc: YqtError) -> None:
    assert type(exc) is YqtError
    assert str(path) in exc.message
    assert "\n" not in str(exc) and "Traceback" not in str(exc)
    assert exc.hint and "--image-ids-list" in exc.hint


def _jpeg_bytes(tmp: Path) -> bytes:
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), (5, 5), 0)
    return _write(tmp / "source.jpg", img, cv2.IMWRITE_JPEG_QUALITY, 90).read_bytes()


def _png_claiming(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


BROKEN: dict[str, tuple[str, Callable[[Path], bytes]]] = {
    "zero_bytes": ("empty.jpg", lambda tmp: b""),
    "truncated_jpeg": ("truncated.jpg", lambda tmp: (b := _jpeg_bytes(tmp))[: len(b) // 2]),
    "jpeg_missing_eoi": ("no_eoi.jpg", lambda tmp: _jpeg_bytes(tmp)[:-2]),
    "jpeg_header_only": ("header.jpg", lambda tmp: _jpeg_bytes(tmp)[:300]),
    "text_as_png": ("text.png", lambda tmp: b"this is not an image\n"),
    "png_claims_1e10_pixels": ("huge.png", lambda tmp: _png_claiming(100000, 100000)),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_file_is_a_one_line_error(tmp_path: Path, case: str):
    name, make = BROKEN[case]
    path = tmp_path / name
    path.write_bytes(make(tmp_path))
    with pytest.raises(YqtError) as info:
        read_image(path)
    _assert_one_line_error(path, info.value)


def test_missing_file_is_a_one_line_error(tmp_path: Path):
    path = tmp_path / "missing.jpg"
    with pytest.raises(YqtError, match="image not found") as info:
        read_image(path)
    assert str(path) in info.value.message and "\n" not in str(info.value)


def test_bytes_after_jpeg_end_marker_are_accepted(tmp_path: Path):
    """Trailers after EOI (camera maker notes, padding) are common in valid files."""
    data = _jpeg_bytes(tmp_path)
    path = tmp_path / "trailer.jpg"
    path.write_bytes(data + b"\0" * 64 + b"trailer")
    img = read_image(path)
    np.testing.assert_array_equal(img, read_image(tmp_path / "source.jpg"))


def test_jpeg_cut_anywhere_is_an_error(tmp_path: Path):
    data = _jpeg_bytes(tmp_path)
    path = tmp_path / "cut.jpg"
    for n in np.linspace(0, len(data) - 1, 24).astype(int):
        path.write_bytes(data[:n])
        with pytest.raises(YqtError) as info:
            read_image(path)
        _assert_one_line_error(path, info.value)


def test_png_cut_anywhere_is_an_error_or_the_whole_image(tmp_path: Path):
    img = cv2.cvtColor(_gradient(40, 60), cv2.COLOR_GRAY2BGR)
    data = _write(tmp_path / "source.png", img).read_bytes()
    path = tmp_path / "cut.png"
    for n in np.linspace(0, len(data) - 1, 24).astype(int):
        path.write_bytes(data[:n])
        try:
            out = read_image(path)
        except YqtError as exc:
            _assert_one_line_error(path, exc)
        else:
            np.testing.assert_array_equal(out, img)


def test_corrupted_jpeg_scan_data_decodes_or_fails_cleanly(tmp_path: Path):
    """Random byte damage after the scan header: an image of the right shape, or a YqtError."""
    data = _jpeg_bytes(tmp_path)
    scan = data.rfind(b"\xff\xda") + 12  # past the SOS header: the size stays what SOF says
    rng = np.random.default_rng(1234)
    path = tmp_path / "damaged.jpg"
    for _ in range(40):
        buf = bytearray(data)
        for pos in rng.integers(scan, len(data) - 2, size=int(rng.integers(1, 8))):
            buf[pos] = int(rng.integers(0, 256))
        path.write_bytes(bytes(buf))
        try:
            out = read_image(path)
        except YqtError as exc:
            _assert_one_line_error(path, exc)
        else:
            assert out.shape == (96, 128, 3) and out.dtype == np.uint8
