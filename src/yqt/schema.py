"""The versioned JSON schemas of yqt's documents: every ``--json`` output and every JSON file in a run.

Each document names its schema first: ``"schema": "yqt/<kind>/<version>"``, published as
``yqt/schemas/<kind>-<version>.json`` (JSON Schema 2020-12). The schemas of command results are
generated from their records (the ``SCHEMA`` constant of each record in :data:`DOCUMENT_RECORDS`), so a
key cannot change without the schema changing; ``tests/unit/test_schemas.py`` keeps a snapshot and
fails when a published schema changes without a new version. The few documents that are not records
(run.json, step configs, image_ids.json, the ``--json`` error) have hand-written schemas.

Adding a kind: give its result record ``SCHEMA: ClassVar[str] = "yqt/<kind>/1"``, list the record in
:data:`DOCUMENT_RECORDS`, run ``python -m yqt.schema --write`` and add the new file's hash to the
snapshot. A changed record gets ``/<version + 1>``; the old file stays for old documents.

Imports neither torch nor rich; validation needs the ``jsonschema`` package (the ``test`` extra).
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import json
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Documents that are not records: written as dicts, their schemas written by hand.
RUN_MANIFEST = "yqt/run/3"
STEP_CONFIG = "yqt/step-config/1"
IMAGE_IDS = "yqt/image-ids/1"
ERROR = "yqt/error/1"

# "module:Class" of every record that is a whole document; each names its own schema in SCHEMA.
DOCUMENT_RECORDS = (
    "yqt.records:ExportResult",
    "yqt.records:SmokeResult",
    "yqt.records:EvalResult",
    "yqt.records:QuantizeResult",
    "yqt.records:CompareResult",
    "yqt.records:SensitivityResult",
    "yqt.records:PipelineResult",
    "yqt.records:EvalCurves",
    "yqt.records:ReportResult",
    "yqt.records:BenchResult",
    "yqt.graph:GraphReport",
)


def schema_file(schema_id: str) -> Path:
    """``yqt/eval/1`` → ``.../yqt/schemas/eval-1.json``."""
    prefix, kind, version = schema_id.split("/")
    if prefix != "yqt" or not version.isdigit():
        raise ValueError(f"not a yqt schema id: {schema_id!r}")
    return SCHEMA_DIR / f"{kind}-{version}.json"


def load_schema(schema_id: str) -> dict[str, Any]:
    return json.loads(schema_file(schema_id).read_text(encoding="utf-8"))


def validate(doc: Any) -> None:
    """Check a document against the schema it names; raises ``jsonschema.ValidationError``."""
    import jsonschema

    if not isinstance(doc, dict) or not isinstance(doc.get("schema"), str):
        raise jsonschema.ValidationError("document has no 'schema' key naming yqt/<kind>/<version>")
    schema = load_schema(doc["schema"])
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(doc)


def error_document(message: str, hint: str | None, exit_code: int) -> dict[str, Any]:
    """What ``--json`` prints on stdout for a user error (the one line still goes to stderr)."""
    return {"schema": ERROR, "error": message, "hint": hint, "exit_code": exit_code}


# ------------------------------------------------------------------------------------- generation


def record_class(dotted: str) -> type:
    module, name = dotted.split(":")
    return getattr(importlib.import_module(module), name)


def record_schema(cls: type) -> dict[str, Any]:
    """The JSON Schema of ``document(record)`` for a record class: every key required, no others."""
    defs: dict[str, Any] = {}
    body = _object_schema(cls, defs)
    body["properties"] = {"schema": {"const": cls.SCHEMA}, **body["properties"]}  # type: ignore[attr-defined]
    body["required"] = ["schema", *body["required"]]
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": cls.SCHEMA,  # type: ignore[attr-defined]
        "title": cls.__name__,
        **body,
        "$defs": dict(sorted(defs.items())),
    }


def _object_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    props: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        schema = dict(f.metadata.get("schema") or _type_schema(hints[f.name], defs))
        if f.metadata.get("description"):
            schema["description"] = f.metadata["description"]
        props[f.name] = schema
    out: dict[str, Any] = {"type": "object"}
    doc = (cls.__doc__ or "").strip()
    if doc and not doc.startswith(f"{cls.__name__}("):  # dataclasses invent a signature docstring
        out["description"] = " ".join(doc.split())
    out.update(properties=props, required=list(props), additionalProperties=False)
    return out


def _type_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return {}
    if origin in (typing.Union, types.UnionType):
        options = [_type_schema(a, defs) for a in args]
        return {"anyOf": options}
    if dataclasses.is_dataclass(tp):
        if tp.__name__ not in defs:
            defs[tp.__name__] = {}  # placeholder: a record may nest itself
            defs[tp.__name__] = _object_schema(tp, defs)
        return {"$ref": f"#/$defs/{tp.__name__}"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [e.value for e in tp]}
    if tp is type(None):
        return {"type": "null"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    if tp is Path:
        return {"type": "string", "description": "absolute path"}
    if origin in (tuple, list):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            items = [_type_schema(a, defs) for a in args]
            return {"type": "array", "prefixItems": items, "minItems": len(items), "maxItems": len(items)}
        return {"type": "array", "items": _type_schema(args[0], defs) if args else {}}
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        return {"type": "object", "additionalProperties": _type_schema(args[1], defs) if args else {}}
    raise TypeError(f"no JSON schema for type {tp!r}")


def schema_text(schema: dict[str, Any]) -> str:
    """The published form: indented, key order kept, one trailing newline (hashed by the snapshot)."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def generated_schemas() -> dict[Path, str]:
    """Every generated schema file and its text, from the records as they are now."""
    out = {}
    for dotted in DOCUMENT_RECORDS:
        cls = record_class(dotted)
        out[schema_file(cls.SCHEMA)] = schema_text(record_schema(cls))  # type: ignore[attr-defined]
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m yqt.schema --write``: regenerate the record schemas after a deliberate change."""
    argv = sys.argv[1:] if argv is None else argv
    stale = [p for p, text in generated_schemas().items() if not p.is_file() or p.read_text() != text]
    if "--write" in argv:
        for path, text in generated_schemas().items():
            path.write_text(text, encoding="utf-8")
        print("\n".join(f"wrote {p}" for p in stale) or "schemas already up to date")
        return 0
    print("\n".join(f"out of date: {p}" for p in stale) or "schemas up to date")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
