"""Personas: create, edit, duplicate, delete, YAML round trips, and bad input that saves nothing."""

from __future__ import annotations

import re

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
    assert (copy.name, second.name) == ("candid analyst copy", "candid analyst copy 2")
    assert copy.traits == edited.traits

    personas.delete_persona(created.id)
    assert set(names()) == {"candid analyst copy", "candid analyst copy 2"}


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


def test_a_name_that_looks_like_a_path_is_refused_with_the_characters_allowed(studio):
    for name, message in [
        ("../../etc/x", "Name: may hold only letters, digits, spaces and - _ ., not “/”"),
        (".hidden", "Name: cannot start with a dot"),
        ("a\\b:c", "not “:”, “\\”"),
        ("tab\there", "not a tab or line break"),
    ]:
        with pytest.raises(UserFacingError, match=re.escape(message)):
            personas.create_persona({**CANDID, "name": name})
    assert names() == []
    # accented letters, digits and - _ . are welcome; the export's file name stays in the personas folder
    persona = personas.create_persona({**CANDID, "name": "Émile_2.0 - draft"})
    path = personas.export_yaml(persona.id)
    assert path.parent == studio / "personas" and path.name == "emile-2-0-draft.yaml"


def test_two_personas_whose_file_names_would_collide_export_to_different_files(studio):
    accented = personas.create_persona({**CANDID, "name": "Émile"})
    plain = personas.create_persona({**CANDID, "name": "emile.", "system_prompt": "You are the other one."})
    first, second = personas.export_yaml(accented.id), personas.export_yaml(plain.id)
    assert (first.name, second.name) == ("emile.yaml", "emile-2.yaml")
    # exporting again replaces each persona's own file; both come back as they were
    assert personas.export_yaml(plain.id) == second and personas.export_yaml(accented.id) == first
    assert sorted(p.name for p in (studio / "personas").iterdir()) == ["emile-2.yaml", "emile.yaml"]
    assert personas.parse_yaml(first.read_bytes()).name == "Émile"
    assert personas.parse_yaml(second.read_bytes()).system_prompt == "You are the other one."


LONG = "x" * 20_001


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "n" * 61}, "Name: is 61 characters; the limit is 60"),
        ({"description": "d" * 501}, "Description: is 501 characters; the limit is 500"),
        ({"system_prompt": LONG}, "System prompt: is 20,001 characters; the limit is 20,000"),
        ({"traits": [{"name": f"t{i}", "description": "x"} for i in range(13)]}, "Traits: 13 traits; keep it to 12"),
        ({"traits": [{"name": "t" * 61, "description": "x"}]}, "Trait 1 name: is 61 characters; the limit is 60"),
        ({"traits": [{"name": "t", "description": "x" * 501}]}, "Trait 1 description: is 501 characters"),
        ({"traits": [{"name": "t", "description": "x", "markers": ["m" * 301]}]}, "marker 1 is 301 characters"),
        ({"system_prompt": "You are\x00 kind."}, "System prompt: contains a NUL character"),
        ({"description": "\x00"}, "Description: contains a NUL character"),
        ({"traits": [{"name": "t", "description": "x\x00"}]}, "Trait 1 description: contains a NUL"),
        ({"traits": [{"name": "t", "description": "x", "markers": ["ok", "\x00"]}]}, "marker 2 contains a NUL"),
    ],
)
def test_fields_over_their_limits_or_holding_a_nul_are_refused_and_nothing_is_saved(change, message):
    persona = personas.create_persona(CANDID)
    with pytest.raises(UserFacingError, match=message):
        personas.create_persona({**CANDID, "name": "another", **change})
    with pytest.raises(UserFacingError, match=message):
        personas.update_persona(persona.id, {**CANDID, **change})
    assert names() == ["candid analyst"]
    assert personas.to_spec(personas.get_persona(persona.id)) == personas.validate(CANDID)


def test_the_largest_persona_allowed_is_saved_whole():
    big = {
        "name": "n" * 60,
        "description": "d" * 500,
        "system_prompt": "p" * 20_000,
        "traits": [
            {"name": f"{i:02d}" + "t" * 58, "description": "x" * 500, "markers": ["m" * 300] * 3} for i in range(12)
        ],
    }
    persona = personas.create_persona(big)
    assert personas.to_spec(personas.get_persona(persona.id)) == personas.validate(big)


def test_a_persona_file_over_the_upload_limit_is_refused_before_reading():
    data = b"name: big\nsystem_prompt: |\n" + b"  x\n" * 300_000
    with pytest.raises(UserFacingError, match=r"big\.yaml is 1\.2 MB; the limit is 1\.0 MB"):
        personas.import_yaml(data, source="big.yaml")
    assert names() == []


def test_editor_boxes_convert_to_traits_and_back():
    entries = personas.entries_from_traits(CANDID["traits"])
    assert entries[0]["markers"] == "States unknowns\nNames risks"  # one marker per line
    entries[1]["markers"] = "  Asks one question  \n\n"  # stray spaces and blank lines
    entries.append({"name": "", "description": "  ", "markers": "\n"})  # a box left empty
    assert personas.traits_from_entries(entries) == CANDID["traits"]
