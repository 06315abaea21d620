"""The Experiments page through AppTest, from app.py: run again with changes, a sweep, compare runs, and the
data-size curve."""

from __future__ import annotations

import json

from pipeline import jobs
from pipeline.jobs import runfolder
from pipeline.training import data_curve, runs
from tests.test_pages import open_app
from tests.test_runs import config_of, differing_keys, finished_run
from tests.test_training import dataset, tiny_config  # noqa: F401 - a fixture

PAGE = "pages/experiments.py"


def table_with(at, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_run_again_shows_only_what_changed_and_queues_that_run(dataset):  # noqa: F811
    first = runs.start_sweep(tiny_config(), {"seed": [1]}).jobs[0]  # any training job
    at = open_app(PAGE)
    at.selectbox(key="runs_source").set_value(f"job:{first.id}").run()
    form = f"runs_form_job:{first.id}"
    assert at.text_input(key=f"{form}_learning_rate").value == "0.0002"  # the whole config, prefilled
    assert at.number_input(key=f"{form}_epochs").value == 1
    assert any("Nothing changed yet" in c.value for c in at.caption)
    at.text_input(key=f"{form}_learning_rate").set_value("1e-4").run()
    changed = table_with(at, "was")
    assert changed.to_dict("records") == [{"setting": "learning_rate", "was": "0.0002", "now": "0.0001"}]
    at.button(key="runs_start").click().run()
    assert not at.exception
    newest = jobs.list_jobs()[0]
    assert at.success[0].value == f"Queued job {newest.id} with 1 change(s). Follow it on Live monitoring."
    assert differing_keys(config_of(first), config_of(newest)) == {"learning_rate"}
    at.text_input(key="runs_save_name").set_value("slower").run()
    at.button(key="runs_save").click().run()
    assert runs.load_saved("slower").learning_rate == 1e-4
    assert any("Saved as 'slower'" in m.value for m in at.success)
    assert "Saved settings: slower" in at.run().selectbox(key="runs_source").options


def test_a_sweep_from_the_page_queues_the_grid_and_refuses_thirteen_runs(dataset):  # noqa: F811
    runs.save_config("base", tiny_config())
    at = open_app(PAGE)
    at.selectbox(key="sweep_source").set_value("saved:base").run()
    at.text_input(key="sweep_values_1").set_value("1e-4, 2e-4").run()
    at.selectbox(key="sweep_key_2").set_value("epochs").run()
    at.text_input(key="sweep_values_2").set_value("1, 2").run()
    assert any("**4 runs**" in m.value for m in at.markdown)
    at.button(key="sweep_start").click().run()
    assert not at.exception and "Queued sweep" in at.success[0].value
    assert len(jobs.list_jobs()) == 4
    at.text_input(key="sweep_values_1").set_value(",".join(f"{i}e-4" for i in range(1, 8))).run()
    assert any("would queue 14 runs; at most 12" in e.value for e in at.error)
    assert at.button(key="sweep_start").disabled


def test_compare_runs_shows_the_differing_settings_the_curves_and_the_finals(dataset):  # noqa: F811
    a = finished_run(tiny_config(learning_rate=1e-4), [3.0, 2.5, 2.2])
    b = finished_run(tiny_config(learning_rate=3e-4), [3.0, 2.3, 1.9])
    at = open_app(PAGE)
    at.multiselect(key="compare_runs").set_value([a.id, b.id]).run()
    assert not at.exception
    assert table_with(at, "setting").to_dict("records") == [
        {"setting": "learning_rate", f"#{a.id}": "0.0001", f"#{b.id}": "0.0003"}
    ]
    assert list(table_with(at, "final loss")["final loss"]) == [2.2, 1.9]
    assert len(at.get("plotly_chart")) == 1
    at.button(key="compare_evaluate").click().run()
    assert any("made no model" in e.value for e in at.error)  # queued runs made none yet


def test_the_data_size_curve_starts_from_the_page_and_draws_a_finished_curve(dataset):  # noqa: F811
    runs.save_config("base", tiny_config())
    at = open_app(PAGE)
    at.selectbox(key="curve_source").set_value("saved:base").run()
    assert any("Trains on 5, 10, 19 examples; scores on 5." in c.value for c in at.caption)
    at.button(key="curve_start").click().run()
    job = jobs.list_jobs()[0]
    assert job.kind == "data_curve" and at.success[0].value.startswith(f"Queued data-size curve job {job.id}")
    points = [
        {"examples": n, "mean": m, "lower": m - 0.1, "upper": m + 0.1, "rows": []}
        for n, m in ((5, -3.0), (10, -2.5), (19, -2.45))
    ]
    folder = runfolder.run_dir(job.id)
    folder.mkdir(parents=True, exist_ok=True)
    base = {"examples": 0, "mean": -3.5, "lower": -3.6, "upper": -3.4}
    (folder / data_curve.CURVE).write_text(json.dumps({"base": base, "points": points}))
    at.run()
    assert not at.exception
    assert any("more data stops helping around 10 examples" in m.value for m in at.markdown)
    assert list(table_with(at, "persona likelihood")["examples"]) == [0, 5, 10, 19]
    assert len(at.get("plotly_chart")) == 1
