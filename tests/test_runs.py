"""Run again with changes, sweeps (queued, one at a time), saved settings and comparing runs."""

from __future__ import annotations

import pytest

from pipeline import charts, jobs, personas
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.generation.config import GenerationConfig
from pipeline.jobs import monitor, states
from pipeline.models import ModelEntry, TrainingMetric
from pipeline.training import compare, runs, service
from pipeline.training.config import load
from tests.test_training import cli, dataset, tiny_config  # noqa: F401 - the dataset fixture


def config_of(job) -> dict:
    return load(job.params["config"]).model_dump(mode="json")


def differing_keys(a: dict, b: dict) -> set[str]:
    return {k for k in a if a[k] != b.get(k)}


# --- run again with changes ----------------------------------------------------------------------------


def test_a_rerun_with_one_change_makes_a_job_whose_config_differs_in_exactly_that_field(dataset):  # noqa: F811
    first = service.start(tiny_config(name="tiny-a"))
    again, changed = runs.rerun(first.id, {"learning_rate": "1e-4"})
    assert again.id != first.id and again.status == "queued" and again.kind == "train_local"
    assert differing_keys(config_of(first), config_of(again)) == {"learning_rate"}
    assert config_of(again)["learning_rate"] == 1e-4
    assert changed == [{"setting": "learning_rate", "was": "0.0002", "now": "0.0001"}]
    assert again.params["rerun_of"] == first.id and "rerun of #" in again.name

    source = runs.from_job(first.id)  # what the page shows: every setting, prefilled
    shown = {s.name: s for s in runs.settings_of(source)}
    assert shown["epochs"].kind == "int" and shown["method"].choices == ["sft", "dpo", "bake"]
    assert shown["target_modules"].kind == "list" and shown["merge"].kind == "bool"
    assert runs.revise(source, {"epochs": 1}).changed == []  # the same value: nothing changed
    revised = runs.revise(source, {"target_modules": "q_proj, v_proj", "epochs": "2"})
    assert {c["setting"] for c in revised.changed} == {"target_modules", "epochs"}
    with pytest.raises(UserFacingError, match="There is no setting 'learning_speed'"):
        runs.revise(source, {"learning_speed": "1"})
    with pytest.raises(UserFacingError, match="learning_rate"):
        runs.revise(source, {"learning_rate": "fast"})


def test_a_generation_job_runs_again_with_one_change():
    personas.seed_samples()
    persona = personas.get_persona("collaborative")
    first = jobs.submit("generation", GenerationConfig(persona_id=persona.id, examples=4).model_dump(mode="json"))
    again, changed = runs.rerun(first.id, {"examples": "6"})
    assert again.kind == "generation" and again.params["examples"] == 6
    keys = set(GenerationConfig.model_fields)
    before = {k: v for k, v in first.params.items() if k in keys}
    after = {k: v for k, v in again.params.items() if k in keys}
    assert differing_keys(before, after) == {"examples"}
    assert changed == [{"setting": "examples", "was": "4", "now": "6"}]
    shown = {s.name: s.value for s in runs.settings_of(runs.from_job(first.id))}
    as_typed = {
        k: ", ".join(map(str, v)) if isinstance(v, list) else ("" if v is None else v) for k, v in shown.items()
    }
    assert runs.revise(runs.from_job(first.id), as_typed).changed == []  # the page's boxes, untouched: no change
    probe = jobs.submit("probe", {"seconds": 1})
    with pytest.raises(UserFacingError, match="only training and generation jobs run again"):
        runs.from_job(probe.id)


# --- sweeps ---------------------------------------------------------------------------------------------


def test_a_sweep_queues_the_product_of_the_grid_and_refuses_more_than_twelve_runs(dataset):  # noqa: F811
    sweep = runs.start_sweep(tiny_config(), {"learning_rate": ["1e-4", "2e-4", "3e-4"], "epochs": ["1", "2"]})
    assert len(sweep.jobs) == 6
    configs = [config_of(j) for j in sweep.jobs]
    assert sorted((c["learning_rate"], c["epochs"]) for c in configs) == sorted(
        (lr, ep) for lr in (1e-4, 2e-4, 3e-4) for ep in (1, 2)
    )
    assert all(differing_keys(configs[0], c) <= {"learning_rate", "epochs"} for c in configs)
    assert {jobs.sweep_of(j.params) for j in sweep.jobs} == {sweep.id}
    assert all(j.status == "queued" for j in sweep.jobs)
    named = runs.sweep_runs(tiny_config(name="grid"), {"seed": [1, 2]})
    assert [r.config.name for r in named] == ["grid-1", "grid-2"]  # each run's model has its own name

    with pytest.raises(UserFacingError, match="would queue 13 runs; at most 12"):
        runs.start_sweep(tiny_config(), {"seed": [str(i) for i in range(13)]})
    with pytest.raises(UserFacingError, match="would queue 16 runs"):
        runs.start_sweep(tiny_config(), runs.parse_grid(["learning_rate=1,2,3,4", "epochs=1,2,3,4"]))
    with pytest.raises(UserFacingError, match="at most 2 settings"):
        runs.start_sweep(tiny_config(), {"seed": [1], "epochs": [1], "lora_r": [4]})
    with pytest.raises(UserFacingError, match="cannot be swept"):
        runs.start_sweep(tiny_config(), {"dataset": ["a", "b"]})
    with pytest.raises(UserFacingError, match="Run 2 of the sweep .*max_seq_length=64"):
        runs.start_sweep(tiny_config(), {"max_seq_length": [512, 64]})
    assert len(jobs.list_jobs()) == 6  # nothing of a refused sweep was queued


def test_the_monitor_starts_one_run_of_a_sweep_at_a_time(monkeypatch):
    first = jobs.submit("probe", {"seconds": 1, "sweep": {"id": "aa", "run": 1, "of": 2}})
    second = jobs.submit("probe", {"seconds": 1, "sweep": {"id": "aa", "run": 2, "of": 2}})
    other = jobs.submit("probe", {"seconds": 1, "sweep": {"id": "bb", "run": 1, "of": 1}})
    worker = monitor.Monitor()
    started = []
    monkeypatch.setattr(worker, "_start", started.append)
    worker.start_queued()
    assert started == [first.id, other.id]  # probes may run two at once, but never two of one sweep
    worker.start_queued()
    assert started == [first.id, other.id]
    assert states.transition(first.id, states.RUNNING, states.SUCCEEDED)
    worker.start_queued()
    assert started == [first.id, other.id, second.id]


# --- saved settings and the command line ---------------------------------------------------------------


def test_saved_settings_load_by_name_and_the_command_line_sweeps_and_reruns(dataset, tmp_path):  # noqa: F811
    runs.save_config("tiny-fast", tiny_config(learning_rate=5e-4))
    assert runs.saved_configs() == ["tiny-fast"]
    assert runs.load_saved("tiny-fast", epochs=2).learning_rate == 5e-4
    with pytest.raises(UserFacingError, match="no saved settings named 'nope'"):
        runs.load_saved("nope")
    with pytest.raises(UserFacingError, match="cannot name saved settings"):
        runs.save_config("../up", tiny_config())

    path = tmp_path / "tiny.yaml"
    path.write_text(tiny_config().to_yaml())
    saved = cli("train", "--config", str(path), "--learning-rate", "3e-4", "--save-as", "tiny-cli")
    assert saved.returncode == 0, saved.stderr
    assert runs.load_saved("tiny-cli").learning_rate == 3e-4
    swept = cli("train", "--config", "tiny-cli", "--sweep", "learning_rate=1e-4,2e-4", "--sweep", "epochs=1,2")
    assert swept.returncode == 0, swept.stderr
    assert "4 runs, one at a time" in swept.stdout
    queued = jobs.list_jobs()
    assert len(queued) == 4 and len({jobs.sweep_of(j.params) for j in queued}) == 1
    refused = cli("train", "--config", "tiny-cli", "--sweep", "seed=" + ",".join(map(str, range(13))))
    assert refused.returncode == 1 and "13 runs" in refused.stderr

    rerun = cli("jobs", "rerun", str(queued[-1].id), "--set", "lora_r=4")
    assert rerun.returncode == 0, rerun.stderr
    newest = jobs.list_jobs()[0]
    assert differing_keys(config_of(queued[-1]), config_of(newest)) == {"lora_r"}
    assert "lora_r: 16 → 4" in rerun.stdout


# --- compare runs ---------------------------------------------------------------------------------------


def finished_run(config, losses: list[float], model: str | None = None, persona_id: int | None = None):
    job = service.start(config)
    with session_scope() as session:
        for step, loss in enumerate(losses, 1):
            checked = step % 2 == 0  # a validation loss and a persona score every second step
            session.add(
                TrainingMetric(
                    job_id=job.id,
                    step=step,
                    loss=loss,
                    val_loss=loss + 0.1 if checked else None,
                    values={"persona_similarity": round(0.5 - loss / 10, 3)} if checked else {},
                )
            )
        if model:
            session.add(
                ModelEntry(
                    name=model, reference=f"local/{model}", backend="local", job_id=job.id, persona_id=persona_id
                )
            )
    return job


def test_compare_shows_only_the_settings_that_differ_with_curves_and_final_figures(dataset):  # noqa: F811
    a = finished_run(tiny_config(learning_rate=1e-4), [3.0, 2.5, 2.2, 2.0])
    b = finished_run(tiny_config(learning_rate=2e-4, epochs=2), [3.0, 2.4, 2.0, 1.7])
    c = finished_run(tiny_config(learning_rate=2e-4), [3.1, 2.6, 2.3, 2.1])
    found = compare.compare([a.id, b.id, c.id])
    assert [row["setting"] for row in found.differing] == ["epochs", "learning_rate"]
    assert found.differing[1] == {
        "setting": "learning_rate",
        f"#{a.id}": "0.0001",
        f"#{b.id}": "0.0002",
        f"#{c.id}": "0.0002",
    }
    finals = {row["run"]: row for row in found.finals}
    assert finals[f"#{b.id}"]["final loss"] == 1.7 and finals[f"#{b.id}"]["best validation loss"] == pytest.approx(1.8)
    assert finals[f"#{b.id}"]["persona score (last check)"] == pytest.approx(0.33)  # at step 4, loss 1.7
    figure = charts.compared_curves(found.curves)
    assert len(figure.data) == 9  # loss, validation loss and persona score for each of three runs
    assert [t.name for t in figure.data if t.yaxis == "y2"] == [f"#{j.id} persona score" for j in (a, b, c)]
    with pytest.raises(UserFacingError, match="Pick 2 to 6 training runs"):
        compare.compare([a.id])
    with pytest.raises(UserFacingError, match="made no model"):
        compare.evaluation_plan([a.id, b.id])


def test_compare_evaluates_the_runs_models_against_each_other_in_one_click(dataset):  # noqa: F811
    from tests.tiny_model import TINY

    persona = personas.get_persona("collaborative").id
    a = finished_run(tiny_config(learning_rate=1e-4), [2.0], model="tiny-a", persona_id=persona)
    b = finished_run(tiny_config(seed=7), [2.1], model="tiny-b", persona_id=persona)
    with pytest.raises(UserFacingError, match="The prompt set is empty"):  # the seeded examples all look alike
        compare.evaluation_plan([a.id, b.id])
    asked = ["How should we plan the quarter?"]
    plan = compare.evaluation_plan([a.id, b.id], asked)
    assert plan.contestants == ["local/tiny-a", "local/tiny-b", f"local/{TINY}"]  # the base, plain, is the anchor
    assert plan.anchor == f"local/{TINY}" and plan.judge == "offline" and plan.dataset == "collab-train"
    job = compare.evaluate([a.id, b.id], asked)
    assert job.kind == "evaluation" and job.status == "queued" and job.name == f"Compare runs #{a.id}, #{b.id}"
