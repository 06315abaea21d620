"""The data-size curve: nested subsets trained on the tiny model, each scored on the held-out replies."""

from __future__ import annotations

import pytest

from pipeline import charts
from pipeline.errors import UserFacingError
from pipeline.jobs import runfolder
from pipeline.training import data_curve
from tests.test_training import cli, dataset, ingested, run_job_process, tiny_config  # noqa: F401 - a fixture


def test_sizes_are_nested_and_the_plateau_is_where_intervals_overlap():
    assert data_curve.sizes(19, [0.25, 0.5, 1.0]) == [5, 10, 19]
    assert data_curve.sizes(3, [0.1, 0.25, 1.0]) == [1, 3]  # at least one row; repeats merged
    order = data_curve.nested_order(19, 42)
    assert sorted(order) == list(range(19)) and order == data_curve.nested_order(19, 42)
    assert set(order[:5]) <= set(order[:10]) <= set(order[:19])
    rising = [
        {"examples": 5, "mean": -3.0, "lower": -3.2, "upper": -2.9},
        {"examples": 10, "mean": -2.5, "lower": -2.7, "upper": -2.4},
        {"examples": 19, "mean": -2.45, "lower": -2.6, "upper": -2.3},
    ]
    assert data_curve.plateau(rising) == 10
    assert "more data stops helping around 10 examples" in data_curve.verdict(rising, 10)
    assert data_curve.plateau(rising[:2]) is None
    assert "more data still helps at 10 examples" in data_curve.verdict(rising[:2], None)
    assert len(charts.data_size_curve(rising, 10).data) == 1


def test_the_curve_is_refused_for_what_it_cannot_measure(dataset):  # noqa: F811
    assert data_curve.plan(tiny_config()).sizes == [5, 10, 19]
    with pytest.raises(UserFacingError, match="imitates the examples"):
        data_curve.start(tiny_config(method="dpo"))
    with pytest.raises(UserFacingError, match="at least two different sizes"):
        data_curve.start(tiny_config(), [1.0])
    with pytest.raises(UserFacingError, match="above 0 and at most 1"):
        data_curve.start(tiny_config(), [0.5, 2])


def test_a_data_size_curve_trains_nested_subsets_and_scores_each(dataset):  # noqa: F811
    job = data_curve.start(tiny_config(batch_size=4), [0.25, 0.5, 1.0])
    assert job.kind == "data_curve" and job.params["fractions"] == [0.25, 0.5, 1.0]
    process = run_job_process(job.id)
    log = runfolder.run_dir(job.id) / runfolder.LOG
    assert process.wait(timeout=300) == 0, log.read_text()[-3000:] if log.exists() else process.stderr.read()
    finished = ingested(job.id)
    assert finished.status == "succeeded", (runfolder.run_dir(job.id) / runfolder.LOG).read_text()[-3000:]
    curve = data_curve.result(job.id)
    assert [p["examples"] for p in curve.points] == [5, 10, 19]
    rows = [set(p["rows"]) for p in curve.points]
    assert rows[0] < rows[1] < rows[2] and len(rows[2]) == 19  # each smaller subset inside the larger
    assert [p["steps"] for p in curve.points] == [2, 3, 5]  # one epoch each: the same steps per example
    for point in [curve.base, *curve.points]:
        assert point["lower"] <= point["mean"] <= point["upper"]
        assert point["scored"] == 5 and point["tokens"] > 0  # the validation split's five replies
    assert curve.base["examples"] == 0
    assert curve.verdict.startswith(("Going from", "Each larger subset"))
    assert curve.verdict in (runfolder.run_dir(job.id) / runfolder.LOG).read_text()
    checked = cli("train", "--check-job", str(job.id))
    assert checked.returncode == 0 and "19 examples: persona likelihood" in checked.stdout
