"""The registry: deploy, roll back, archive and their history; prompt versions and prompt-only variants as
contestants; the playground's deployed default and its ★ feedback into review."""

from __future__ import annotations

import json
import threading

import pytest
from sqlmodel import select

from pipeline import personas, playground, settings
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.evaluation import contestants as cs
from pipeline.evaluation import service
from pipeline.models import Example, Job, ModelEntry
from pipeline.registry import lifecycle
from pipeline.registry import prompts as prompt_versions
from tests.conftest import write_secrets
from tests.eval_seed import seed
from tests.fakes.openai_server import FakeOpenAI
from tests.test_evaluation import run_here


def add_model(name: str, persona_id: int | None = None, job_status: str | None = "succeeded") -> ModelEntry:
    with session_scope() as session:
        job = None
        if job_status:
            job = Job(kind="train_local", status=job_status)
            session.add(job)
            session.flush()
        entry = ModelEntry(name=name, reference=f"local/{name}", backend="local", persona_id=persona_id,
                           job_id=job.id if job else None, base_model="smollm2-135m-instruct")  # fmt: skip
        session.add(entry)
        session.flush()
        session.refresh(entry)
        return entry


@pytest.fixture
def persona_id() -> int:
    personas.seed_samples()
    return personas.get_persona("collaborative").id


def status(name: str) -> str:
    return lifecycle.get(name).status


def test_deploy_keeps_one_active_model_per_persona_and_rollback_returns_to_the_one_before(persona_id):
    first, second = add_model("ft-one", persona_id), add_model("ft-two", persona_id)
    lifecycle.deploy(first.id, actor="ada", notes="first try")
    assert lifecycle.deployed(persona_id).name == "ft-one"
    lifecycle.deploy(second.id, actor="bo", notes="better rating")
    assert status("ft-two") == "deployed" and status("ft-one") == "candidate"
    back = lifecycle.rollback(persona_id, actor="ada", notes="complaints")
    assert back.name == "ft-one" and lifecycle.deployed(persona_id).name == "ft-one" and status("ft-two") == "candidate"
    history = lifecycle.history(persona_id=persona_id)
    assert [(h["action"], h["model"], h["who"]) for h in history] == [
        ("rollback", "ft-one", "ada"), ("deploy", "ft-two", "bo"), ("deploy", "ft-one", "ada")]  # fmt: skip
    assert history[1]["notes"] == "better rating" and history[1]["config"]["reference"] == "local/ft-two"


def test_archive_needs_the_model_out_of_service_and_keeps_it_with_its_history(persona_id):
    entry = add_model("ft-old", persona_id)
    lifecycle.deploy(entry.id)
    with pytest.raises(UserFacingError, match="is deployed"):
        lifecycle.archive(entry.id)
    lifecycle.deploy(add_model("ft-new", persona_id).id)
    lifecycle.archive(entry.id, actor="ada", notes="superseded")
    assert status("ft-old") == "archived"
    with pytest.raises(UserFacingError, match="archived"):
        lifecycle.deploy(entry.id)
    with pytest.raises(UserFacingError, match="no earlier deployment"):
        lifecycle.rollback(persona_id)  # the only earlier one is archived
    assert [h["action"] for h in lifecycle.history(model_id=entry.id)] == ["archive", "deploy"]
    lifecycle.restore(entry.id)
    assert status("ft-old") == "candidate"


def test_bad_deployments_are_refused_in_plain_words(persona_id):
    with pytest.raises(UserFacingError, match="no earlier deployment"):
        lifecycle.rollback(persona_id)
    broken = add_model("ft-broken", persona_id, job_status="failed")
    with pytest.raises(UserFacingError, match="which failed"):
        lifecycle.deploy(broken.id)
    orphan = add_model("ft-orphan", None, job_status=None)
    with pytest.raises(UserFacingError, match="Say which persona"):
        lifecycle.deploy(orphan.id)
    with pytest.raises(UserFacingError, match="embedded base"):
        lifecycle.archive(lifecycle.ensure_embedded_entry().id)
    with pytest.raises(UserFacingError, match="no model"):
        lifecycle.get("nope")


def test_two_people_deploying_at_once_leave_one_deployed_and_both_in_the_history(persona_id):
    a, b = add_model("ft-a", persona_id), add_model("ft-b", persona_id)
    threads = [threading.Thread(target=lifecycle.deploy, args=(m.id,), kwargs={"actor": who})
               for m, who in ((a, "ada"), (b, "bo"))]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    deployed = [name for name in ("ft-a", "ft-b") if status(name) == "deployed"]
    history = lifecycle.history(persona_id=persona_id)
    assert len(deployed) == 1 and lifecycle.deployed(persona_id).name == deployed[0]
    assert {h["who"] for h in history} == {"ada", "bo"} and history[0]["model"] == deployed[0]  # last write wins


# --- prompt versions and prompt-only variants ----------------------------------------------------------


def test_prompt_versions_keep_the_original_and_activation_changes_the_personas_prompt(persona_id):
    original = personas.get_persona(persona_id).system_prompt
    [first] = prompt_versions.versions(persona_id)
    assert first.version == 1 and first.system_prompt == original and first.active
    second = prompt_versions.add_version(persona_id, "You are a warm colleague who always asks one question first.")
    assert second.version == 2
    prompt_versions.activate(persona_id, 2)
    assert personas.get_persona(persona_id).system_prompt.startswith("You are a warm colleague")
    assert [v.active for v in prompt_versions.versions(persona_id)] == [False, True]
    assert "+You are a warm colleague" in prompt_versions.diff(persona_id, 1, 2)
    prompt_versions.activate(persona_id, 1)
    assert personas.get_persona(persona_id).system_prompt == original
    with pytest.raises(UserFacingError, match="at least 20"):
        prompt_versions.add_version(persona_id, "Be nice.")


def test_an_llm_proposes_a_version_from_the_gold_examples():
    persona_id, _ = seed(gold=3)
    proposal = "You are a collaborative colleague: ask what the author knows first, then build on their idea."
    with FakeOpenAI(reply=proposal) as writer:
        write_secrets(f'[endpoints.writer]\napi_base = "{writer.api_base}"\nmodel = "writer-model"\n')
        made = prompt_versions.propose(persona_id, "writer", by="ada")
    assert made.version == 2 and made.system_prompt == proposal and made.source == "writer"
    asked = writer.requests[0]["messages"][1]["content"]
    assert "Warehouse budget" in asked and "Current system prompt" in asked  # a gold example was shown
    assert len(made.based_on) >= 3


def test_a_prompt_only_variant_is_a_contestant_that_uses_its_version():
    persona_id, dataset = seed()
    prompt_versions.add_version(persona_id, "You always answer in exactly one sentence, warmly.")
    with FakeOpenAI(reply="A reply.") as model:
        write_secrets(f'[endpoints.tiny]\napi_base = "{model.api_base}"\nmodel = "tiny-model"\n')
        variant = prompt_versions.create_variant(persona_id, "tiny", 2, few_shot=True)
        name = cs.Contestant("tiny", prompt_versions.variant_mode(variant)).name
        assert name == "tiny + prompt v2 + few-shot" and cs.Contestant.parse(name).version == 2
        assert name in service.prompt_variants(persona_id)
        plan = service.plan(persona=persona_id, contestants=["tiny", name], dataset=dataset, held_out_limit=1,
                            adversarial=False, keep_going=False, max_battles=1)  # fmt: skip
        run_here(service.start(plan))
    systems = [r["messages"][0]["content"] for r in model.requests if r["messages"][0]["role"] == "system"]
    assert systems == ["You always answer in exactly one sentence, warmly."]
    with_examples = next(r for r in model.requests if r["messages"][0]["role"] == "system")
    assert len(with_examples["messages"]) == 1 + 2 * cs.FEW_SHOT + 1  # system, two gold exchanges, the prompt
    with session_scope() as session:
        entry = session.get(ModelEntry, variant.id)
    assert "v2-fewshot" in entry.metrics["quality"]  # its figures, under its own mode


# --- the playground ---------------------------------------------------------------------------------------


def test_the_playground_defaults_to_the_deployed_model_and_a_star_sends_a_reply_to_review(persona_id):
    assert playground.default_model(persona_id) == settings.EMBEDDED_MODEL
    lifecycle.deploy(add_model("ft-live", persona_id).id)
    assert playground.default_model(persona_id) == "local/ft-live"
    history = [{"role": "user", "content": "Our launch slipped a week. What now?"}]
    example_id = playground.star_reply(persona_id, "local/ft-live", history, "Let's look at it together.", "ada")
    with session_scope() as session:
        example = session.get(Example, example_id)
        pending = session.exec(select(Example).where(Example.status == "pending")).all()
    assert (
        example.gold_star and example.source == "playground" and example.stage_models == {"response": "local/ft-live"}
    )
    assert example.document.startswith("Our launch") and [e.id for e in pending] == [example_id]
    with pytest.raises(UserFacingError, match="Pick a persona"):
        playground.star_reply(None, "m", history, "x")


def test_the_gold_star_rate_counts_starred_playground_replies_of_that_model(persona_id):
    from pipeline.registry import figures

    with FakeOpenAI(reply="Let's look at it together.") as model:
        write_secrets(f'[endpoints.tiny]\napi_base = "{model.api_base}"\nmodel = "tiny-model"\n')
        with session_scope() as session:
            session.add(ModelEntry(name="tiny", reference="tiny", backend="openai-compatible", persona_id=persona_id))
        entry = lifecycle.get("tiny")
        assert figures.gold_star_rate(entry) is None  # no replies yet
        for question in ("First question?", "Second question?"):
            answer = playground.reply(["tiny"], question, persona_id=persona_id, with_system_prompt=False)
        playground.star_reply(persona_id, answer.model_used, [{"role": "user", "content": "Second question?"}],
                              answer.text)  # fmt: skip
    assert figures.gold_star_rate(entry) == 0.5
    assert figures.summary(entry)["gold-star rate"] == 0.5


def test_the_models_command_deploys_rolls_back_lists_and_refuses_clearly(persona_id, capsys):
    from pipeline.__main__ import main

    add_model("ft-one", persona_id)
    add_model("ft-two", persona_id)
    assert main(["models", "deploy", "ft-one", "--notes", "first"]) == 0
    assert main(["models", "deploy", "ft-two"]) == 0
    assert main(["models", "rollback", "collaborative"]) == 0
    assert "ft-one is deployed again" in capsys.readouterr().out
    assert main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["status"]) for r in listed] == [
        ("smollm2-135m-instruct", "candidate"), ("ft-one", "deployed"), ("ft-two", "candidate")]  # fmt: skip
    assert main(["models", "archive", "ft-one"]) == 1
    assert "is deployed" in capsys.readouterr().err
    assert main(["models", "export", "smollm2-135m-instruct", "--format", "adapter"]) == 1  # a full model has none
    assert "full model, not an adapter" in capsys.readouterr().err


def test_the_embedded_base_is_registered_once_even_when_asked_from_many_threads_at_once():
    errors = []

    def ask():
        try:
            lifecycle.ensure_embedded_entry()
        except Exception as exc:  # noqa: BLE001 - any error is the failure this test looks for
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with session_scope() as session:
        rows = session.exec(select(ModelEntry).where(ModelEntry.backend == "embedded")).all()
    assert not errors and len(rows) == 1


def test_a_note_or_prompt_version_with_a_nul_character_is_refused_on_every_database_and_nothing_changes(persona_id):
    add_model("ft-one", persona_id)
    with pytest.raises(UserFacingError, match="The note contains a NUL character"):
        lifecycle.deploy("ft-one", persona_id, actor="ada", notes="ship \x00 it")
    assert lifecycle.deployed(persona_id) is None and lifecycle.history(persona_id=persona_id) == []
    assert lifecycle.get("ft-one").status == "candidate"
    before = [v.version for v in prompt_versions.versions(persona_id)]
    with pytest.raises(UserFacingError, match=r"The system prompt contains a NUL character \(line 2\)"):
        prompt_versions.add_version(persona_id, "You are a colleague.\nYou ask one good question\x00 first.")
    with pytest.raises(UserFacingError, match="The system prompt is 20,001 characters; the limit is 20,000"):
        prompt_versions.add_version(persona_id, "x" * 20_001)
    assert [v.version for v in prompt_versions.versions(persona_id)] == before
