"""A run's files, as the original pipeline wrote them.

<name>.jsonl           training data: {"messages": [...]} per line (OpenAI chat format)
<name>_detailed.json   every example with its metadata: ids, title, word counts, models, tokens, cost
<name>_metadata.json   the run's parameters and statistics
Only examples that passed validation and the quality gate go into the training file; the detailed file
lists all, with the gate's reasons, and the metadata counts what each check caught.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from sqlmodel import select

from pipeline import settings
from pipeline.db import session_scope
from pipeline.generation import quality
from pipeline.generation.config import GenerationConfig
from pipeline.models import Example, Job


def exports_dir() -> Path:
    return settings.data_dir() / "exports"


def default_name(persona_name: str, job_id: int) -> str:
    return f"{re.sub(r'[^a-z0-9]+', '_', persona_name.lower()).strip('_') or 'persona'}_job{job_id}"


def safe_stem(name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).name).removesuffix(".jsonl").strip("._")
    return stem or "generation"


def write(job_id: int, config: GenerationConfig, output: Path | None, persona_name: str) -> dict[str, Path]:
    if output is None:
        output = exports_dir() / f"{safe_stem(config.name or default_name(persona_name, job_id))}.jsonl"
    output.parent.mkdir(parents=True, exist_ok=True)
    stem = output.name.removesuffix(".jsonl")
    paths = {
        "training": output,
        "detailed": output.with_name(f"{stem}_detailed.json"),
        "metadata": output.with_name(f"{stem}_metadata.json"),
    }
    with session_scope() as session:
        examples = list(session.exec(select(Example).where(Example.job_id == job_id).order_by(Example.slot)))
        job = session.get(Job, job_id)
    good = [e for e in examples if e.status not in ("failed", "generating")]
    with open(paths["training"], "w", encoding="utf-8") as handle:
        for example in (e for e in good if not e.quality_issues):
            handle.write(json.dumps({"messages": example.messages}, ensure_ascii=False) + "\n")
    detailed = [_detail(e) for e in examples]
    paths["detailed"].write_text(json.dumps(detailed, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    paths["metadata"].write_text(
        json.dumps(_metadata(job, config, examples, good), indent=2, default=str), encoding="utf-8"
    )
    return paths


def _detail(example: Example) -> dict:
    tokens = {stage: u.get("prompt_tokens", 0) + u.get("completion_tokens", 0) for stage, u in example.usage.items()}
    return {
        "id": example.id,
        "slot": example.slot,
        "document_id": f"doc_{example.job_id}_{example.slot}",
        "title": example.document_title,
        "document_type": example.document_type,
        "domain": example.scenario.get("domain"),
        "traits_stressed": example.traits_stressed,
        "situation": example.scenario.get("situation"),
        "document_words": example.document_words,
        "response_words": example.response_words,
        "models": example.stage_models,
        "tokens": tokens,
        "cost_usd": round(sum(u.get("cost_usd", 0.0) for u in example.usage.values()), 6),
        "status": example.status,
        "failure": example.failure,
        "flags": example.flags,
        "validation_issues": example.validation_issues,
        "quality_issues": example.quality_issues,
        "created_at": example.created_at,
        "messages": example.messages,
    }


def _metadata(job: Job, config: GenerationConfig, examples: list[Example], good: list[Example]) -> dict:
    usage = [u for e in examples for u in e.usage.values()]
    return {
        "job_id": job.id if job else None,
        "parameters": config.model_dump(exclude={"system_prompt"}),  # the prompt is the persona's, on record there
        "statistics": {
            "planned": config.examples,
            "generated": len(good),
            "failed": sum(e.status == "failed" for e in examples),
            "by_document_type": {t: sum(e.document_type == t for e in good) for t in config.document_types},
            "prompt_tokens": sum(u.get("prompt_tokens", 0) for u in usage),
            "completion_tokens": sum(u.get("completion_tokens", 0) for u in usage),
            "cost_usd": round(sum(u.get("cost_usd", 0.0) for u in usage), 6),
            "mean_document_words": round(sum(e.document_words for e in good) / len(good), 1) if good else 0,
            "mean_response_words": round(sum(e.response_words for e in good) / len(good), 1) if good else 0,
            "quality_gate": gate_statistics(good),
        },
        "started_at": job.started_at if job else None,
        "finished_at": job.finished_at if job else None,
    }


def gate_statistics(examples: list[Example]) -> dict:
    """How many replies the quality gate flagged, and how many each check caught."""
    return {
        "flagged": sum(bool(e.quality_issues) for e in examples),
        "by_check": quality.counts(e.quality_issues for e in examples),
    }
