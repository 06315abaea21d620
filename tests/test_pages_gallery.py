"""Live monitoring's training additions through AppTest: the best step and why training stopped, the
checkpoint gallery (replies per checkpoint, persona score), a cloud job's rising validation loss; and
the Train page's word on a dataset with no validation split."""

from __future__ import annotations

import json

from tests.test_pages import _seeded, open_app


def _training_job(kind: str = "train_local", val: dict | None = None, ended: dict | None = None) -> int:
    from pipeline.db import session_scope
    from pipeline.models import Job, TrainingMetric

    val = val or {}
    with session_scope() as session:
        job = Job(
            kind=kind,
            name="lora run",
            status="succeeded",
            progress_done=8,
            progress_total=8,
            progress_unit="steps",
            params={"config": {"method": "sft", "dataset": "d"}},
        )
        session.add(job)
        session.flush()
        for step in range(1, 9):
            extra = ended if ended and step == 8 else {}
            session.add(
                TrainingMetric(job_id=job.id, step=step, loss=3.0 - step * 0.2, val_loss=val.get(step), values=extra)
            )
        return job.id


def _gallery(job_id: int) -> None:
    from pipeline.jobs import runfolder
    from pipeline.training import gallery

    folder = runfolder.run_dir(job_id)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / gallery.FILE, "w", encoding="utf-8") as handle:
        for step in (0, 2, 4, 6, 8):
            replies = [
                {"probe": i, "prompt": f"Probe {i}?", "reply": f"reply {i} at {step}", "persona_similarity": 0.1 * step}
                for i in range(2)
            ]
            handle.write(json.dumps({"step": step, "replies": replies, "persona_similarity": 0.1 * step}) + "\n")


def test_monitoring_page_marks_the_best_step_says_why_training_stopped_and_shows_the_gallery():
    job_id = _training_job(
        val={2: 2.0, 4: 1.8, 6: 1.9, 8: 2.1},
        ended={"best_step": 4, "best_val_loss": 1.8, "stopped_early": 1, "patience": 2},
    )
    _gallery(job_id)
    at = open_app("pages/monitor.py")
    at.selectbox(key="monitor_job").select(job_id).run()
    assert not at.exception
    [said] = [i.value for i in at.info if "Why training stopped" in i.value]
    assert said.startswith(
        "Why training stopped: stopped at step 8: validation loss had not improved for 2 evaluations since step 4 "
        "(1.80); the model is the checkpoint of step 4"
    )
    loss, persona = at.get("plotly_chart")
    assert "best: step 4" in loss.proto.spec  # the dashed line on the loss curve
    assert "Persona score" in persona.proto.spec
    # each prompt in a tab, its replies side by side: before training, the best, one between and the last
    assert [t.label for t in at.tabs][:2] == ["Prompt 1: Probe 0?", "Prompt 2: Probe 1?"]
    second = at.tabs[1]
    shown = [m.value for m in second.markdown]  # each checkpoint's label, then its reply
    assert shown == [
        "**before training**", "reply 1 at 0", "**step 4 (best)**", "reply 1 at 4",
        "**step 6**", "reply 1 at 6", "**step 8**", "reply 1 at 8",
    ]  # fmt: skip
    assert "persona similarity 0.40" in [c.value for c in second.caption]
    table = next(d.value for d in at.dataframe if "probe" in d.value.columns)  # every checkpoint, as a table
    assert list(table.columns) == ["probe", "before training", "step 2", "step 4 (best)", "step 6", "step 8"]
    assert list(table["probe"]) == ["Probe 0?", "Probe 1?"]
    assert table.iloc[1]["step 4 (best)"] == "reply 1 at 4"


def test_monitoring_page_warns_when_a_cloud_jobs_validation_loss_rises():
    job_id = _training_job("train_together", val={2: 1.0, 4: 0.9, 6: 1.0, 8: 1.1})
    at = open_app("pages/monitor.py")
    at.selectbox(key="monitor_job").select(job_id).run()
    assert not at.exception
    [warning] = [w.value for w in at.warning if "validation loss has risen" in w.value]
    assert "risen for 2 reports since step 4 (0.90; now 1.10)" in warning
    assert not [i for i in at.info if "Why training stopped" in i.value]
    assert len(at.get("plotly_chart")) == 1  # no gallery for a cloud job


def test_train_page_says_a_dataset_without_a_validation_split_trains_without_early_stopping():
    from pipeline.datasets import build
    from pipeline.review.filters import ExampleFilter

    _seeded(12, status="accepted")
    build.save("no-held-out", build.preview(ExampleFilter(persona_id=1, statuses=["accepted"]), 0.0))
    at = open_app("pages/train.py")
    assert not at.exception
    assert any("has no validation split, so there is nothing to stop early on" in w.value for w in at.warning)
    at.number_input(key="train_patience").set_value(0).run()
    assert not any("nothing to stop early on" in w.value for w in at.warning)


def test_the_side_by_side_view_keeps_before_best_and_last_and_spaces_the_rest():
    from pipeline.training import gallery

    records = [
        {"step": s, "replies": [{"probe": 0, "prompt": "Memo: q3\n\nbody", "reply": f"at {s}"}]}
        for s in range(0, 44, 4)
    ]
    [probe] = gallery.side_by_side(records, best_step=12, columns=5)
    assert probe["title"] == "Memo: q3"
    assert [r["step"] for r in probe["replies"]] == [0, 12, 16, 28, 40]  # before, best, last; two spaced between
    assert [r["label"] for r in probe["replies"]][1] == "step 12 (best)"
    assert gallery.side_by_side([], None) == []
