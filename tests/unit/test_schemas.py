"""The published JSON schemas: generated from the records, valid JSON Schema, and frozen per version.

The snapshot below is the contract with every script that reads yqt's JSON: a schema file whose
content changes keeps its hash here only if its version changes too. To change a document on purpose:
bump ``SCHEMA`` of its record (``yqt/eval/1`` → ``yqt/eval/2``), run ``python -m yqt.schema --write``,
keep the old file, and add the new file's hash below.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from yqt import schema
from yqt.schema import SCHEMA_DIR

SNAPSHOT = {
    "bench-1.json": "5c02001eb5c2156675d69ac2e0799b1086b47fabb5abd12aa4516613b62f6aeb",
    "compare-1.json": "0a1844d2386a2353332a6296128a7baca17d31ffd2f753e7c483a9c4a5b2a5fc",
    "compare-2.json": "465e565235fe59b4e0bb076a9eaef8e0cdd23aa4fa67cd60a946c8b4217f9df4",
    "compare-3.json": "f3277a902b610e6f60ea3137659f642ccae11310c6346a030258c000e019d68c",
    "curves-1.json": "8e3144cb0d4331e0508f4d28ad57109dc422c6d285d7c73530d19d07f1b60f00",
    "error-1.json": "18665d15fe167b52ff23b0cfb6382377a1d9bc406e3572d0fb364a60ecd7b0e9",
    "eval-1.json": "ec1a687bd417dd42815a1b62ce120247388cb86de61215f4d6416e5613118bb5",
    "eval-2.json": "9875dba4f3ca8b0c351a3b78a2e275b9e25a27378bbd4eb1f5b4a2fd0577c463",
    "eval-3.json": "3c4ba2405c3f1ce6372fdf49a67469668663aedfd1c998e2a38cd6049305d6c6",
    "export-1.json": "d409284d517d3ba4bb539718f3adc3328c811adb931f5b175fa5325a8ae38a1c",
    "export-2.json": "6393a9ec806214d21f2d9370c27925a17a0c0f293db1bd8cde49f377e1df81df",
    "graph-1.json": "568885415e9ff2075f1c5c1dedb835172292ad959ea19c9c0c169207f79cdddd",
    "image-ids-1.json": "80f2f9d1541c6afb79901344b71aeeecea22c32e6de7ffc989fc21f80de4e7b8",
    "pipeline-1.json": "334d2a15b19b6f12281b32a9c70e2a0cec9864ab1ea4f0ee52da98a017835f42",
    "pipeline-2.json": "4712a6908a960b4bc90513454976b0842d58c45114012e4dbfea534d9ade6f76",
    "pipeline-3.json": "71c98d481ba2917aacfb4e90c62085ae186881a9669da0fc2f5a0120e56adbbd",
    "pipeline-4.json": "e4e68c1576a8070a15576264484d2b161927dc3e661db31a10a679ee9ece8d44",
    "quantize-1.json": "7eed56f343e1c251a00bd9c77fc5378c88d86912df6c52c5526284fa7ecdddc4",
    "quantize-2.json": "c884208433d1d6f6a3e32d64405f49983a0195ef7f852c47575f0f5db7963611",
    "quantize-3.json": "9fa5a0dc097301d985451a1219a72090ce407402612240f53dbe84135f934846",
    "quantize-4.json": "1dfe2c92b5948dfb9ac049a8918273e6e9faca5e76b8e6c5c06287a0c58ff31c",
    "quantize-5.json": "bb1f122e5f99b63a1acd22be93c3248ab101ddbbc4b8acad69e917638110a147",
    "report-1.json": "edc356c6048ab85defe4ab66e7b0bd541ce9a72226820f8a81490e17cf5ccfe9",
    "run-1.json": "87a8d074939bb05868cf7180dd1ab7af6c93a6c650de1adf8c9c4059b78b7e89",
    "run-2.json": "854776d123e34516ee65f63aa127ba97342cb822f04f3cd927aa60c272e3fa0a",
    "run-3.json": "a8bc7bfce915d2703d87bdbc17871e41781fcac77cb0824cc4c5f632df06fab1",
    "sensitivity-1.json": "64713731abf30e7b1e5e813dbbe869570bfd8e62a76e7c4aa41d3bc3b6331c8d",
    "sensitivity-2.json": "cd6f15c6fa8c212127480157e50cefe80be48a76e90ae09b0777943f18124965",
    "smoke-1.json": "db0fedf758e101206cbe06f083930c768e90863c8f1b0694b547bc1009c67935",
    "smoke-2.json": "177feda2add364f688923b22e62b462be8a605499b71d3e1994565b617ee8b14",
    "smoke-3.json": "736ec5b566289ba8420d4ced3c5e6c774091fa8e32f821303c6488d0fa1668f2",
    "step-config-1.json": "a7cb9314db778573fd1211b0ba8014b3203df230a0cd7906754c4ea1ec532811",
}


def _canonical_hash(text: str) -> str:
    """The schema's content, not its layout: key order and white space do not count."""
    return hashlib.sha256(json.dumps(json.loads(text), sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _published() -> dict[str, str]:
    return {p.name: _canonical_hash(p.read_text()) for p in sorted(SCHEMA_DIR.glob("*.json"))}


def test_no_published_schema_changes_without_a_version_bump():
    published = _published()
    changed = [name for name, digest in SNAPSHOT.items() if name in published and published[name] != digest]
    missing = [name for name in SNAPSHOT if name not in published]
    unlisted = [name for name in published if name not in SNAPSHOT]
    current = "\n".join(f'    "{n}": "{d}",' for n, d in published.items())
    assert not changed, (
        f"{changed} changed without a new version: a script reading them would break. Bump the record's "
        f"SCHEMA version instead (see this module's docstring). Current hashes:\n{current}"
    )
    assert not missing, f"{missing} were published once; keep them for documents already written"
    assert not unlisted, f"new schema files {unlisted}: add them to SNAPSHOT. Current hashes:\n{current}"


def test_record_schemas_are_generated_from_the_records_as_they_are():
    stale = [p.name for p, text in schema.generated_schemas().items() if not p.is_file() or p.read_text() != text]
    assert not stale, f"{stale} no longer match their records: run python -m yqt.schema --write (and bump the version)"


@pytest.mark.parametrize("name", sorted(p.name for p in SCHEMA_DIR.glob("*.json")))
def test_each_schema_is_valid_json_schema_named_for_its_file(name: str):
    import jsonschema

    doc = json.loads((SCHEMA_DIR / name).read_text())
    jsonschema.Draft202012Validator.check_schema(doc)
    kind, version = name.removesuffix(".json").rsplit("-", 1)
    assert doc["$id"] == f"yqt/{kind}/{version}"
    assert doc["properties"]["schema"] == {"const": doc["$id"]}


def test_every_document_record_names_a_published_schema():
    for dotted in schema.DOCUMENT_RECORDS:
        cls = schema.record_class(dotted)
        assert schema.schema_file(cls.SCHEMA).is_file(), cls.SCHEMA


def test_units_are_said_in_the_keys_and_once_in_the_schema():
    compare = json.loads((SCHEMA_DIR / "compare-1.json").read_text())
    delta = compare["$defs"]["MetricDelta"]
    assert {"value", "baseline", "delta_pt", "ci95_pt", "ci_excludes_zero"} == set(delta["properties"])
    assert "points" in delta["description"] and "fractions" in delta["description"]
    assert "max_drop_pt" in compare["properties"] and "max_drop_metric" in compare["properties"]
    evaluation = json.loads((SCHEMA_DIR / "eval-1.json").read_text())
    assert "Fractions in [0, 1]" in evaluation["$defs"]["CocoMetrics"]["description"]
    assert evaluation["properties"]["model"]["properties"]["yqt.imgsz"] == {"type": "integer"}


def test_every_check_result_has_passed():
    for name in ("export-2.json", "quantize-3.json", "smoke-2.json", "compare-2.json"):
        assert "passed" in json.loads((SCHEMA_DIR / name).read_text())["required"], name
    defs = json.loads((SCHEMA_DIR / "quantize-3.json").read_text())["$defs"]
    for record in ("GateCheck", "GateReport", "ContractCheck", "ExportVerification", "ColumnCheck", "ParityReport"):
        assert "passed" in defs[record]["required"], record


def test_error_document_validates_and_a_document_without_schema_does_not():
    import jsonschema

    schema.validate(schema.error_document("photo.png is a PNG image, not an ONNX model", "pass an .onnx file", 2))
    with pytest.raises(jsonschema.ValidationError):
        schema.validate({"error": "x"})
    with pytest.raises(jsonschema.ValidationError):
        schema.validate({"schema": "yqt/error/1", "error": "x", "hint": None, "exit_code": "2"})
