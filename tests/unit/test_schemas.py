"""The shipped JSON Schemas: well-formed draft 2020-12, versioned, and saying what the typed models say."""

from __future__ import annotations

import json
import typing
from importlib import resources

import jsonschema
import msgspec
import pytest

from schemas.decode import schema_for
from schemas.model import DATA_TYPES, EVENT_TYPES

ENVELOPE_REQUIRED = ["specversion", "id", "source", "type", "time", "subject", "data"]


def test_one_schema_file_per_type_ships_in_the_package() -> None:
    folder = resources.files("schemas").joinpath("json")
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".schema.json"))
    assert names == sorted([f"{name}.schema.json" for name in EVENT_TYPES] + ["envelope.schema.json"])


@pytest.mark.parametrize("name", [*EVENT_TYPES, "envelope"])
def test_schema_is_valid_draft_2020_12_with_versioned_id(name: str) -> None:
    schema = schema_for(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"] == f"https://schemas.pathwatch.org/events/v1/{name}.schema.json"
    # a service change is about a team: it has no subject
    assert schema["required"] == [r for r in ENVELOPE_REQUIRED if name != "service.change" or r != "subject"]
    assert schema["properties"]["specversion"] == {"const": "1.0"}


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_schema_type_is_pinned(name: str) -> None:
    assert schema_for(name)["properties"]["type"] == {"const": name}


def _required_fields(struct: type[msgspec.Struct]) -> list[str]:
    return [f.name for f in msgspec.structs.fields(struct) if f.required]


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_schema_data_matches_the_typed_model(name: str) -> None:
    data = schema_for(name)["properties"]["data"]
    struct = DATA_TYPES[name]
    assert data["required"] == _required_fields(struct)
    assert list(data["properties"]) == [f.name for f in msgspec.structs.fields(struct)]
    for field in msgspec.structs.fields(struct):
        literal = [arg for arg in typing.get_args(field.type) or [field.type] if typing.get_origin(arg) is typing.Literal]
        if typing.get_origin(field.type) is typing.Literal:
            literal = [field.type]
        if literal:
            enum = [v for v in data["properties"][field.name]["enum"] if v is not None]  # null: optional
            assert enum == list(typing.get_args(literal[0])), field.name


def test_schema_for_returns_a_copy_and_rejects_unknown_names() -> None:
    schema = schema_for("contact")
    schema["properties"].clear()
    assert schema_for("contact")["properties"]
    with pytest.raises(KeyError):
        schema_for("appointment")


def test_schema_files_are_plain_json() -> None:
    for name in EVENT_TYPES:
        text = resources.files("schemas").joinpath("json", f"{name}.schema.json").read_text("utf-8")
        assert json.loads(text) == schema_for(name)
