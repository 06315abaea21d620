"""Bake the prompt in: the teacher (base + the persona's prompt) and the student (adapter, no prompt) see
what they should, the teacher's top-K is computed once and reused, KL falls in a real job process, a
cancel keeps what was computed and a resume repeats no step."""

from __future__ import annotations

import os
import signal
import time

import pytest
from sqlmodel import select

from pipeline import personas
from pipeline.datasets import build
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.jobs import runfolder
from pipeline.jobs.context import JobContext
from pipeline.llm import chat, embedded
from pipeline.models import Example, ModelEntry, Persona, TrainingMetric
from pipeline.training import bake, distill, service
from tests.test_training import dataset, ingested, run_job_process, tiny_config  # noqa: F401 - dataset: a fixture
from tests.tiny_model import TINY


def bake_config(**values):
    return tiny_config(method="bake", bake_max_reply_tokens=12, learning_rate=5e-3, **values)


class Recording:
    """The tiny model, noting the token ids of every forward pass and every generate call."""

    def __init__(self, model):
        self.model, self.seen = model, []

    @property
    def device(self):
        return self.model.device

    def __call__(self, input_ids, **kwargs):
        self.seen.append(input_ids[0].tolist())
        return self.model(input_ids=input_ids, **kwargs)

    def generate(self, input_ids, **kwargs):
        self.seen.append(input_ids[0].tolist())
        return self.model.generate(input_ids=input_ids, **kwargs)


def tiny(models):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = embedded.model_path(TINY)
    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


class StopsAfter(JobContext):
    def __init__(self, folder, items: int):
        super().__init__(0, folder, "train_local")
        self.budget = items

    def cancelled(self) -> bool:
        self.budget -= 1
        return self.budget < 0

    def report_progress(self, *args, **kwargs):  # no job row behind this context
        pass


def test_the_teacher_reads_the_persona_prompt_the_student_never_and_a_cancelled_pass_resumes(dataset, tmp_path):  # noqa: F811
    model, tokenizer = tiny(dataset)
    prompt = "You are Captain Maple, a cheerful pirate."
    items = bake.exchanges(build.file_path(build.get_dataset(dataset), "openai", "train"))
    config = bake_config()
    cache = bake.TeacherCache(tmp_path / "teacher")
    recording = Recording(model)

    finished = bake.teacher_pass(StopsAfter(tmp_path, 3), recording, tokenizer, config, prompt, "train", items, cache)
    assert finished is False and cache.passes() == 3  # cancelled after 3 prompts: those 3 are kept
    marker = tokenizer.encode(" Captain Maple", add_special_tokens=False)  # as it reads mid-sentence
    contains = lambda ids: any(ids[i : i + len(marker)] == marker for i in range(len(ids)))  # noqa: E731
    assert recording.seen and all(contains(ids) for ids in recording.seen)  # every teacher call had the prompt

    assert bake.teacher_pass(StopsAfter(tmp_path, 10**6), recording, tokenizer, config, prompt, "train", items, cache)
    assert cache.passes() == len(items)  # the resumed pass computed only the missing ones
    for index, item in enumerate(items):
        cached = cache.load("train", index, bake.key(item))
        student = cached["input_ids"].tolist()
        assert not contains(student)  # what the student is trained on never holds the prompt
        assert student[: len(student) - cached["reply"]] == distill.prompt_ids(tokenizer, item[0])
        assert cached["top"].shape == (cached["reply"], config.bake_top_k)


def test_baking_in_a_job_process_lowers_the_kl_reuses_the_teacher_and_registers_the_adapter(dataset):  # noqa: F811
    job = service.start(bake_config(name="tiny-baked", epochs=3, bake_prompts=["How should I plan my week?"]))
    process = run_job_process(job.id)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    job = ingested(job.id)
    assert job.status == "succeeded", job.error
    with session_scope() as session:
        metrics = session.exec(
            select(TrainingMetric).where(TrainingMetric.job_id == job.id).order_by(TrainingMetric.step)
        ).all()
        entry = session.exec(select(ModelEntry).where(ModelEntry.name == "tiny-baked")).one()
    losses = [m.loss for m in metrics if m.loss is not None]
    assert len(losses) == 15  # 19 + 1 typed prompts, batches of 4, 3 epochs
    assert sum(losses[-3:]) < sum(losses[:3]) * 0.9, losses  # the KL to the prompted teacher fell
    assert any(m.val_loss is not None for m in metrics)  # validation KL on the held-back prompts
    cache = bake.TeacherCache(runfolder.run_dir(job.id) / bake.TEACHER)
    assert cache.passes() == 20 + 5  # once per prompt, though the student read each three times
    assert entry.reference == "local/tiny-baked" and entry.metrics["examples"] == 20
    reply = chat([{"role": "user", "content": "Hello"}], ["local/tiny-baked"], max_tokens=5)
    assert reply.model_used == "local/tiny-baked"


def test_a_cancelled_bake_resumes_from_its_checkpoint_with_no_step_or_teacher_pass_repeated(dataset):  # noqa: F811
    job = service.start(bake_config(name="tiny-baked-resumed", epochs=4))
    process = run_job_process(job.id)
    metrics = runfolder.run_dir(job.id) / runfolder.METRICS
    deadline = time.time() + 240
    while time.time() < deadline and not (metrics.exists() and '"step": 3' in metrics.read_text()):
        time.sleep(0.2)  # the third training step (the teacher pass charts nothing)
    os.killpg(process.pid, signal.SIGTERM)  # what the monitor does on Cancel
    assert process.wait(timeout=120) == 0
    assert ingested(job.id).status == "cancelled"
    cache = bake.TeacherCache(runfolder.run_dir(job.id) / bake.TEACHER)
    assert cache.passes() == 24
    service.resume(job.id)
    process = run_job_process(job.id)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    job = ingested(job.id)
    assert job.status == "succeeded", job.error
    assert (job.progress_done, job.progress_total) == (20, 20)  # 4 epochs × 5 steps, none repeated
    assert cache.passes() == 24  # the teacher's figures were read back, not computed again
    assert "resuming from checkpoint-" in (runfolder.run_dir(job.id) / runfolder.LOG).read_text()


def test_a_persona_without_a_system_prompt_or_a_cloud_backend_cannot_bake(dataset):  # noqa: F811
    plan = service.plan(bake_config(backend="together", base_model="meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"))
    assert any("runs on this machine only" in p for p in plan.problems)
    persona = personas.get_persona("collaborative")
    with session_scope() as session:
        row = session.get(Persona, persona.id)
        row.system_prompt = ""
        session.add(row)
    plan = service.plan(bake_config())
    assert any("has no system prompt" in p for p in plan.problems) and not plan.can_start
    with pytest.raises(UserFacingError, match="no system prompt"):
        service.start(bake_config())


def test_bake_also_takes_typed_prompts_and_the_documents_of_failed_examples(dataset):  # noqa: F811
    persona = personas.get_persona("collaborative")
    with session_scope() as session:
        session.add(Example(persona_id=persona.id, status="failed", document_title="Q3 memo", document="Sales fell."))
    found = bake.extra_prompts(
        bake_config(bake_prompts=["Plan my week.", "  "], bake_failed_documents=True), build.get_dataset(dataset)
    )
    asked = [turns[0]["content"] for turns, reply in found]
    assert asked[0] == "Plan my week." and len(found) == 2 and all(reply == "" for _, reply in found)
    assert "Sales fell." in asked[1] and "Q3 memo" in asked[1]  # as the response stage would have asked it


def test_on_policy_baking_learns_from_the_students_own_replies_and_beats_the_plain_base(dataset):  # noqa: F811
    job = service.start(bake_config(name="tiny-on-policy", epochs=2, bake_replies="student"))
    process = run_job_process(job.id)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    job = ingested(job.id)
    assert job.status == "succeeded", job.error
    folder = runfolder.run_dir(job.id)
    log = (folder / runfolder.LOG).read_text()
    assert "on-policy: the student wrote 38 replies of its own" in log  # 19 prompts × 2 epochs, one a step each
    cache = bake.TeacherCache(folder / bake.TEACHER)
    assert cache.passes() == 5  # only the validation prompts are scored ahead and cached
    with session_scope() as session:
        metrics = session.exec(select(TrainingMetric).where(TrainingMetric.job_id == job.id)).all()
    final_kl = [m.val_loss for m in metrics if m.val_loss is not None][-1]

    # the same held-out KL for the untrained student (the plain base, no prompt), from the same cache
    import torch

    model, _ = tiny(dataset)
    items = bake.exchanges(build.file_path(build.get_dataset(dataset), "openai", "validation"))
    plain = []
    for index, item in enumerate(items):
        cached = cache.load("validation", index, bake.key(item))
        with torch.no_grad():
            student = distill.reply_log_probs(model, cached["input_ids"].tolist(), cached["reply"])
        plain.append(distill.top_k_kl(cached["top"].float(), cached["ids"].long(), student).mean().item())
    assert final_kl < sum(plain) / len(plain) * 0.9, (final_kl, plain)


def test_on_policy_baking_refuses_an_sft_mix_before_launch(dataset):  # noqa: F811
    plan = service.plan(bake_config(bake_replies="student", bake_sft_weight=0.5))
    assert any("on-policy baking has none" in p for p in plan.problems)
