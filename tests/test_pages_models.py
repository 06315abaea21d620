"""The Models page through AppTest, from app.py: the registry table, deploy / roll back / archive with a history,
prompt versions and prompt-only variants."""

from __future__ import annotations

from pipeline import personas
from pipeline.registry import lifecycle
from pipeline.registry import prompts as prompt_versions
from tests.conftest import write_secrets
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


def log_in(monkeypatch, name: str, email: str) -> None:
    """Log someone in at the boundary: the identity st.login would give, with login configured in secrets."""
    from tests.test_access import LOGIN

    write_secrets(LOGIN)
    monkeypatch.setattr("pages.identity", lambda: (name, email))


def test_with_a_login_a_viewer_is_refused_deploying_with_a_clear_message_and_a_deployer_deploys(monkeypatch):
    personas.seed_samples()
    persona_id = personas.get_persona("collaborative").id
    add_model("ft-one", persona_id)

    log_in(monkeypatch, "Vi", "vi@example.com")
    at = open_app("pages/models.py")
    assert any("Logged in as **Vi** · viewer" in m.value for m in at.sidebar.markdown)
    assert not [t for t in at.sidebar.text_input if t.key == "user_name"]  # the name comes from the login
    at.selectbox(key="models_persona").set_value("collaborative").run()
    at.selectbox(key="models_pick").set_value("ft-one").run()
    at.button(key="models_deploy").click().run()
    assert not at.exception
    assert any("You need the deployer role to deploy" in e.value and "vi@example.com" in e.value for e in at.error)
    assert lifecycle.deployed(persona_id) is None and lifecycle.history(persona_id=persona_id) == []

    log_in(monkeypatch, "Dee", "dee@example.com")
    at = open_app("pages/models.py")
    at.selectbox(key="models_persona").set_value("collaborative").run()
    at.selectbox(key="models_pick").set_value("ft-one").run()
    at.button(key="models_deploy").click().run()
    assert any("ft-one now serves collaborative" in s.value for s in at.success)
    assert lifecycle.deployed(persona_id).name == "ft-one"
    assert [e["who"] for e in lifecycle.history(persona_id=persona_id)] == ["Dee"]


def test_with_a_login_configured_nobody_sees_the_studio_before_logging_in(monkeypatch):
    log_in(monkeypatch, "", "")
    monkeypatch.setattr("pages.identity", lambda: None)
    at = open_app()
    assert [b.key for b in at.button] == ["login"] and "log in to continue" in at.markdown[0].value
    assert not at.sidebar.markdown  # no pages, no providers, nothing of the studio


def export_tab(at, model: str):
    at.selectbox(key="models_pick").set_value(model).run()
    return at


def run_queued_export(job_id: int):
    """What the background worker does with the queued export: run it (here, in this process)."""
    from pipeline import jobs
    from pipeline.jobs import foreground

    return foreground.run(foreground.claim(job_id), jobs.kind_function("export"), lambda *a: None)[0]


def test_the_export_tab_queues_an_ollama_export_then_offers_the_checked_file_and_the_commands(models):
    from pipeline.registry import export_job
    from tests.test_registry_figures import ADAPTER, make_adapter, register_adapter

    make_adapter()
    entry = register_adapter()
    at = export_tab(open_app("pages/models.py"), ADAPTER)
    assert at.button(key="models_export_ollama").proto.type == "primary"  # the one a non-engineer can run
    assert [at.button(key=f"models_export_{f}").label for f in ("ollama", "gguf", "adapter", "merged")] == [
        "Export for Ollama", "Export a GGUF file", "Export the adapter", "Export merged weights"]  # fmt: skip
    assert at.selectbox(key="models_export_type").value == "Q8_0"
    assert any("No export of this model yet" in c.value for c in at.caption)
    at.button(key="models_export_ollama").click().run()
    assert any("Export queued as job" in s.value for s in at.success)
    view = export_job.latest(entry.id)
    assert view.status == "queued" and view.format == "ollama" and view.file_type == "Q8_0"
    progress = at.get("progress")
    assert progress and "waiting for the background worker" in progress[0].proto.text

    assert run_queued_export(view.job_id).status == "succeeded"
    at.run()
    assert not at.exception
    assert any(f"{ADAPTER}-Q8_0-ollama.zip" in s.value and "MB, made in" in s.value for s in at.success)
    assert {m.label for m in at.metric} >= {"GGUF file", "Same next token", "Largest logit difference"}
    downloads = at.get("download_button")
    assert downloads and f"Download {ADAPTER}-Q8_0-ollama.zip" in downloads[0].proto.label
    code = "\n".join(c.value for c in at.code)
    assert f"ollama create {ADAPTER} -f Modelfile" in code and f"ollama run {ADAPTER}" in code
    assert f"llama-server -m {ADAPTER}-Q8_0.gguf" in code


def test_the_export_tab_says_why_in_words_for_a_cloud_model_and_for_a_failed_check(models):
    from pipeline.registry import export_job
    from tests.test_registry_figures import ADAPTER, add_entry, make_adapter, register_adapter

    add_entry(name="together-ft", reference="together_ai/acct/Llama-3-8B-persona-1f2e", backend="together")
    at = export_tab(open_app("pages/models.py"), "together-ft")
    at.button(key="models_export_gguf").click().run()
    assert any("together_ai/acct/Llama-3-8B-persona-1f2e" in e.value and "stay at" in e.value for e in at.error)

    make_adapter()
    entry = register_adapter()
    at = export_tab(open_app("pages/models.py"), ADAPTER)
    at.selectbox(key="models_export_type").set_value("Q4_1").run()
    at.button(key="models_export_gguf").click().run()
    try:
        run_queued_export(export_job.latest(entry.id).job_id)  # 4 bits of a random tiny model: fails its check
    except Exception:  # noqa: BLE001 - the job records the failure; the page is what is tested
        pass
    at.run()
    assert not at.exception
    assert any("failed: The Q4_1 file failed its check and was not kept" in e.value for e in at.error)
    assert not at.get("download_button")
