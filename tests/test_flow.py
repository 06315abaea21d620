"""The guided flow on Home, and the persona in hand remembered across pages and in the URL."""

from __future__ import annotations

from pipeline import flow, personas
from pipeline.registry import lifecycle
from tests.seed import add_examples
from tests.test_pages import open_app


def sample():
    personas.seed_samples()
    return personas.get_persona("collaborative")


def rows(at) -> list[str]:
    return [m.value for m in at.markdown]


def test_a_new_persona_is_told_to_generate_next_and_the_button_goes_there():
    at = open_app()
    shown = " ".join(rows(at))
    assert "1. Persona" in shown and "5 traits" in shown
    assert "2. Generate" in shown and "0 examples" in shown
    button = next(b for b in at.button if b.label.startswith("Next:"))
    assert button.label == "Next: Generate examples"

    button.click().run()

    assert not at.exception
    assert at.title[0].value == "Generate"


def test_each_step_says_where_it_stands_in_words():
    persona = sample()
    add_examples(persona.id, 12, status="accepted")
    add_examples(persona.id, 3, status="failed", start=100)

    steps = {s.key: s for s in flow.steps(persona.id)}

    assert steps["generate"].done and steps["generate"].detail == "12 examples, 3 failed"
    assert steps["review"].done  # 12 accepted: enough to build a first dataset
    assert steps["review"].detail == "12 accepted, 0 gold stars: 38 more recommended"
    assert flow.next_step(list(steps.values())).key == "dataset"


def test_a_deployed_model_completes_the_flow_and_home_offers_the_playground(models):
    persona = sample()
    add_examples(persona.id, 10, status="accepted")
    entry = lifecycle.ensure_embedded_entry()
    lifecycle.deploy(entry.id, persona.id, "ada", "first")

    steps = {s.key: s for s in flow.steps(persona.id)}
    assert steps["deploy"].done and "is deployed" in steps["deploy"].detail


def test_the_persona_chosen_on_one_page_is_the_one_on_the_next():
    personas.seed_samples()
    second = personas.create_persona(
        {
            "name": "mentor",
            "description": "A patient mentor.",
            "system_prompt": "You are a patient mentor.",
            "traits": [{"name": "patient", "description": "Takes time.", "markers": ["asks first"]}],
        }
    )
    at = open_app()
    at.selectbox(key="home_persona").select(second.name).run()
    assert at.query_params["persona"] == ["mentor"] or at.query_params["persona"] == "mentor"

    at.switch_page("pages/datasets.py").run()

    assert not at.exception
    assert at.selectbox(key="datasets_persona").value == "mentor"


def test_a_persona_saved_on_the_personas_page_is_the_one_home_and_generate_open_on():
    at = open_app("pages/personas.py")
    next(b for b in at.button if b.label == "New persona").click().run()
    at.text_input(key="pnew_name").input("mentor")
    at.text_input(key="pnew_description").input("A patient mentor.")
    at.text_area(key="pnew_prompt").input("You are a patient mentor.")
    at.text_input(key="pnew_t0_name").input("patient")
    at.text_input(key="pnew_t0_description").input("Never rushes.")
    next(b for b in at.button if b.label == "Save persona").click().run()
    assert not at.exception and at.query_params["persona"] in ("mentor", ["mentor"])

    at.switch_page("pages/home.py").run()
    assert at.selectbox(key="home_persona").value == "mentor"
    next(b for b in at.button if b.label.startswith("Next:")).click().run()  # Next: Generate examples
    assert not at.exception and at.selectbox(key="gen_persona").value == "mentor"
    at.switch_page("pages/personas.py").run()  # and back: the Personas page opens on it too
    assert at.selectbox(key="persona_choice").value == "mentor"


def test_a_cloud_backend_without_its_key_is_marked_and_cannot_start(studio):
    from pipeline.datasets import build
    from pipeline.review.filters import ExampleFilter

    persona = sample()
    add_examples(persona.id, 12, status="accepted")
    build.save("ready", build.preview(ExampleFilter(persona_id=persona.id, statuses=["accepted"]), 0.2))
    at = open_app("pages/train.py")
    radio = at.radio(key="train_backend")
    assert radio.options == ["This machine", "Together (needs a key)",
                             "OpenAI (closing: shuts down 2027-01-14) (needs a key)"]  # fmt: skip

    radio.set_value("together").run()

    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "This needs TOGETHER_API_KEY" in errors and "secrets.toml" in errors
    assert next(b for b in at.button if b.label == "Start training").disabled


def test_a_pages_settings_are_kept_after_a_visit_to_another_page():
    at = open_app("pages/review.py")
    at.selectbox(key="review_star").select("Starred").run()
    at.multiselect(key="review_status").select("rejected").run()

    at.switch_page("pages/monitor.py").run()
    at.switch_page("pages/review.py").run()

    assert not at.exception and not at.warning  # no "set via the Session State API" warnings either
    assert at.selectbox(key="review_star").value == "Starred"
    assert "rejected" in at.multiselect(key="review_status").value


def test_generates_count_is_kept_after_a_visit_to_another_page():
    at = open_app("pages/generate.py")
    at.number_input(key="gen_examples").set_value(4).run()
    at.switch_page("pages/review.py").run()
    at.switch_page("pages/generate.py").run()
    assert not at.exception
    assert at.number_input(key="gen_examples").value == 4


def test_evaluate_says_how_to_get_an_llm_judge_when_no_key_is_set():
    at = open_app("pages/evaluate.py")
    assert not at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "An LLM judge needs a provider key" in captions and "secrets.toml" in captions
