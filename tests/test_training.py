"""Fine-tuning: config, eligibility and estimates, real LoRA training in a job process, cancel and
resume, the adapter registered and chat-able, the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlmodel import select

from pipeline import jobs, personas
from pipeline.datasets import build
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.jobs import ingest, runfolder
from pipeline.llm import chat, embedded
from pipeline.models import Job, ModelEntry, TrainingMetric
from pipeline.review import actions
from pipeline.review.filters import ExampleFilter
from pipeline.training import config as cfg
from pipeline.training import service
from tests.conftest import REPO
from tests.seed import add_examples
from tests.tiny_model import TINY


@pytest.fixture
def dataset(models) -> str:
    personas.seed_samples()
    persona = personas.get_persona("collaborative")
    ids = add_examples(persona.id, 24, status="accepted")
    actions.edit_response(ids[0], "A warmer reply: what would help you most here?", "ada")
    build.save("collab-train", build.preview(ExampleFilter(persona_id=persona.id, statuses=["accepted"]), 0.2))
    return "collab-train"


def run_job_process(job_id: int, **popen) -> subprocess.Popen:
    """The job as the monitor starts it: its own process group, `python -m pipeline.jobs run ID`."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.jobs", "run", str(job_id)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def ingested(job_id: int) -> Job:
    with session_scope() as session:
        ingest.ingest_job(session, session.get(Job, job_id))
    return jobs.get(job_id)


def tiny_config(**values) -> cfg.TrainingConfig:
    return cfg.load(
        {
            "dataset": "collab-train",
            "base_model": f"local/{TINY}",
            "epochs": 1,
            "batch_size": 4,
            "eval_every": 2,
            "save_every": 2,
            "max_seq_length": 512,
            **values,
        }
    )


# --- config --------------------------------------------------------------------------------------


def test_presets_and_yaml_round_trip(tmp_path):
    quick = cfg.from_preset("quick", dataset="d")
    assert (quick.epochs, quick.lora_r, quick.lora_alpha, quick.lora_dropout) == (1, 8, 16, 0.05)
    path = tmp_path / "config.yaml"
    path.write_text(quick.to_yaml())
    assert cfg.load_file(path, epochs=4) == quick.model_copy(update={"epochs": 4})
    with pytest.raises(UserFacingError, match="learning_rate"):
        cfg.load({"dataset": "d", "learning_rate": -1})
    with pytest.raises(UserFacingError, match="Unknown preset"):
        cfg.from_preset("heroic", dataset="d")
    assert cfg.load({"dataset": "d", "backend": "together"}).resolved_base().startswith("meta-llama/")


# --- plan: eligibility, cost, time ---------------------------------------------------------------


def test_plan_gives_cost_and_time_and_names_what_stops_a_launch(dataset):
    local = service.plan(tiny_config())
    assert local.eligible and local.examples == 19 and local.cost_usd == 0.0 and local.seconds > 0
    cloud = service.plan(cfg.load({"dataset": dataset, "backend": "openai", "epochs": 3}))
    assert cloud.cost_usd == pytest.approx(cloud.billed_tokens * 3.0 / 1e6, abs=1e-4)
    assert cloud.billed_tokens == cloud.tokens_per_epoch * 3
    too_long = service.plan(tiny_config(max_seq_length=64))
    assert not too_long.eligible and "trains on at most 64" in too_long.problems[0]
    assert service.plan(tiny_config(method="dpo")).eligible  # the edit gave one preference pair
    with pytest.raises(UserFacingError, match="No dataset named"):
        service.plan(tiny_config(dataset="nope"))
    with pytest.raises(UserFacingError, match="Cannot start"):
        service.start(tiny_config(qlora=True))


# --- the local backend: real training -----------------------------------------------------------


def test_local_training_in_a_job_process_records_losses_and_registers_a_chat_able_adapter(dataset):
    job = service.start(tiny_config(name="tiny-persona"))
    process = run_job_process(job.id)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    job = ingested(job.id)
    assert job.status == "succeeded", job.error
    with session_scope() as session:
        metrics = session.exec(select(TrainingMetric).where(TrainingMetric.job_id == job.id)).all()
        entry = session.exec(select(ModelEntry).where(ModelEntry.name == "tiny-persona")).one()
    assert [m.step for m in metrics] == [1, 2, 3, 4, 5]
    assert all(m.loss is not None and m.learning_rate is not None and m.tokens_per_s for m in metrics)
    assert [m.step for m in metrics if m.val_loss is not None] == [2, 4, 5]
    assert (entry.reference, entry.backend, entry.job_id) == ("local/tiny-persona", "local", job.id)
    assert entry.metrics["examples"] == 19 and entry.metrics["train_loss"] > 0 and entry.metrics["size_bytes"] > 0
    folder = embedded.model_path("tiny-persona")
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == TINY
    assert (runfolder.run_dir(job.id) / "config.yaml").exists()
    reply = chat([{"role": "user", "content": "Hello"}], ["local/tiny-persona"], max_tokens=5)
    assert reply.model_used == "local/tiny-persona" and reply.completion_tokens > 0
    assert service.past_jobs()[0]["model"] == "local/tiny-persona"


def test_a_cancelled_training_keeps_a_checkpoint_and_resumes_from_it(dataset):
    job = service.start(tiny_config(name="resumed", epochs=4))
    process = run_job_process(job.id)
    metrics = runfolder.run_dir(job.id) / runfolder.METRICS
    deadline = time.time() + 240
    while time.time() < deadline and not (metrics.exists() and '"step": 3' in metrics.read_text()):
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)  # what the monitor does on Cancel
    assert process.wait(timeout=120) == 0
    job = ingested(job.id)
    assert job.status == "cancelled"
    checkpoints = sorted((runfolder.run_dir(job.id) / "checkpoints").glob("checkpoint-*"))
    assert checkpoints, "a cancel saves a checkpoint"
    stopped_at = int(checkpoints[-1].name.split("-")[1])
    assert 3 <= stopped_at < 20 and not embedded.model_path("resumed").exists()
    service.resume(job.id)
    process = run_job_process(job.id)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    job = ingested(job.id)
    assert job.status == "succeeded", job.error
    log = (runfolder.run_dir(job.id) / runfolder.LOG).read_text()
    assert f"resuming from checkpoint-{stopped_at}" in log
    assert (job.progress_done, job.progress_total) == (20, 20)  # 4 epochs × 5 steps, none repeated
    assert embedded.model_path("resumed").exists()


@pytest.mark.slow
def test_the_embedded_model_learns_the_data(dataset):
    config = cfg.load(
        {
            "dataset": dataset,
            "epochs": 1,
            "batch_size": 2,  # ten small steps: a curve to read at half the cost of ten steps of four
            "learning_rate": 1e-3,
            "name": "smol-tuned",
            "eval_every": 100,
            "save_every": 100,
        }
    )
    job = service.start(config)
    process = run_job_process(job.id)
    assert process.wait(timeout=600) == 0, process.stderr.read()
    job = ingested(job.id)
    with session_scope() as session:
        losses = [
            m.loss
            for m in session.exec(
                select(TrainingMetric).where(TrainingMetric.job_id == job.id).order_by(TrainingMetric.step)
            ).all()
            if m.loss is not None
        ]
    assert len(losses) == 10
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 * 0.8, losses  # the loss fell
    reply = chat([{"role": "user", "content": "Memo 3\n\nthe team needs a plan"}], ["local/smol-tuned"], max_tokens=12)
    assert reply.text.strip()


def test_dpo_trains_on_the_preference_pairs(dataset):
    job = service.start(tiny_config(method="dpo", name="tiny-dpo"))
    process = run_job_process(job.id)
    assert process.wait(timeout=300) == 0, (runfolder.run_dir(job.id) / runfolder.LOG).read_text()[-3000:]
    job = ingested(job.id)
    assert job.status == "succeeded", job.error
    assert embedded.model_path("tiny-dpo").exists()


# --- command line ---------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=600,
    )


def test_train_command_prepares_trains_and_checks_a_job(dataset, tmp_path):
    prepared = cli("train", "--dataset", dataset, "--backend", "openai", "--prepare-only")
    assert prepared.returncode == 0, prepared.stderr
    assert "billed tokens" in prepared.stderr and "cost $" in prepared.stderr
    folder = Path(prepared.stdout.strip().split(" in ")[1].split(";")[0])
    assert {p.name for p in folder.iterdir()} == {"train.jsonl", "validation.jsonl", "config.yaml"}
    config = tmp_path / "tiny.yaml"
    config.write_text(tiny_config(name="from-cli").to_yaml())
    trained = cli("train", "--config", str(config))
    assert trained.returncode == 0, trained.stderr
    assert "succeeded" in trained.stdout and "model local/from-cli" in trained.stdout
    job_id = jobs.list_jobs()[0].id
    checked = cli("train", "--check-job", str(job_id), "--json")
    assert json.loads(checked.stdout)["status"] == "succeeded"
    refused = cli(
        "train", "--dataset", dataset, "--base-model", f"local/{TINY}", "--method", "dpo", "--backend", "openai"
    )
    assert refused.returncode == 1 and "Cannot start" in refused.stderr


def test_together_presets_use_its_gentler_learning_rates():
    assert cfg.from_preset("standard", dataset="d", backend="together").learning_rate == 1e-5
    assert cfg.from_preset("standard", dataset="d").learning_rate == 2e-4
    assert cfg.from_preset("standard", dataset="d", backend="together", learning_rate=3e-5).learning_rate == 3e-5


def test_scoring_only_the_reply_on_cpu_gives_the_same_loss_as_scoring_every_position(models):
    """The studio's CPU speed-up (LM head on labelled positions only) must not change what is learned."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer import utils as trl_utils

    from pipeline.training import local

    model = AutoModelForCausalLM.from_pretrained(models / TINY)
    trl_utils.add_fused_lm_head(model)
    torch.manual_seed(0)
    ids = torch.randint(5, 1000, (2, 40))
    labels = ids.clone()
    labels[:, :25] = -100  # the prompt carries no label
    labels[1, 35:] = -100  # padding

    def loss_and_grad():
        model.zero_grad()
        out = model(input_ids=ids, labels=labels, fused_lm_head=True)
        out.loss.backward()
        return out.loss.item(), model.lm_head.weight.grad.clone()

    original = trl_utils._use_triton
    try:
        everywhere = loss_and_grad()
        local._score_completion_only()
        assert trl_utils._use_triton(torch.device("cpu"))
        compact = loss_and_grad()
    finally:
        trl_utils._use_triton, trl_utils._studio_compacts = original, False
    assert compact[0] == pytest.approx(everywhere[0], rel=1e-5)
    assert torch.allclose(compact[1], everywhere[1], atol=1e-6)


def test_sft_then_dpo_is_one_job_whose_dpo_stage_resumes_without_repeating_the_first(dataset):
    """Two stages in one job: SFT, then DPO from the SFT adapter; a cancel in the DPO stage resumes there."""
    job = service.start(tiny_config(name="tiny-sft-dpo", then_dpo=True, save_every=1))
    process = run_job_process(job.id)
    folder = runfolder.run_dir(job.id)
    deadline = time.time() + 240
    while time.time() < deadline and not (folder / "stage1" / "summary.json").exists():
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)  # Cancel, as the first stage has just ended
    assert process.wait(timeout=120) == 0
    assert ingested(job.id).status == "cancelled"

    service.resume(job.id)
    process = run_job_process(job.id)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    job = ingested(job.id)
    assert job.status == "succeeded", job.error
    log = (folder / runfolder.LOG).read_text()
    assert log.count("DPO stage: 1 preference pairs") >= 1
    assert "the SFT stage finished in an earlier attempt: going on with the DPO stage" in log
    with session_scope() as session:
        steps = [
            m.step
            for m in session.exec(select(TrainingMetric).where(TrainingMetric.job_id == job.id)).all()
            if m.loss is not None
        ]
        entry = session.exec(select(ModelEntry).where(ModelEntry.name == "tiny-sft-dpo")).one()
    assert steps == sorted(set(steps)) and steps[-1] == 6  # 5 SFT steps once, then the DPO step after them
    assert entry.metrics["stages"] == ["sft", "dpo"] and entry.metrics["preference_pairs"] == 1
    assert not (embedded.model_path("tiny-sft-dpo") / "ref").exists()  # only the trained adapter is saved
    assert chat([{"role": "user", "content": "Hello"}], ["local/tiny-sft-dpo"], max_tokens=5).text is not None


def test_a_second_dpo_stage_needs_preference_pairs_and_this_machine(dataset):
    plan = service.plan(tiny_config(then_dpo=True, backend="together", base_model=""))
    assert any("Two stages in one job run on this machine only" in p for p in plan.problems)
    assert any("DPO alone is one stage" in p for p in service.plan(tiny_config(method="dpo", then_dpo=True)).problems)


# --- best checkpoint, early stopping, the checkpoint gallery ----------------------------------------


def test_early_stopping_registers_the_best_checkpoint_and_says_why_training_stopped(dataset):
    """A rate high enough that the validation loss turns upward: training stops after the patience, and
    the registered adapter is the best checkpoint's, not the last one's. The gallery is written as it goes."""
    from safetensors.torch import load_file

    from pipeline.training import bake, gallery

    config = tiny_config(name="tiny-early", epochs=10, learning_rate=0.05, eval_every=1, early_stopping_patience=2)
    job = service.start(config.model_copy(update={"gallery_probes": 2}))
    process = run_job_process(job.id)
    folder = runfolder.run_dir(job.id)
    assert process.wait(timeout=300) == 0, (folder / runfolder.LOG).read_text()[-3000:]
    job = ingested(job.id)
    assert job.status == "succeeded", job.error
    with session_scope() as session:
        rows = session.exec(select(TrainingMetric).where(TrainingMetric.job_id == job.id)).all()
        entry = session.exec(select(ModelEntry).where(ModelEntry.name == "tiny-early")).one()
    val = {m.step: m.val_loss for m in rows if m.val_loss is not None}
    best = min(val, key=val.get)
    stop = max(val)
    assert stop < 50, "it stopped before its 10 epochs (50 steps)"
    assert sorted(val)[-2:] == [stop - 1, stop] and all(val[s] >= val[best] for s in val)
    [ended] = [m for m in rows if "best_step" in m.values]
    assert ended.step == stop and ended.values["best_step"] == best and ended.values["stopped_early"] == 1
    said = f"stopped at step {stop}: validation loss had not improved for 2 evaluations since step {best}"
    assert said in (folder / runfolder.LOG).read_text().lower()
    assert entry.metrics["best_step"] == best and entry.metrics["stop_reason"].startswith(said)
    assert entry.metrics["val_loss"] == pytest.approx(val[best], rel=1e-4)

    registered = load_file(embedded.model_path("tiny-early") / "adapter_model.safetensors")
    at_best = load_file(folder / "checkpoints" / f"checkpoint-{best}" / "adapter_model.safetensors")
    at_stop = load_file(folder / "checkpoints" / f"checkpoint-{stop}" / "adapter_model.safetensors")
    assert registered.keys() == at_best.keys()
    assert all(registered[k].equal(at_best[k]) for k in registered)
    assert not all(registered[k].equal(at_stop[k]) for k in registered)

    # the gallery: step 0 (the untrained base) and every evaluation step, two held-out probes each, scored
    records = gallery.read(folder)
    assert [r["step"] for r in records] == list(range(0, stop + 1))
    for record in records:
        assert [r["probe"] for r in record["replies"]] == [0, 1]
        assert all(isinstance(r["reply"], str) for r in record["replies"])
        assert all(-1 <= r["persona_similarity"] <= 1 and r["persona_likelihood"] < 0 for r in record["replies"])
    held_out = bake.exchanges(build.file_path(build.get_dataset(dataset), "openai", "validation"))
    assert [r["prompt"] for r in records[0]["replies"]] == [turns[-1]["content"] for turns, _ in held_out[:2]]
    scored = {m.step for m in rows if "persona_similarity" in m.values and "persona_likelihood" in m.values}
    assert scored == set(range(1, stop + 1))  # the scores reach the database through the job's reporting
    table = gallery.table(records, best)
    assert len(table) == 2 and f"step {best} (best)" in table[0] and "before training" in table[0]


def test_without_a_validation_split_the_command_says_so_and_training_keeps_the_last_weights(models):
    """Before launch, the CLI says there is nothing to stop early on; the job trains every step with no best
    checkpoint, and the gallery falls back to its fixed probes."""
    from pipeline.training import gallery

    personas.seed_samples()
    persona = personas.get_persona("collaborative")
    add_examples(persona.id, 8, status="accepted")
    build.save("no-held-out", build.preview(ExampleFilter(persona_id=persona.id, statuses=["accepted"]), 0.0))
    prepared = cli("train", "--dataset", "no-held-out", "--base-model", f"local/{TINY}", "--prepare-only")
    assert prepared.returncode == 0, prepared.stderr
    assert (
        "note: Dataset 'no-held-out' has no validation split, so there is nothing to stop early on" in prepared.stderr
    )
    job = service.start(tiny_config(dataset="no-held-out", name="tiny-no-val", gallery_probes=1))
    process = run_job_process(job.id)
    folder = runfolder.run_dir(job.id)
    assert process.wait(timeout=300) == 0, (folder / runfolder.LOG).read_text()[-3000:]
    assert ingested(job.id).status == "succeeded"
    assert "no validation split: no validation loss to stop early on" in (folder / runfolder.LOG).read_text()
    with session_scope() as session:
        entry = session.exec(select(ModelEntry).where(ModelEntry.name == "tiny-no-val")).one()
    assert entry.metrics["steps"] == 2 and "best_step" not in entry.metrics  # 8 examples, batch 4: both steps
    records = gallery.read(folder)
    assert [r["step"] for r in records] == [0, 2]
    assert records[0]["replies"][0]["prompt"] == gallery.FIXED_PROBES[0]
    assert records[0]["replies"][0]["persona_likelihood"] is None  # a fixed probe has no gold reply
