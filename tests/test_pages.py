"""Every page through Streamlit's AppTest, from app.py with switch_page, as a user would click it."""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest

from pipeline import personas, settings
from tests.conftest import REPO

TIMEOUT = 180
YES, NO = (
    ":green[:material/check_circle:]",
    ":gray[:material/do_not_disturb_on:]",
)  # a green tick, a grey dash  # the embedded model's first load and a reply on 2 cores


def open_app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    if page:
        at.switch_page(page).run()
        assert not at.exception
    return at


def texts(elements) -> list[str]:
    return [e.value for e in elements]


# --- Home and sidebar -------------------------------------------------------------------


def test_home_shows_the_studio_counts_and_the_configured_providers():
    at = open_app()
    assert at.title[0].value == "Persona Studio"
    assert at.selectbox(key="home_persona").value == "collaborative"  # the sample persona, step by step
    sidebar = " ".join(texts(at.sidebar.markdown))
    assert f"{YES} Embedded (SmolLM2-135M)" in sidebar
    assert f"{NO} Anthropic · no key" in sidebar and f"{NO} OpenAI · no key" in sidebar
    assert "sk-" not in sidebar


def test_sidebar_shows_a_provider_as_configured_but_never_its_key(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-never-shown")
    at = open_app()
    sidebar = " ".join(texts(at.sidebar.markdown))
    assert f"{YES} Anthropic" in sidebar and "sk-ant-never-shown" not in sidebar


# --- Personas ---------------------------------------------------------------------------


def trait_boxes(at: AppTest, prefix: str) -> list[tuple[str, str, str]]:
    """(name, description, markers) of each trait box on the Personas page, top to bottom."""
    names = [w for w in at.text_input if w.key.startswith(f"{prefix}_t") and w.key.endswith("_name")]
    return [
        (
            w.value,
            at.text_input(key=w.key[: -len("name")] + "description").value,
            at.text_area(key=w.key[: -len("name")] + "markers").value,
        )
        for w in names
    ]


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_personas_page_shows_the_sample_persona_and_its_traits():
    at = open_app("pages/personas.py")
    assert "**Providers**" in texts(at.sidebar.markdown)  # drawn inside app.py's shell
    assert at.selectbox(key="persona_choice").value == "collaborative"
    prefix = f"p{personas.get_persona('collaborative').id}"
    assert at.text_input(key=f"{prefix}_name").value == "collaborative"
    boxes = trait_boxes(at, prefix)
    assert [name for name, _, _ in boxes] == ["collaborative", "curious", "ethical", "candid", "warm"]
    assert all(len(markers.splitlines()) in (2, 3) for _, _, markers in boxes)  # one marker per line
    assert not button(at, "New persona").disabled  # in sight, not inside the dropdown


def test_create_a_persona_with_traits_from_the_page():
    at = open_app("pages/personas.py")
    button(at, "New persona").click().run()
    assert not at.exception
    assert at.subheader[0].value == "New persona"
    at.text_input(key="pnew_name").input("mentor")
    at.text_area(key="pnew_prompt").input("You are a patient mentor.")
    at.text_input(key="pnew_t0_name").input("patient")  # the first box is there to fill in
    at.text_input(key="pnew_t0_description").input("Never rushes.")
    at.text_area(key="pnew_t0_markers").input("Explains twice\nWaits for questions")  # nothing reruns yet
    button(at, "Add a trait").click().run()  # submits the form: what was typed is kept
    assert trait_boxes(at, "pnew")[0] == ("patient", "Never rushes.", "Explains twice\nWaits for questions")  # kept
    at.text_input(key="pnew_t1_name").input("plain")
    at.text_input(key="pnew_t1_description").input("Short words.")
    button(at, "Add a trait").click().run()
    at.text_input(key="pnew_t2_name").input("typo")
    next(b for b in at.button if b.key == "pnew_t2_remove").click().run()  # a box added by mistake
    assert [name for name, _, _ in trait_boxes(at, "pnew")] == ["patient", "plain"]
    button(at, "Save persona").click().run()

    assert not at.exception
    assert "Saved persona “mentor” with 2 traits." in texts(at.success)
    assert at.selectbox(key="persona_choice").value == "mentor"
    saved = personas.get_persona("mentor")
    assert saved.traits == [
        {"name": "patient", "description": "Never rushes.", "markers": ["Explains twice", "Waits for questions"]},
        {"name": "plain", "description": "Short words.", "markers": []},
    ]


def test_editing_a_trait_keeps_every_other_value_in_its_place():
    at = open_app("pages/personas.py")
    prefix = f"p{personas.get_persona('collaborative').id}"
    before = trait_boxes(at, prefix)
    at.text_input(key=f"{prefix}_t0_description").input("Works with people, not around them.")
    next(b for b in at.button if b.key == f"{prefix}_t4_remove").click().run()  # drop "warm"
    after = trait_boxes(at, prefix)
    assert after[0] == (before[0][0], "Works with people, not around them.", before[0][2])
    assert after[1:] == before[1:4]
    button(at, "Save persona").click().run()
    saved = personas.get_persona("collaborative")
    assert [t["name"] for t in saved.traits] == ["collaborative", "curious", "ethical", "candid"]
    assert saved.traits[0]["description"] == "Works with people, not around them."


def test_too_many_markers_are_explained_and_nothing_is_saved():
    at = open_app("pages/personas.py")
    prefix = f"p{personas.get_persona('collaborative').id}"
    at.text_area(key=f"{prefix}_t0_markers").input("one\ntwo\nthree\nfour")
    button(at, "Save persona").click().run()
    assert not at.exception
    assert "keep it to 3" in texts(at.error)[0]
    assert at.text_area(key=f"{prefix}_t0_markers").value == "one\ntwo\nthree\nfour"  # what was typed stays
    assert len(personas.get_persona("collaborative").traits[0]["markers"]) < 4


def test_an_empty_name_is_refused_on_the_page_and_nothing_is_saved():
    at = open_app("pages/personas.py")
    button(at, "New persona").click().run()
    at.text_area(key="pnew_prompt").input("A prompt with no name.")
    button(at, "Save persona").click().run()
    assert not at.exception
    assert texts(at.error) == ["Name: is required"]
    assert [p.name for p in personas.list_personas()] == ["collaborative"]
    button(at, "Cancel").click().run()
    assert at.selectbox(key="persona_choice").value == "collaborative"


def test_duplicate_and_delete_from_the_page():
    at = open_app("pages/personas.py")
    next(b for b in at.button if b.label == "Duplicate this persona").click().run()
    assert at.selectbox(key="persona_choice").value == "collaborative copy"

    delete = next(b for b in at.button if b.label == "Delete persona")
    assert delete.disabled  # needs the confirmation first
    copy = personas.get_persona("collaborative copy")
    at.checkbox(key=f"confirm_delete_{copy.id}").check().run()
    next(b for b in at.button if b.label == "Delete persona").click().run()
    assert not at.exception
    assert "Deleted “collaborative copy”." in texts(at.success)
    assert [p.name for p in personas.list_personas()] == ["collaborative"]


def test_import_yaml_from_the_page_and_a_malformed_file_is_explained():
    at = open_app("pages/personas.py")
    at.file_uploader[0].upload("broken.yaml", b"name: [oops\n", "application/x-yaml").run()
    next(b for b in at.button if b.label == "Import").click().run()
    assert not at.exception
    assert texts(at.error)[0].startswith("broken.yaml is not valid YAML")

    good = b"name: reviewer\nsystem_prompt: You review things.\ntraits:\n  - name: exact\n    description: Precise.\n"
    at.file_uploader[0].set_value(("reviewer.yaml", good, "application/x-yaml")).run()
    next(b for b in at.button if b.label == "Import").click().run()
    assert "Imported “reviewer” with 1 traits." in texts(at.success)
    assert at.selectbox(key="persona_choice").value == "reviewer"


# --- Playground -------------------------------------------------------------------------


@pytest.mark.slow
def test_playground_chats_with_the_embedded_model_and_shows_tokens_latency_and_cost():
    at = open_app("pages/playground.py")
    assert at.selectbox(key="model_0").value == settings.EMBEDDED_MODEL
    at.slider[1].set_value(32)  # max reply tokens: keep the CPU reply short
    at.chat_input[0].set_value("Hello! Who are you?").run()

    assert not at.exception
    user, assistant = at.chat_message
    assert user.markdown[0].value == "Hello! Who are you?"
    assert assistant.markdown[0].value.strip()
    meta = assistant.caption[0].value
    assert meta.startswith(f"**{settings.EMBEDDED_MODEL}**") and "tokens" in meta and "$0.00000" in meta


def chat_once(model: str, fallback: str, message: str = "Hi") -> AppTest:
    at = open_app("pages/playground.py")
    at.selectbox(key="model_0").select(model).run()
    at.selectbox(key="fallback_0").select(fallback).run()
    at.chat_input[0].set_value(message).run()
    assert not at.exception
    return at


def test_playground_shows_the_provider_error_and_which_fallback_answered(endpoints):
    primary, _ = endpoints
    primary.fail_next("401")
    at = chat_once("primary", "backup")

    assert at.chat_message[1].markdown[0].value == "Backup answer."
    [warning] = texts(at.warning)
    assert warning.startswith("primary failed, so backup answered") and "Incorrect API key" in warning


def test_playground_with_every_model_failing_shows_the_error_not_a_traceback(endpoints):
    primary, _ = endpoints
    primary.fail_next("401")
    at = chat_once("primary", "(no fallback)")
    assert "Incorrect API key" in texts(at.error)[0]


def test_playground_side_by_side_sends_the_message_to_both_models(endpoints):
    primary, backup = endpoints
    at = open_app("pages/playground.py")
    at.toggle[0].set_value(True).run()
    at.selectbox(key="model_0").select("primary").run()
    at.selectbox(key="model_1").select("backup").run()
    at.radio[0].set_value("Without it").run()
    at.chat_input[0].set_value("Compare yourselves").run()

    assert not at.exception
    replies = [m.markdown[0].value for m in at.chat_message if m.name == "assistant"]
    assert replies == ["Primary answer.", "Backup answer."]
    # "without" the system prompt means no system message reached either model
    assert all(m["role"] != "system" for m in primary.requests[0]["messages"] + backup.requests[0]["messages"])


def test_playground_with_the_system_prompt_sends_the_personas_prompt(endpoints):
    primary, _ = endpoints
    at = open_app("pages/playground.py")
    at.selectbox(key="model_0").select("primary").run()
    at.chat_input[0].set_value("Hi").run()
    sent = primary.requests[0]["messages"]
    assert sent[0]["role"] == "system"
    assert sent[0]["content"] == personas.get_persona("collaborative").system_prompt


# --- Live monitoring --------------------------------------------------------------------


def _jobs_in_every_state() -> dict[str, int]:
    from datetime import timedelta

    from pipeline.db import session_scope
    from pipeline.jobs import runfolder
    from pipeline.models import Job, TrainingMetric, utcnow

    now = utcnow()
    made = {}
    with session_scope() as session:
        specs = {
            "queued": Job(kind="probe", name="waiting", status="queued"),
            "training": Job(
                kind="probe",
                name="lora run",
                status="running",
                progress_done=30,
                progress_total=120,
                progress_unit="steps",
                started_at=now - timedelta(seconds=60),
                heartbeat_at=now,
            ),
            "failed": Job(
                kind="probe",
                name="broken",
                status="failed",
                error="process exited without finishing",
                started_at=now - timedelta(seconds=9),
                finished_at=now,
            ),
            "succeeded": Job(
                kind="probe",
                name="fine",
                status="succeeded",
                progress_done=5,
                progress_total=5,
                started_at=now - timedelta(seconds=5),
                finished_at=now,
            ),
            "cancelled": Job(kind="probe", name="stopped", status="cancelled", finished_at=now),
        }
        for key, job in specs.items():
            session.add(job)
            session.flush()
            made[key] = job.id
        for step in range(1, 31):
            session.add(
                TrainingMetric(
                    job_id=made["training"], step=step, loss=3.0 - step * 0.05, learning_rate=2e-4, tokens_per_s=900.0
                )
            )
    folder = runfolder.run_dir(made["failed"])
    folder.mkdir(parents=True)
    (folder / runfolder.LOG).write_text("2026-11-25 00:00:00 job 3 (probe) started\nTraceback: boom\n")
    return made


def test_monitoring_page_lists_jobs_with_badges_progress_and_eta():
    made = _jobs_in_every_state()
    at = open_app("pages/monitor.py")
    table = at.dataframe[0].value
    statuses = dict(zip(table["id"], table["status"], strict=True))
    assert statuses[made["queued"]] == "queued"  # a table cell draws no icon: the plain word
    assert statuses[made["training"]] == "running"
    assert statuses[made["failed"]] == "failed"
    assert statuses[made["succeeded"]] == "succeeded"
    assert statuses[made["cancelled"]] == "cancelled"
    training = table[table["id"] == made["training"]].iloc[0]
    assert training["progress"] == 0.25 and training["done"] == "30 / 120 steps"
    assert training["eta"].startswith("3m")  # 30 steps took 60 s (and the seconds since); 90 to go
    # when each started, in local time to the minute with its zone: never a raw "+00:00" timestamp
    assert (
        re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} \S+", training["started"]) and "+00:00" not in training["started"]
    )


def test_monitoring_page_draws_the_training_curves_and_can_cancel():
    made = _jobs_in_every_state()
    at = open_app("pages/monitor.py")
    at.selectbox(key="monitor_job").select(made["training"]).run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 1
    status, elapsed, eta = (m.value for m in at.metric[:3])
    assert status == ":blue[:material/autorenew: running]" and elapsed.startswith("1m") and eta.startswith("3m")

    next(b for b in at.button if b.label == "Cancel this job").click().run()
    from pipeline import jobs

    assert jobs.get(made["training"]).cancel_requested
    assert not [b for b in at.button if b.label == "Cancel this job"]  # asked once; now "cancelling"
    assert at.metric[0].value == ":orange[:material/pending: cancelling]"


def test_a_notifications_link_opens_its_job_on_the_monitoring_page(monkeypatch):
    from urllib.parse import parse_qs, urlparse

    from pipeline import notifications

    made = _jobs_in_every_state()
    monkeypatch.setenv("STUDIO_PUBLIC_URL", "http://studio.example:8501")
    link = urlparse(notifications.link(made["failed"]))
    assert link.path == "/monitor"  # the Live monitoring page's address
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run()
    at.query_params.update({k: v[0] for k, v in parse_qs(link.query).items()})
    at.switch_page("pages/monitor.py").run()
    assert not at.exception
    assert at.selectbox(key="monitor_job").value == made["failed"]
    assert texts(at.error) == ["This job failed: process exited without finishing"]
    at.selectbox(key="monitor_job").select(made["training"]).run()  # the link is read once: another pick sticks
    assert at.selectbox(key="monitor_job").value == made["training"] and not at.error


def test_monitoring_page_explains_a_failure_and_shows_the_log():
    made = _jobs_in_every_state()
    at = open_app("pages/monitor.py")
    at.selectbox(key="monitor_job").select(made["failed"]).run()
    assert texts(at.error) == ["This job failed: process exited without finishing"]
    assert "job 3 (probe) started" in at.code[0].value  # the job's own words first
    assert "Traceback: boom" in at.code[1].value  # the raw output under "Technical details"


def test_monitoring_page_resumes_a_failed_job_in_one_click():
    from pipeline import jobs

    made = _jobs_in_every_state()
    at = open_app("pages/monitor.py")
    at.selectbox(key="monitor_job").select(made["failed"]).run()
    assert not [b for b in at.button if b.label == "Cancel this job"]

    next(b for b in at.button if b.label == "Resume this job").click().run()

    assert not at.exception
    resumed = jobs.get(made["failed"])
    assert (resumed.status, resumed.error) == ("queued", None)
    assert at.metric[0].value == ":orange[:material/schedule: queued]"
    assert "Waiting for the background worker" in " ".join(c.value for c in at.caption)
    assert not [b for b in at.button if b.label == "Resume this job"]


def test_monitoring_page_with_no_jobs_says_so_and_can_start_a_worker_check():
    at = open_app("pages/monitor.py")
    assert "No jobs yet" in at.info[0].value
    next(b for b in at.button if b.label == "Run a worker check").click().run()
    assert not at.exception
    assert at.dataframe[0].value.iloc[0]["status"] == "queued"


def test_home_shows_the_dashboard_header():
    _jobs_in_every_state()
    at = open_app()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {
        "Examples": "0",
        "Gold stars": "0",
        "Running jobs": "1",
        "Deployed models": "0",
        "Spend": "$0.0000",
    }
    assert "No evaluation yet" in at.info[0].value


# --- Generate ---------------------------------------------------------------------------


def test_generate_page_estimates_before_starting_and_queues_a_job():
    at = open_app("pages/generate.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Model calls"] == "30"  # 10 examples x 3 steps
    assert metrics["Cost (about)"] == "$0.00"  # the embedded model is free
    assert metrics["Time (about)"]  # and slow on a CPU: the page says how slow
    at.number_input[0].set_value(4).run()
    assert {m.label: m.value for m in at.metric}["Model calls"] == "12"

    next(b for b in at.button if b.label == "Start generating").click().run()

    from pipeline import jobs

    [job] = jobs.list_jobs()
    assert job.kind == "generation" and job.status == "queued" and job.params["examples"] == 4
    assert "Generation: 4 examples" in at.selectbox(key="generation_run").format_func(job.id)


def test_generate_page_refuses_bad_settings_before_anything_starts():
    at = open_app("pages/generate.py")
    at.multiselect(key="chain_response").set_value(["anthropic/claude-haiku-4-5"]).run()
    assert not at.exception
    assert "No model for the response stage is configured: set ANTHROPIC_API_KEY" in texts(at.error)[0]
    assert not [b for b in at.button if b.label == "Start generating"]


def test_generate_page_shows_a_run_with_its_latest_example_and_failures(endpoints):
    import asyncio

    from pipeline import jobs
    from pipeline.generation import runner
    from pipeline.generation.config import GenerationConfig
    from tests.fakes.stage_replies import stage_aware

    primary, _ = endpoints
    primary.responder = stage_aware
    personas.seed_samples()
    persona = personas.get_persona("collaborative")
    config = GenerationConfig(
        persona_id=persona.id,
        examples=3,
        concurrency=1,
        scenario_models=["primary"],
        document_models=["primary"],
        response_models=["primary"],
    )
    job = jobs.submit("generation", config.model_dump(mode="json"), name="Generation: 3 examples")
    primary.fail_next("ok", "ok", "ok", "401", "401")  # the first example is made, the next two refused
    asyncio.run(runner.Generation(job.id, config, runner.prepare(config)).run())
    from pipeline.db import session_scope
    from pipeline.models import Job

    with session_scope() as session:  # what the monitor records when the job process ends
        session.get(Job, job.id).status = "succeeded"

    at = open_app("pages/generate.py")
    assert not at.exception
    assert at.get("progress")[0].proto.text.startswith("3 of 3 examples")
    failures = at.dataframe[0].value
    assert list(failures.columns) == ["example", "type", "trait", "reason"]
    assert failures["reason"].str.startswith("scenario stage: No model in the chain could answer").all()
    assert "Incorrect API key" in failures["reason"][0]
    assert any("**Latest:** Northern region shortfall" in m.value for m in at.markdown)
    next(b for b in at.button if b.label == "Resume").click().run()
    assert jobs.get(job.id).status == "queued"  # the monitor starts it again; failed examples are retried


def test_generate_page_imports_transcripts_and_names_a_bad_file():
    at = open_app("pages/generate.py")
    at.file_uploader[0].set_value(
        [
            ("chat.txt", b"Sam: Can you look at my memo?\nAda: Gladly. What is it for?\n", "text/plain"),
            ("photo.txt", b"\x89PNG\x00\x00", "text/plain"),
        ]
    ).run()
    next(b for b in at.button if b.label == "Import").click().run()
    assert not at.exception
    report = at.dataframe[0].value
    assert list(report["added"]) == [1, 0]
    assert report["problem"][1] == "photo.txt is not a text file."
    assert [b.label for b in at.get("download_button")] == ["Download a few-shot set from the imported conversations"]


def test_generate_page_imports_a_pasted_conversation():
    at = open_app("pages/generate.py")
    next(t for t in at.text_area if t.label == "…or paste a conversation").input(
        "Sam: Can you look at my memo?\nAda: Gladly. What is it for?"
    ).run()
    next(b for b in at.button if b.label == "Import").click().run()
    assert not at.exception
    report = at.dataframe[0].value
    assert report["file"][0] == "pasted text" and report["added"][0] == 1


# --- Review and Datasets ------------------------------------------------------------------------


def _seeded(count: int = 30, status: str = "pending") -> list[int]:
    from tests.seed import add_examples

    personas.seed_samples()
    return add_examples(personas.get_persona("collaborative").id, count, status=status)


def _header(at: AppTest) -> str:
    return next(m.value for m in at.markdown if "examples** match" in m.value)


def test_review_page_lists_examples_and_starring_one_changes_the_count():
    ids = _seeded()
    at = open_app("pages/review.py")
    assert _header(at) == "**30 examples** match · 0 gold-starred"
    detail = next(m.value for m in at.markdown if m.value.startswith("**Example "))
    assert detail.startswith(f"**Example {ids[-1]}** (1 of 30)")
    at.button(key="review_star_one").click().run()
    assert not at.exception
    assert _header(at) == "**30 examples** match · 1 gold-starred"
    at.selectbox(key="review_star").set_value("Starred").run()
    assert _header(at).startswith("**1 examples** match")


def test_review_page_accepts_rates_edits_and_moves_to_the_next_example():
    from pipeline.review import actions

    ids = _seeded(5)
    at = open_app("pages/review.py")
    at.text_input(key="user_name").set_value("Mo").run()  # the sidebar's name: recorded as the reviewer
    at.button(key="review_accept").click().run()
    at.radio(key=f"review_rate_{ids[-1]}").set_value(4).run()
    assert not at.exception
    assert (actions.get(ids[-1]).status, actions.get(ids[-1]).rating) == ("accepted", 4)
    assert actions.get(ids[-1]).reviewed_by == "Mo"
    assert any("rejected by Mo on" in m.value for m in at.markdown)  # where it came from, on the page
    at.text_area(key=f"review_edit_{ids[-1]}").set_value("A kinder, clearer reply.").run()
    at.button(key="review_save_edit").click().run()
    assert actions.get(ids[-1]).original_response is not None
    assert any("(edited)" in m.value for m in at.markdown)
    at.button(key="review_next").click().run()
    assert any(m.value.startswith(f"**Example {ids[-2]}** (2 of 5)") for m in at.markdown)


def test_review_page_statistics_draw_the_charts():
    _seeded(12)
    at = open_app("pages/review.py")
    at.segmented_control(key="review_view").set_value("Statistics").run()
    assert not at.exception
    assert [m.value for m in at.metric][:1] == ["12"]
    assert len(at.get("plotly_chart")) == 3  # statuses, lengths, coverage heat map


def test_review_page_with_nothing_to_review_says_so():
    at = open_app("pages/review.py")
    assert any("No examples match" in i.value for i in at.info)


def test_datasets_page_builds_a_dataset_and_shows_its_report():
    _seeded(20, status="accepted")
    at = open_app("pages/datasets.py")
    at.button(key="build_check").click().run()
    assert not at.exception
    assert any("**18 training and 2 validation examples**" in m.value for m in at.markdown)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Valid examples"] == "20" and metrics["Errors"] == "0"
    assert len(at.get("plotly_chart")) == 1  # tokens per example
    at.text_input(key="build_name").set_value("collab-first").run()
    at.button(key="build_save").click().run()
    assert [s.value for s in at.success] == ["Saved collab-first: 18 train, 2 validation."]
    from pipeline.datasets import build

    assert [d.name for d in build.list_datasets()] == ["collab-first"]


def test_datasets_page_imports_a_file_and_lists_each_bad_line():
    personas.seed_samples()
    at = open_app("pages/datasets.py")
    data = (REPO / "tests" / "data" / "datasets" / "bad_mixed.jsonl").read_bytes()
    at.file_uploader(key="import_file").set_value([("bad_mixed.jsonl", data, "application/jsonl")]).run()
    at.button(key="import_go").click().run()
    assert not at.exception
    assert (  # "Answer 1." shows none of the persona's markers: the quality gate says so
        "bad_mixed.jsonl: 2 added, 0 already there, 2 of them flagged by the quality gate (left out of datasets by "
        "default), 10 invalid line(s) skipped." in [w.value for w in at.warning]
    )
    problems = next(d.value for d in at.dataframe if "where" in d.value.columns)
    assert list(problems["where"][:3]) == ["line 3", "line 4", "line 5"]
    assert problems["kind"][2] == "content_null"


def test_datasets_page_deletes_a_dataset_only_after_its_name_is_typed():
    _seeded(12, status="accepted")
    from pipeline.datasets import build
    from pipeline.review.filters import ExampleFilter

    build.save("old-one", build.preview(ExampleFilter(persona_id=1, statuses=["accepted"])))
    at = open_app("pages/datasets.py")
    assert [s.value for s in at.selectbox if s.key == "saved_pick"] == ["old-one"]
    at.button(key="saved_delete").click().run()
    assert [e.value for e in at.error] == ["Type the dataset's name, 'old-one', to confirm."]
    at.text_input(key="saved_confirm").set_value("old-one").run()
    at.button(key="saved_delete").click().run()
    assert not at.exception and build.list_datasets() == []
    assert any("No datasets for this persona yet" in i.value for i in at.info)


# --- Train -----------------------------------------------------------------------------------------


def test_train_page_without_a_dataset_says_to_build_one():
    at = open_app("pages/train.py")
    assert any("Build a dataset first" in i.value for i in at.info)


def test_train_page_estimates_refuses_bad_settings_and_queues_a_job():
    from pipeline import jobs
    from pipeline.datasets import build
    from pipeline.review.filters import ExampleFilter

    _seeded(12, status="accepted")
    build.save("for-training", build.preview(ExampleFilter(persona_id=1, statuses=["accepted"])))
    at = open_app("pages/train.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Examples"] == "11" and metrics["Cost (estimate)"] == "$0.00"
    assert metrics["Time (estimate)"] != "set by the provider"
    assert any("50+ are recommended" in w.value for w in at.warning)
    at.radio(key="train_method").set_value("dpo").run()
    assert any("no preference pairs" in e.value for e in at.error)
    assert at.button(key="train_start").disabled
    at.radio(key="train_method").set_value("sft").run()
    at.radio(key="train_backend").set_value("openai").run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Cost (estimate)"].startswith("$") and metrics["Time (estimate)"] == "set by the provider"
    assert any("Recommended here: **Prefer the persona's replies**" in c.value for c in at.caption)
    at.radio(key="train_method").set_value("bake").run()
    assert any("runs on this machine only" in e.value for e in at.error) and at.button(key="train_start").disabled
    at.radio(key="train_method").set_value("sft").run()
    at.radio(key="train_backend").set_value("local").run()
    assert any("Recommended here: **Bake the prompt in**" in c.value for c in at.caption)
    at.button(key="train_start").click().run()
    assert not at.exception
    [job] = jobs.list_jobs()
    assert job.kind == "train_local" and job.status == "queued"
    assert at.success[0].value == f"Queued training job {job.id}. Follow it on Live monitoring."
    table = next(d.value for d in at.dataframe if "job" in d.value.columns)
    assert list(table["status"]) == ["queued"]
    assert list(table["train loss"]) == ["—"]  # nothing logged yet: a dash, not "None"


def test_train_page_bakes_the_prompt_in_with_a_longer_estimate_for_the_teacher_pass():
    from pipeline import jobs
    from pipeline.datasets import build
    from pipeline.review.filters import ExampleFilter

    _seeded(12, status="accepted")
    build.save("for-baking", build.preview(ExampleFilter(persona_id=1, statuses=["accepted"])))
    at = open_app("pages/train.py")
    imitate = {m.label: m.value for m in at.metric}["Time (estimate)"]
    at.radio(key="train_method").set_value("bake").run()
    assert not at.exception and not at.error
    baked = {m.label: m.value for m in at.metric}["Time (estimate)"]
    assert baked != imitate  # the teacher writes a reply to each of the 12 prompts first
    at.radio(key="train_bake_replies").set_value("student").run()
    on_policy = {m.label: m.value for m in at.metric}["Time (estimate)"]
    assert on_policy != baked  # the student writes a reply to each prompt in every epoch
    at.checkbox(key="train_then_dpo").check().run()  # a DPO stage needs pairs this dataset lacks
    assert any("no preference pairs for the DPO stage" in e.value for e in at.error)
    assert at.button(key="train_start").disabled
    at.checkbox(key="train_then_dpo").uncheck().run()
    at.text_area(key="train_bake_prompts").set_value("Plan my week.\n\nReview my memo.").run()
    at.checkbox(key="train_bake_failed").check().run()
    at.button(key="train_start").click().run()
    [job] = jobs.list_jobs()
    assert job.kind == "train_local" and job.params["config"]["method"] == "bake"
    assert job.params["config"]["bake_prompts"] == ["Plan my week.", "Review my memo."]
    assert job.params["config"]["bake_failed_documents"] is True
    assert job.params["config"]["bake_replies"] == "student" and job.params["config"]["then_dpo"] is False
