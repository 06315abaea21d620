"""The Playground through AppTest: it opens on the persona's deployed model without the system prompt,
echoes the message, and shows the streamed reply with its figures."""

from __future__ import annotations

from pipeline import personas, settings
from pipeline.models import ModelEntry
from pipeline.registry import lifecycle
from tests.test_pages import open_app

WITH, WITHOUT = "With the persona's system prompt", "Without it"


def deploy_primary(persona_id: int) -> None:
    """The `primary` endpoint (a fake server on 127.0.0.1) registered and deployed as the persona's model."""
    from pipeline.db import session_scope

    with session_scope() as session:
        session.add(ModelEntry(name="primary", reference="primary", backend="endpoint", persona_id=persona_id))
    lifecycle.deploy("primary", persona_id)


def test_opens_on_the_deployed_model_without_the_system_prompt_and_streams_the_reply(endpoints):
    primary, _ = endpoints
    primary.reply = "Let us look at what slipped, together, and pick one next step."
    personas.seed_samples()
    deploy_primary(personas.get_persona("collaborative").id)

    at = open_app("pages/playground.py")
    assert at.selectbox(key="model_0").value == "primary"
    assert at.radio(key="prompt_mode").value == WITHOUT
    at.chat_input[0].set_value("Our launch slipped. What now?").run()

    assert not at.exception
    user, assistant = at.chat_message
    assert user.markdown[0].value == "Our launch slipped. What now?"  # the message is echoed
    assert assistant.markdown[0].value == primary.reply
    meta = assistant.caption[0].value
    assert meta.startswith("**primary**") and "tokens" in meta and "first words after" in meta
    [request] = primary.requests
    assert request["stream"] is True  # the reply was streamed
    assert [m["role"] for m in request["messages"]] == ["user"]  # no system prompt for the fine-tuned model


def test_switching_persona_reselects_its_deployed_model(endpoints):
    personas.seed_samples()
    collaborative = personas.get_persona("collaborative")
    personas.duplicate_persona(collaborative.id, "plain")
    deploy_primary(collaborative.id)

    at = open_app("pages/playground.py")
    assert at.selectbox(key="model_0").value == "primary"
    at.selectbox(key="playground_persona").set_value("plain").run()
    assert at.selectbox(key="model_0").value == settings.EMBEDDED_MODEL  # no deployed model: the base one
    assert at.radio(key="prompt_mode").value == WITH  # which needs the prompt
    at.selectbox(key="playground_persona").set_value("collaborative").run()
    assert not at.exception
    assert at.selectbox(key="model_0").value == "primary"
    assert at.radio(key="prompt_mode").value == WITHOUT


def test_a_conversation_continues_with_the_earlier_turns(endpoints):
    primary, _ = endpoints
    at = open_app("pages/playground.py")
    at.selectbox(key="model_0").select("primary").run()
    at.chat_input[0].set_value("First").run()
    at.chat_input[0].set_value("Second").run()
    assert not at.exception
    assert [m.markdown[0].value for m in at.chat_message] == ["First", "Primary answer.", "Second", "Primary answer."]
    sent = [m["content"] for m in primary.requests[1]["messages"] if m["role"] != "system"]
    assert sent == ["First", "Primary answer.", "Second"]
