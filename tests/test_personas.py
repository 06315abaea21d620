"""Personas: create, edit, duplicate, delete, YAML round trips, and bad input that saves nothing."""

from __future__ import annotations

import pytest

from pipeline import personas
from pipeline.errors import UserFacingError

CANDID = {
    "name": "candid analyst",
    "description": "Says what the numbers mean.",
    "system_prompt": "You are a candid analyst.",
    "traits": [
        {"name": "candid", "description": "Honest about uncertainty.", "markers": ["States unknowns", "Names risks"]},
        {"name": "curious", "description": "Asks questions first.", "markers": ["Asks one question"]},
    ],
}


def names() -> list[str]:
    return [p.name for p in personas.list_personas()]


def test_the_sample_persona_ships_with_five_traits():
    assert personas.seed_samples() == 1
    sample = personas.get_persona("collaborative")
    assert [t["name"] for t in sample.traits] == ["collaborative", "curious", "ethical", "candid", "warm"]
    assert all(t["description"] and 2 <= len(t["markers"]) <= 3 for t in sample.traits)
    assert personas.seed_samples() == 0  # only into an empty studio


def test_create_edit_duplicate_delete():
    created = personas.create_persona(CANDID)
    assert personas.get_persona("Candid Analyst").id == created.id  # names match case-insensitively

    edited = personas.update_persona(created.id, {**CANDID, "system_prompt": "You are blunt but kind."})
    assert edited.system_prompt == "You are blunt but kind."
    assert edited.updated_at >= created.updated_at

    copy = personas.duplicate_persona(created.id)
    second = personas.duplicate_persona(created.id)
    assert (copy.name, second.name) == ("candid analyst (copy)", "candid analyst (copy 2)")
    assert copy.traits == edited.traits

    personas.delete_persona(created.id)
    assert set(names()) == {"candid analyst (copy)", "candid analyst (copy 2)"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "   "}, "Name: is required"),
        ({"system_prompt": ""}, "System prompt: is required"),
        ({"traits": [{"name": "warm", "description": "", "markers": []}]}, "Trait 1 description: is required"),
        ({"traits": [{"name": "warm", "description": "x", "markers": ["a", "b", "c", "d"]}]}, "keep it to 3"),
        (
            {"traits": [{"name": "warm", "description": "x"}, {"name": "Warm", "description": "y"}]},
            "appears twice",
        ),
    ],
)
def test_bad_input_is_explained_and_nothing_is_saved(change, message):
    personas.create_persona(CANDID)
    before = [(p.name, p.system_prompt, p.traits) for p in personas.list_personas()]

    with pytest.raises(UserFacingError, match=message):
        personas.create_persona({**CANDID, "name": "another", **change})
    existing = personas.get_persona("candid analyst")
    with pytest.raises(UserFacingError, match=message):
        personas.update_persona(existing.id, {**CANDID, **change})

    assert [(p.name, p.system_prompt, p.traits) for p in personas.list_personas()] == before


def test_duplicate_names_are_refused_on_create_and_rename():
    personas.create_persona(CANDID)
    other = personas.create_persona({**CANDID, "name": "other"})
    with pytest.raises(UserFacingError, match="already exists"):
        personas.create_persona({**CANDID, "name": "CANDID ANALYST"})
    with pytest.raises(UserFacingError, match="already exists"):
        personas.update_persona(other.id, {**CANDID, "name": "candid analyst"})
    assert names() == ["candid analyst", "other"]


def test_yaml_round_trip_keeps_every_field(studio):
    original = personas.create_persona(CANDID)
    path = personas.export_yaml(original.id)
    assert path.parent == studio / "personas" and path.name == "candid-analyst.yaml"

    personas.delete_persona(original.id)
    restored = personas.import_yaml(path.read_bytes(), source=path.name)
    assert personas.to_spec(restored) == personas.to_spec(original)


def test_import_refuses_to_overwrite_unless_asked():
    persona = personas.create_persona(CANDID)
    changed = personas.to_yaml(persona).replace("You are a candid analyst.", "Replaced prompt.")
    with pytest.raises(UserFacingError, match="already exists"):
        personas.import_yaml(changed)
    assert personas.get_persona(persona.id).system_prompt == "You are a candid analyst."

    personas.import_yaml(changed, overwrite=True)
    assert personas.get_persona(persona.id).system_prompt == "Replaced prompt."


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name: x\nsystem_prompt: [unclosed\n", r"upload\.yaml is not valid YAML \(line \d+, column \d+\)"),
        ("- just\n- a list\n", "does not describe a persona"),
        (b"\xff\xfe\x00binary", "not a UTF-8 text file"),
        ("name: x\nsystem_prompt: hi\ntraits:\n  - name: warm\n", r"upload\.yaml: Trait 1 description"),
    ],
)
def test_malformed_yaml_names_the_file_and_the_problem(content, message):
    with pytest.raises(UserFacingError, match=message):
        personas.import_yaml(content, source="upload.yaml")
    assert names() == []


def test_a_utf8_bom_is_accepted():
    text = "\ufeffname: bom\nsystem_prompt: hello\n".encode()
    assert personas.import_yaml(text).name == "bom"


def test_export_file_names_cannot_escape_the_personas_folder(studio):
    persona = personas.create_persona({**CANDID, "name": "../../etc/passwd"})
    path = personas.export_yaml(persona.id)
    assert path.parent == studio / "personas"
    assert path.name == "etc-passwd.yaml"


def test_editor_boxes_convert_to_traits_and_back():
    entries = personas.entries_from_traits(CANDID["traits"])
    assert entries[0]["markers"] == "States unknowns\nNames risks"  # one marker per line
    entries[1]["markers"] = "  Asks one question  \n\n"  # stray spaces and blank lines
    entries.append({"name": "", "description": "  ", "markers": "\n"})  # a box left empty
    assert personas.traits_from_entries(entries) == CANDID["traits"]
