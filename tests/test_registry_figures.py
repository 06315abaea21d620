"""The Models page's figures: speed through the gateway, footprint from the files, cost, training, one row.

A real LoRA adapter is built on the tiny test model and registered as training registers one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.llm import embedded
from pipeline.models import Dataset, Job, LLMCall, ModelEntry, Persona, PromptVersion, TrainingMetric
from pipeline.registry import figures
from tests.tiny_model import TINY, make_tiny_model

ADAPTER = "tiny-persona"
CONFIG = {"backend": "local", "dataset": "collab-train", "base_model": f"local/{TINY}", "epochs": 2, "lora_r": 4,
          "lora_alpha": 8, "learning_rate": 0.0002, "target_modules": ["q_proj", "v_proj"]}  # fmt: skip


def make_adapter(name: str = ADAPTER, r: int = 4) -> Path:
    """A LoRA adapter on the tiny model, saved as training saves one (base named relative to the models folder).

    Its weights are random (not a no-op), so merged and unmerged outputs differ from the base's."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_folder = make_tiny_model()
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(base_folder, dtype=torch.float32)
    lora = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(base, lora)
    folder = embedded.model_path(name)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base_folder).save_pretrained(folder)
    config_file = folder / "adapter_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "base_model_name_or_path": TINY}))
    return folder


def register_adapter(name: str = ADAPTER, metrics: dict | None = None, dataset: str = "collab-train") -> ModelEntry:
    """The entry training would write, with its job, dataset and training curve."""
    with session_scope() as session:
        job = Job(kind="train_local", status="succeeded")
        dataset = Dataset(name=dataset, counts={"train": 19, "validation": 5, "tokens": 4321})
        session.add_all([job, dataset])
        session.flush()
        curve = [(1, 2.5, None), (2, 2.1, 2.3), (3, 1.8, None), (4, 1.6, 1.9), (5, None, 1.85)]
        session.add_all(TrainingMetric(job_id=job.id, step=s, loss=loss, val_loss=val) for s, loss, val in curve)
        entry = ModelEntry(name=name, reference=f"local/{name}", base_model=f"local/{TINY}", backend="local",
                           job_id=job.id, dataset_id=dataset.id, config=CONFIG, metrics=metrics or {})  # fmt: skip
        session.add(entry)
        session.flush()
        session.refresh(entry)
        return entry


def add_entry(**values) -> ModelEntry:
    with session_scope() as session:
        entry = ModelEntry(**values)
        session.add(entry)
        session.flush()
        session.refresh(entry)
        return entry


@pytest.fixture
def adapter(models) -> ModelEntry:
    make_adapter()
    return register_adapter()


def test_performance_is_measured_on_the_fixed_prompts_and_saved(adapter):
    performance = figures.measure_performance(adapter.id)
    assert performance["prompts"] == len(figures.PROMPTS) == 5 and performance["max_tokens"] == 48
    assert performance["tokens_per_s"] > 0 and performance["completion_tokens"] > len(figures.PROMPTS)
    assert performance["latency_p95_ms"] >= performance["latency_p50_ms"] > 0
    assert performance["ttft_ms"] < performance["latency_p50_ms"]  # 1 token vs up to 48
    assert performance["measured_at"].startswith("20") and len(performance["samples"]) == 5
    saved = figures.get_entry(adapter.id).metrics
    assert saved["performance"] == performance
    with session_scope() as session:
        calls = session.query(LLMCall).filter(LLMCall.purpose == figures.PURPOSE).all()
    assert len(calls) == 1 + 2 * 5 and not any(c.cached for c in calls)  # warm-up, then 1-token + full per prompt
    figures.measure_performance(adapter.id, prompts=figures.PROMPTS[:1], max_tokens=4)  # a rerun replaces it
    assert figures.get_entry(adapter.id).metrics["performance"]["max_tokens"] == 4
    with pytest.raises(UserFacingError, match="at least one prompt"):
        figures.measure_performance(adapter.id, prompts=["  "])


def test_performance_of_the_embedded_model(models):
    entry = add_entry(name=embedded.EMBEDDED_NAME, reference=f"local/{embedded.EMBEDDED_NAME}",
                      base_model=embedded.EMBEDDED_NAME, backend="embedded", metrics={"quality": {}})  # fmt: skip
    performance = figures.measure_performance(entry.id, prompts=figures.PROMPTS[:2], max_tokens=8)
    assert performance["tokens_per_s"] > 0 and performance["ttft_ms"] < performance["latency_p50_ms"]
    assert performance["latency_p95_ms"] >= performance["latency_p50_ms"]
    assert figures.get_entry(entry.id).metrics == {"quality": {}, "performance": performance}


def test_efficiency_reads_the_files_and_prices(adapter, models):
    import torch
    from transformers import AutoModelForCausalLM

    folder = embedded.model_path(ADAPTER)
    figures_ = figures.efficiency(adapter)
    assert figures_["disk_bytes"] == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert figures_["cost_per_million"] == {"input": 0.0, "output": 0.0}
    # the header count matches the parameters of the model as loaded: base + adapter, fp32
    loaded = embedded.load(ADAPTER).model
    assert figures_["serve_memory_bytes"] == sum(p.numel() for p in loaded.parameters()) * 4
    base = AutoModelForCausalLM.from_pretrained(models / TINY, dtype=torch.float32)
    assert figures_["serve_memory_bytes"] > sum(p.numel() for p in base.parameters()) * 4

    cloud = add_entry(name="gpt-persona", reference="openai/gpt-4o-mini", backend="openai")
    priced = figures.efficiency(cloud)
    assert priced["disk_bytes"] is None and priced["serve_memory_bytes"] is None
    assert priced["cost_per_million"]["input"] > 0 and priced["cost_per_million"]["output"] > 0
    unknown = add_entry(name="mystery", reference="together_ai/someone/unlisted-model-xyz", backend="together")
    assert figures.efficiency(unknown)["cost_per_million"] is None


def test_training_figures_come_from_the_jobs_metrics(adapter):
    trained = figures.training(adapter)
    assert trained["train_loss"] == 1.6 and trained["val_loss"] == 1.85  # the last non-null of each
    assert (trained["examples"], trained["tokens"], trained["job_id"], trained["steps"]) == (
        19,
        4321,
        adapter.job_id,
        5,
    )
    base = add_entry(name="base", reference=f"local/{TINY}", base_model=TINY, backend="embedded")
    assert figures.training(base) == {}


def test_summary_is_one_flat_row(adapter):
    quality = {
        "prompt": {"rating": 1010.0, "lower": 990.0, "upper": 1030.0, "win_rate_vs_base": 0.51},
        "plain": {"rating": 1050.0, "lower": 1020.0, "upper": 1090.0, "win_rate_vs_base": 0.57,
                  "trait_scores": {"warm": 4.0, "curious": 3.0}, "consistency": 0.5},
    }  # fmt: skip
    with session_scope() as session:
        row = session.get(ModelEntry, adapter.id)
        row.metrics = {**row.metrics, "quality": quality}
        session.add(row)
    figures.measure_performance(adapter.id, prompts=figures.PROMPTS[:2], max_tokens=6)
    row = figures.summary(figures.get_entry(adapter.id))
    assert all(not isinstance(v, dict | list) for v in row.values())
    assert (row["name"], row["backend"], row["base"], row["status"]) == (ADAPTER, "local", f"local/{TINY}", "candidate")
    assert (row["rating"], row["rating ±"], row["rated as"], row["win rate vs base"]) == (1050.0, 35.0, "plain", 0.57)
    assert (row["mean trait score"], row["consistency"]) == (3.5, 0.5)
    assert row["tokens/s"] > 0 and row["p95 ms"] >= row["p50 ms"] > row["TTFT ms"]
    assert row["disk MB"] > 0 and row["memory MB"] > row["disk MB"] and row["$ in / 1M"] == 0.0
    assert (row["train loss"], row["val loss"], row["examples"]) == (1.6, 1.85, 19)
    # no evaluation, no measurement, a cloud model: the row still forms, with blanks
    cloud = figures.summary(add_entry(name="ft", reference="openai/gpt-4o-mini", backend="openai"))
    assert cloud["rating"] is None and cloud["tokens/s"] is None and cloud["disk MB"] is None
    assert cloud["$ out / 1M"] > 0 and set(cloud) == set(row)


def test_a_prompt_only_variant_is_timed_with_its_system_prompt_on_its_base(models):
    with session_scope() as session:
        persona = Persona(name="warm")
        session.add(persona)
        session.flush()
        session.add(PromptVersion(persona_id=persona.id, version=2, system_prompt="You are warm and brief. " * 20))
        persona_id = persona.id
    variant = add_entry(
        name="warm-prompt-v2-tiny",
        reference=f"local/{TINY}",
        base_model=f"local/{TINY}",
        backend="prompt",
        persona_id=persona_id,
        config={"prompt_version": 2, "few_shot": False},
    )
    performance = figures.measure_performance(variant.id, prompts=figures.PROMPTS[:1], max_tokens=4)
    assert performance["system_prompt"] is True and performance["tokens_per_s"] > 0
    with session_scope() as session:
        call = session.query(LLMCall).filter(LLMCall.purpose == figures.PURPOSE).order_by(LLMCall.id.desc()).first()
    assert call.prompt_tokens > 100  # the system prompt went with the request
    assert figures.efficiency(variant)["disk_bytes"] == figures.folder_bytes(models / TINY)
