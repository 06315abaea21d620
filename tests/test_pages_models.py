"""The Models page through AppTest, from app.py: the registry table, deploy / roll back / archive with a history,
prompt versions and prompt-only variants."""

from __future__ import annotations

from pipeline import personas
from pipeline.registry import lifecycle
from pipeline.registry import prompts as prompt_versions
from tests.test_pages import open_app
from tests.test_registry import add_model


def registry_table(at):
    return next(d.value for d in at.dataframe if "backend" in d.value.columns)


def test_models_page_lists_the_embedded_base_and_a_trained_model_with_their_status():
    personas.seed_samples()
    add_model("collab-ft", personas.get_persona("collaborative").id)
    at = open_app("pages/models.py")
    table = registry_table(at)
    assert list(table["name"]) == ["smollm2-135m-instruct", "collab-ft"]
    assert list(table["status"]) == ["candidate", "candidate"]


def test_deploy_roll_back_and_archive_from_the_page_with_a_history():
    personas.seed_samples()
    persona_id = personas.get_persona("collaborative").id
    add_model("ft-one", persona_id)
    add_model("ft-two", persona_id)
    at = open_app("pages/models.py")
    at.selectbox(key="models_persona").set_value("collaborative").run()
    at.selectbox(key="models_pick").set_value("ft-one").run()
    at.text_input(key="models_notes").set_value("first").run()
    at.button(key="models_deploy").click().run()
    assert any("ft-one now serves collaborative" in s.value for s in at.success)
    at.button(key="models_rollback").click().run()
    assert any("no earlier deployment" in e.value for e in at.error)
    at.selectbox(key="models_pick").set_value("ft-two").run()
    at.button(key="models_deploy").click().run()
    at.button(key="models_rollback").click().run()
    assert any("ft-one serves collaborative again" in s.value for s in at.success)
    assert lifecycle.deployed(persona_id).name == "ft-one"
    at.button(key="models_archive").click().run()  # ft-two, now a candidate
    assert not at.exception and lifecycle.get("ft-two").status == "archived"
    history = next(d.value for d in at.dataframe if "action" in d.value.columns)
    assert list(history["action"]) == ["archive", "deploy"]
    assert any("**Deployed for collaborative:** ft-one" in m.value for m in at.markdown)


def test_prompt_versions_are_saved_activated_and_become_contestants_from_the_page():
    personas.seed_samples()
    persona_id = personas.get_persona("collaborative").id
    at = open_app("pages/models.py")
    at.selectbox(key="models_persona").set_value("collaborative").run()
    at.text_area(key="models_prompt_text").set_value("You are a colleague who asks one good question first.").run()
    at.button(key="models_prompt_save").click().run()
    assert any("Saved as version 2" in s.value for s in at.success)
    at.selectbox(key="models_version").set_value(2).run()
    at.button(key="models_activate").click().run()
    assert personas.get_persona(persona_id).system_prompt.startswith("You are a colleague who asks")
    at.button(key="models_variant").click().run()
    assert any("can be a contestant" in s.value for s in at.success)
    assert [v.version for v in prompt_versions.versions(persona_id)] == [1, 2]
    evaluate = open_app("pages/evaluate.py")
    assert "local/smollm2-135m-instruct + prompt v2" in evaluate.multiselect(key="eval_contestants").options


def test_the_playground_opens_on_the_deployed_model_and_a_star_sends_the_reply_to_review(endpoints):
    from sqlmodel import select

    from pipeline.db import session_scope
    from pipeline.models import Example, ModelEntry

    personas.seed_samples()
    persona_id = personas.get_persona("collaborative").id
    with session_scope() as session:
        session.add(ModelEntry(name="primary", reference="primary", backend="endpoint", persona_id=persona_id))
    lifecycle.deploy("primary", persona_id)
    at = open_app("pages/playground.py")
    assert at.selectbox(key="model_0").value == "primary"  # the persona's deployed model
    at.chat_input[0].set_value("Our launch slipped. What now?").run()
    star = next(b for b in at.button if b.proto.label == "★")
    star.click().run()
    assert not at.exception
    assert any("sent to Review" in c.value for c in at.chat_message[1].caption)
    with session_scope() as session:
        [example] = session.exec(select(Example)).all()
    assert example.gold_star and example.response == "Primary answer." and example.status == "pending"
