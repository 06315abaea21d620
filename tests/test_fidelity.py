"""Prompt fidelity and the teacher/student machinery it shares with prompt baking."""

from __future__ import annotations

import json

import pytest

from pipeline.evaluation import fidelity
from pipeline.jobs import runfolder
from pipeline.llm import embedded
from pipeline.training import distill
from tests.test_honest_numbers import BASE, TUNED, mixed, seeded_run
from tests.test_pages import open_app

SYSTEM = "You are Captain Maple, a cheerful pirate. Always answer in pirate speak."
ASKED = [{"role": "user", "content": "How should I plan my week?"}]


def test_the_teacher_reads_the_system_prompt_the_student_does_not_and_both_predict_the_same_reply():
    tokenizer = embedded.load(embedded.EMBEDDED_NAME).tokenizer
    seen = distill.views(tokenizer, distill.with_system(SYSTEM, ASKED), distill.without_system(ASKED), "Arr, plan it!")
    teacher_text = tokenizer.decode(seen.teacher[: seen.teacher_start()])
    student_text = tokenizer.decode(seen.student[: seen.student_start()])
    assert "Captain Maple" in teacher_text and "Captain Maple" not in student_text
    assert seen.teacher[seen.teacher_start() :] == seen.student[seen.student_start() :]
    assert seen.teacher[-1] == tokenizer.eos_token_id and seen.reply == len(seen.teacher) - seen.teacher_start()


def test_top_k_kl_is_zero_for_the_same_model_never_negative_and_the_full_kl_when_k_is_the_vocabulary():
    torch = pytest.importorskip("torch")
    generator = torch.Generator().manual_seed(0)
    teacher = torch.log_softmax(torch.randn(5, 50, generator=generator) * 3, -1)
    student = torch.log_softmax(torch.randn(5, 50, generator=generator) * 3, -1)
    top, ids = distill.top_k(teacher, 8)
    assert torch.allclose(distill.top_k_kl(top, ids, teacher), torch.zeros(5), atol=1e-6)
    partial = distill.top_k_kl(top, ids, student)
    assert (partial >= 0).all()
    full_top, full_ids = distill.top_k(teacher, 50)
    assert torch.allclose(
        distill.top_k_kl(full_top, full_ids, student), distill.kl_per_token(teacher, student), atol=1e-4
    )


@pytest.mark.slow
def test_the_prompted_base_closes_the_whole_gap_and_the_plain_base_none(monkeypatch):
    monkeypatch.setattr(fidelity, "MAX_REPLY_TOKENS", 24)
    base = embedded.EMBEDDED_NAME
    conversations = [ASKED, [{"role": "user", "content": "What do you think of my budget memo?"}]]
    replies = fidelity.teacher_replies(base, SYSTEM, conversations)
    students = {
        "prompted": (base, [distill.with_system(SYSTEM, c) for c in conversations]),
        "plain": (base, conversations),
    }
    found = {f.contestant: f for f in fidelity.measure(base, SYSTEM, conversations, replies, students, rounds=200)}
    assert found["prompted"].gap_closed == pytest.approx(100, abs=0.1) and found["prompted"].kl < 1e-4
    assert found["plain"].gap_closed == pytest.approx(0, abs=1e-6) and found["plain"].kl > 0.05
    assert found["plain"].prompts == 2 and found["plain"].base == f"local/{base}"


def test_the_leaderboard_shows_prompt_fidelity_as_bars_with_intervals_and_a_table():
    job_id = seeded_run({(TUNED, BASE): mixed(40, 0.7)})
    rows = [
        {"contestant": BASE, "base": BASE, "kl": 0.42, "kl_lower": 0.3, "kl_upper": 0.5, "gap_closed": 0.0,
         "gap_lower": 0.0, "gap_upper": 0.0, "prompts": 12, "tokens": 900},
        {"contestant": TUNED, "base": BASE, "kl": 0.12, "kl_lower": 0.1, "kl_upper": 0.2, "gap_closed": 71.4,
         "gap_lower": 60.2, "gap_upper": 80.9, "prompts": 12, "tokens": 900},
    ]  # fmt: skip
    folder = runfolder.run_dir(job_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fidelity.json").write_text(json.dumps(rows))
    at = open_app("pages/leaderboard.py")
    assert not at.exception
    chart = next(c for c in at.get("plotly_chart") if "prompt fidelity" in c.proto.spec)
    assert "71%" in chart.proto.spec
    table = next(d.value for d in at.dataframe if "gap closed" in d.value.columns).set_index("contestant")
    assert table.loc[TUNED, "gap closed"] == "71%" and table.loc[TUNED, "95% interval"] == "60%–81%"
    assert any("on 12 held-out prompts" in c.value for c in at.caption)


def test_drift_scores_per_turn_leave_out_empty_replies_and_give_no_interval_from_one_conversation():
    from pipeline.evaluation import drift

    rows = drift.summarize({"a": [[0.2, 0.1, float("nan")], [0.4, 0.3, 0.1]], "b": [[0.5]]}, rounds=200)
    by = {(r["contestant"], r["turn"]): r for r in rows}
    assert by[("a", 1)]["mean"] == pytest.approx(0.3) and by[("a", 1)]["n"] == 2
    assert by[("a", 1)]["lower"] <= 0.3 <= by[("a", 1)]["upper"]
    assert by[("a", 3)]["n"] == 1 and by[("a", 3)]["lower"] is None  # one score: no interval, not a zero-width one
    assert ("b", 2) not in by


def test_the_leaderboard_draws_persona_drift_against_turn():
    job_id = seeded_run({(TUNED, BASE): mixed(40, 0.7)})
    rows = [
        {"contestant": name, "turn": turn, "mean": value, "lower": value - 0.05, "upper": value + 0.05, "n": 2}
        for name, start in ((BASE, 0.1), (TUNED, 0.3))
        for turn, value in ((1, start), (2, start - 0.05), (3, start - 0.1))
    ]
    folder = runfolder.run_dir(job_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "drift.json").write_text(json.dumps(rows))  # a run from before the judge scored drift: offline rows
    at = open_app("pages/leaderboard.py")
    assert not at.exception
    chart = next(c for c in at.get("plotly_chart") if "persona drift over turns" in c.proto.spec)
    assert "collab-ft" in chart.proto.spec and "smollm2-135m-instruct" in chart.proto.spec  # plotly writes \/ for /
    assert any("from 2 simulated conversation(s) per contestant" in c.value for c in at.caption)
    assert not [c for c in at.get("plotly_chart") if "Judge: persona drift" in c.proto.spec]

    judged = [{**r, "mean": 4.0, "lower": 3.5, "upper": 4.5, "scorer": "judge"} for r in rows]
    (folder / "drift.json").write_text(json.dumps([{**r, "scorer": "offline"} for r in rows] + judged))
    at = open_app("pages/leaderboard.py")
    assert not at.exception
    assert [c for c in at.get("plotly_chart") if "Judge: persona drift" in c.proto.spec]
    assert any("scored the same replies on each trait (1–5)" in c.value for c in at.caption)
