"""What a file is, from its first bytes: so a PNG passed as a model is called a PNG, not a bad protobuf."""

from __future__ import annotations

from pathlib import Path

from yqt.errors import YqtError

# (magic prefix, what it is). Checked in order; ONNX itself has no magic (a protobuf starts with a field tag).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a zip archive (a PyTorch .pt checkpoint is one)"),
    (b"\x80\x02", "a Python pickle (an old-style PyTorch checkpoint)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "an executable (ELF)"),
)
_WEBP = (b"RIFF", b"WEBP")

# The image files yqt reads from a folder (calibration, parity, dataset splits): what OpenCV decodes.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def describe(head: bytes) -> str | None:
    """What the bytes are when they are a known non-ONNX format; ``None`` when they may be ONNX."""
    if not head:
        return "an empty file"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if head[:4] == _WEBP[0] and head[8:12] == _WEBP[1]:
        return "a WebP image"
    text = head.lstrip()[:1]
    if text in (b"{", b"["):
        return "a JSON or text file"
    if is_openvino_ir(head):
        return OPENVINO_IR
    if text == b"<":
        return "an XML or HTML file"
    return None


OPENVINO_IR = "an OpenVINO IR (.xml)"
_HEAD_BYTES = 512  # enough to see an OpenVINO IR's <net> element after the XML declaration


def is_openvino_ir(head: bytes) -> bool:
    """An OpenVINO IR's .xml: ``<?xml ...?>`` (or nothing) then ``<net name=...``."""
    text = head.lstrip()
    return text.startswith((b"<?xml", b"<net")) and b"<net" in text


def model_kind(path: Path) -> str | None:
    """``"onnx"``, ``"openvino-ir"``, or None for a file that is plainly neither (see :func:`describe`)."""
    with open(path, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
    if is_openvino_ir(head):
        return "openvino-ir"
    return "onnx" if describe(head) is None else None


def require_onnx_file(path: Path) -> None:
    """Refuse, in one line that names what the file is, anything that is plainly not an ONNX model."""
    path = Path(path)
    if not path.is_file():
        raise YqtError(f"ONNX model not found: {path}", "pass the path of an .onnx file, e.g. runs/<id>/onnx/*.onnx")
    with open(path, "rb") as fh:
        what = describe(fh.read(_HEAD_BYTES))
    if what == OPENVINO_IR:
        raise YqtError(
            f"{path.name} is {what}; this command runs ONNX models on ONNX Runtime only",
            "pass the .onnx file the IR was made from, or run the IR with --runtime openvino (smoke, eval, bench)",
        )
    if what is not None:
        raise YqtError(
            f"{path.name} is {what}, not an ONNX model",
            "pass an .onnx file (yqt export and yqt quantize write them under runs/<id>/onnx/)",
        )
