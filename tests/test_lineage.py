"""Lineage: from a persona to its deployments and back, on seeded data; what deleting a persona's data touches;
the views on the Models, Datasets, Review and Personas pages (AppTest, from app.py)."""

from __future__ import annotations

from pipeline import lineage, personas
from pipeline.datasets import build, purge
from pipeline.db import session_scope
from pipeline.models import Job, ModelEntry
from pipeline.registry import lifecycle
from pipeline.review import actions
from pipeline.review.filters import ExampleFilter
from tests.seed import add_examples
from tests.test_pages import open_app


def seed_chain() -> dict:
    """persona → generation run → 6 reviewed examples → dataset → training job → model → evaluation → deploy;
    plus one example of the same persona in no dataset."""
    personas.seed_samples()
    persona = personas.get_persona("collaborative")
    with session_scope() as session:
        run = Job(
            kind="generation",
            status="succeeded",
            name="Generation: 6 examples",
            started_by="ada",
            params={
                "persona_id": persona.id,
                "scenario_models": ["local/smollm2-135m-instruct"],
                "document_models": ["ollama_chat/qwen2.5:7b", "local/smollm2-135m-instruct"],
                "response_models": ["anthropic/claude-haiku-4-5"],
                "persona_version": lineage.persona_version_now(persona.id),
            },
        )
        session.add(run)
        session.flush()
        run_id = run.id
    used = add_examples(persona.id, 6, status="accepted", job_id=run_id)
    unused = add_examples(persona.id, 1, status="pending", start=50)[0]
    actions.set_gold_star(used[0], True, "lin")
    actions.edit_response(used[1], "A better reply that asks one question first and then proposes a plan.", "sam")
    dataset = build.save("collab-v1", build.preview(ExampleFilter(persona_id=persona.id, statuses=["accepted"]), 0.2))
    with session_scope() as session:
        training = Job(
            kind="train_local",
            status="succeeded",
            name="SFT collab-v1",
            params={"config": {"dataset": "collab-v1", "backend": "local", "method": "sft", "epochs": 2}},
        )
        session.add(training)
        session.flush()
        model = ModelEntry(
            name="collab-ft", reference="local/collab-ft", backend="local", persona_id=persona.id,
            job_id=training.id, dataset_id=dataset.id, base_model="smollm2-135m-instruct",
        )  # fmt: skip
        session.add(model)
        evaluation = Job(
            kind="evaluation",
            status="succeeded",
            name="collab-ft vs base",
            params={
                "persona_id": persona.id,
                "contestants": ["local/collab-ft", "local/smollm2-135m-instruct + prompt"],
                "judge": "offline",
            },
        )
        session.add(evaluation)
        session.flush()
        ids = {"training": training.id, "evaluation": evaluation.id}
    lifecycle.deploy("collab-ft", persona.id, actor="ada", notes="beats the prompt")
    return {"persona": persona, "run": run_id, "used": used, "unused": unused, "dataset": dataset, **ids}


def text_of(walk: dict) -> str:
    return "\n".join(text for _, text in lineage.tree_lines(walk))


def test_lineage_walks_from_a_model_back_to_its_persona_and_forward_to_its_deployments():
    seeded = seed_chain()
    walk = lineage.for_model("collab-ft")
    assert walk["persona"]["name"] == "collaborative"
    [run] = walk["generation_runs"]
    assert run["job"] == seeded["run"] and run["examples_used"] == 6
    assert run["models"]["document"] == ["ollama_chat/qwen2.5:7b", "local/smollm2-135m-instruct"]
    assert run["persona_version"]["recorded"] and run["persona_version"]["prompt_sha"]
    assert walk["review"]["examples"] == 6 and walk["review"]["gold"] == 1
    assert walk["review"]["edited"] == 1 and walk["review"]["editors"] == {"sam": 1}
    assert walk["review"]["reviewers"] == {"lin": 1}  # who starred, rated, accepted or rejected, by name
    assert walk["dataset"]["name"] == "collab-v1"
    assert walk["dataset"]["content_hash"] == seeded["dataset"].content_hash
    assert walk["training"]["job"] == seeded["training"] and walk["training"]["config"]["epochs"] == 2
    [evaluation] = walk["evaluations"]
    assert evaluation["job"] == seeded["evaluation"]
    assert evaluation["against"] == ["local/smollm2-135m-instruct + prompt"]
    assert [(e["action"], e["persona"], e["by"]) for e in walk["deployments"]] == [("deploy", "collaborative", "ada")]
    shown = text_of(walk)
    assert f"Generation run #{seeded['run']}" in shown and "edited (by sam (1))" in shown
    assert "reviewed by lin (1)" in shown
    assert "hash " + seeded["dataset"].content_hash[:12] in shown and "deploy for collaborative by ada" in shown


def test_lineage_walks_back_from_an_example_to_the_models_that_used_it_and_forward_from_a_dataset():
    seeded = seed_chain()
    edited = seeded["used"][1]
    walk = lineage.for_example(edited)
    assert walk["persona"]["name"] == "collaborative"
    assert walk["generation_runs"][0]["job"] == seeded["run"]
    assert walk["example"]["edits"][0]["by"] == "sam"
    [dataset] = walk["datasets"]
    assert dataset["name"] == "collab-v1" and dataset["part"] in ("train", "validation")
    [model] = dataset["models"]
    assert model["model"]["name"] == "collab-ft" and model["deployments"][0]["action"] == "deploy"
    assert lineage.models_using_example(edited) == [
        {"model": "collab-ft", "dataset": "collab-v1", "part": dataset["part"], "status": "deployed"}
    ]
    assert lineage.models_using_example(seeded["unused"]) == []
    assert "in no saved dataset" in text_of(lineage.for_example(seeded["unused"]))
    assert "edited by sam" in text_of(walk)
    # accepted when seeded, before any review was recorded: the walk says who is unknown
    assert "who reviewed it is not recorded" in text_of(walk)
    starred = lineage.for_example(seeded["used"][0])
    assert starred["example"]["reviewed_by"] == "lin" and starred["example"]["reviewed_at"]
    assert "last starred, rated, accepted or rejected by lin on" in text_of(starred)

    forward = lineage.for_dataset("collab-v1")
    assert [m["model"]["name"] for m in forward["models"]] == ["collab-ft"]
    assert forward["review"]["examples"] == 6 and forward["generation_runs"][0]["job"] == seeded["run"]
    # a training on the snapshot that made no model is listed too
    with session_scope() as session:
        session.add(Job(kind="train_local", status="failed", params={"config": {"dataset": "collab-v1"}}))
    assert len(lineage.for_dataset("collab-v1")["trainings_without_model"]) == 1


def test_deleting_a_personas_data_lists_what_it_touches_first():
    seeded = seed_chain()
    impact = lineage.persona_impact(seeded["persona"].id)
    assert impact["examples"] == 7 and impact["gold"] == 1 and impact["edits"] == 1
    assert impact["datasets"] == ["collab-v1"]
    assert impact["models"] == ["collab-ft"] and impact["deployed_models"] == ["collab-ft"]
    assert impact["jobs"] == {
        "generation": [seeded["run"]],
        "training": [seeded["training"]],
        "evaluation": [seeded["evaluation"]],
    }
    words = " ".join(lineage.impact_lines(impact))
    assert "7 examples (1 gold-starred)" in words and "collab-v1" in words and "collab-ft" in words
    purge.delete_persona_data(seeded["persona"].id, "collaborative")
    after = lineage.persona_impact(seeded["persona"].id)
    assert after["examples"] == 0 and after["datasets"] == []
    assert lineage.for_model("collab-ft")["dataset"] is None  # the model stays, its source is gone


def test_a_generation_run_records_the_personas_prompt_version():
    from pipeline.generation import service
    from pipeline.registry import prompts

    personas.seed_samples()
    persona = personas.get_persona("collaborative")
    prompts.versions(persona.id)  # version 1: the prompt as written
    job = service.start({"persona_id": persona.id, "examples": 1})
    recorded = job.params["persona_version"]
    assert recorded["prompt_version"] == 1
    assert recorded["prompt_sha"] == lineage.prompt_sha(persona.system_prompt)


# --- pages ------------------------------------------------------------------------------------------------------


def markdown_text(at) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_the_models_page_shows_where_a_model_came_from():
    seeded = seed_chain()
    at = open_app("pages/models.py")
    at.selectbox(key="models_pick").set_value("collab-ft").run()
    assert not at.exception
    shown = markdown_text(at)
    assert "Dataset **collab-v1**" in shown and f"Training job #{seeded['training']}" in shown
    assert f"Evaluation #{seeded['evaluation']}" in shown
    with session_scope() as session:  # a model trained on no persona's data here
        session.add(ModelEntry(name="plain-base", reference="local/plain-base", backend="local"))
    at.run().selectbox(key="models_pick").set_value("plain-base").run()
    assert "Persona: none (a base model: not trained on a persona's data here)" in markdown_text(at)
    # no generation run: the walk jumps from the persona to the dataset's level; the list still nests one level
    # at a time, or Markdown runs the items together into one line of text
    [tree] = [m.value for m in at.markdown if m.value.startswith("- Persona")]
    depths = [(len(line) - len(line.lstrip(" "))) // 4 for line in tree.splitlines()]
    assert len(depths) >= 3 and all(b - a <= 1 for a, b in zip(depths, depths[1:], strict=False))


def test_the_datasets_page_shows_the_models_trained_on_a_snapshot_and_the_purge_lists_what_it_touches():
    seed_chain()
    at = open_app("pages/datasets.py")
    assert not at.exception
    shown = markdown_text(at)
    assert "Model **collab-ft**" in shown
    assert "1 datasets are deleted, files included: collab-v1" in shown
    assert "collab-ft" in shown and "deployed now: collab-ft" in shown


def test_the_review_page_says_which_models_used_the_example():
    seeded = seed_chain()
    at = open_app("pages/review.py")
    at.session_state["review_current"] = seeded["used"][1]
    at.run()
    assert not at.exception
    shown = markdown_text(at)
    assert "Used by **collab-ft**" in shown


def test_the_personas_delete_step_lists_what_it_touches():
    seeded = seed_chain()
    at = open_app("pages/personas.py")
    assert "7 examples" not in markdown_text(at)
    at.checkbox(key=f"confirm_delete_{seeded['persona'].id}").check().run()
    assert not at.exception
    shown = markdown_text(at)
    assert "7 examples (1 gold-starred)" in shown and "collab-v1" in shown


def test_deleting_a_persona_removes_its_dataset_files_as_the_confirm_step_says():
    seeded = seed_chain()
    folder = build.datasets_dir() / "collab-v1"
    assert folder.is_dir()
    personas.delete_persona(seeded["persona"].id)
    assert not folder.exists()
    assert lifecycle.get("collab-ft").persona_id is None  # the model stays, without its persona
