"""The figures the Models page shows for each registered model: speed, footprint, cost, training, quality.

Performance is measured through the gateway on one fixed set of prompts (`PROMPTS`), so every model is
timed on the same work and the figures compare. Footprint is read from the files (safetensors headers),
never by loading weights when the headers are there. Quality comes from the evaluation
(`metrics["quality"]`, written by `pipeline.evaluation.report.update_registry`).
"""

from __future__ import annotations

import json
import math
import statistics
import struct
import threading
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func
from sqlmodel import select

from pipeline import clock
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.llm import embedded
from pipeline.models import Dataset, Example, LLMCall, ModelEntry, Persona, PromptVersion, TrainingMetric

PURPOSE = "registry-bench"
BYTES_PER_PARAMETER = 4  # local models are served in fp32 (embedded.load)
CLOUD_BACKENDS = ("together", "openai")

# Short, varied work-document questions: the same for every model, so the timings compare.
PROMPTS = (
    "Summarise this meeting note in two sentences: the launch moves to May; design needs two more weeks.",
    "Draft a polite reply declining a Friday 4 pm meeting and offering Monday morning instead.",
    "List three risks in a project plan that has no testing phase before release.",
    "Rewrite this status update to sound more confident: we might maybe finish the report soon.",
    "What questions should I ask before signing off a quarterly budget spreadsheet?",
)


def get_entry(entry_id: int) -> ModelEntry:
    with session_scope() as session:
        entry = session.get(ModelEntry, entry_id)
    if entry is None:
        raise UserFacingError(f"There is no model with id {entry_id} in the registry.")
    return entry


def local_name(entry: ModelEntry) -> str | None:
    """The local model folder's name a registry entry runs on (`local/<name>`), else None."""
    reference = entry.reference or ""
    return reference.removeprefix("local/") if reference.startswith("local/") else None


def adapter_base_folder(folder: Path) -> Path:
    """The base model folder an adapter folder names (relative names are under the models folder)."""
    base_ref = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
    return Path(base_ref) if Path(base_ref).is_absolute() else embedded.model_path(Path(base_ref).name)


# --- performance ---------------------------------------------------------------------------------


def _system_prompt(entry: ModelEntry) -> str | None:
    """A prompt-only variant is timed with its system prompt: it is part of every request it serves."""
    version = (entry.config or {}).get("prompt_version")
    if entry.backend != "prompt" or version is None or entry.persona_id is None:
        return None
    with session_scope() as session:
        row = session.exec(
            select(PromptVersion).where(PromptVersion.persona_id == entry.persona_id, PromptVersion.version == version)
        ).first()
    return row.system_prompt if row is not None and row.system_prompt else None


def _percentile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def measure_performance(entry_id: int, prompts=PROMPTS, max_tokens: int = 48) -> dict:
    """Time the model on `prompts`; the figures are returned and saved in `entry.metrics["performance"]`.

    For each prompt, two gateway calls at temperature 0 with the cache off (purpose "registry-bench"):
    a 1-token completion, whose latency stands for the time to first token (the gateway does not stream,
    so this is request, prompt processing and one token: an upper bound on the true TTFT), then a reply of
    up to `max_tokens`, timed whole. One untimed 1-token call first loads a local model. Latencies are the
    gateway's (retries included; `retried_calls` says if any) and, for local models, include the batcher's
    20 ms gathering window, as any caller sees it.

    tokens_per_s is total completion tokens over total reply seconds (prompt processing included).
    A prompt-only variant is timed with its system prompt in front.
    """
    prompts = [p for p in prompts if p and p.strip()]
    if not prompts:
        raise UserFacingError("Give at least one prompt to time the model on.")
    if max_tokens < 2:
        raise UserFacingError("Replies must be allowed at least 2 tokens to time them.")
    entry = get_entry(entry_id)
    system = _system_prompt(entry)

    from pipeline.llm import gateway  # litellm loads in seconds: only the commands that call a model pay

    def ask(prompt: str, tokens: int) -> gateway.ChatResult:
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        return gateway.chat(messages, entry.reference, max_tokens=tokens, temperature=0, cache=False, purpose=PURPOSE)

    ask(prompts[0], 1)  # warm-up: a local model loads here
    samples = []
    for prompt in prompts:
        first = ask(prompt, 1)
        reply = ask(prompt, max_tokens)
        samples.append(
            {
                "prompt": prompt,
                "ttft_ms": first.latency_ms,
                "latency_ms": reply.latency_ms,
                "completion_tokens": reply.completion_tokens,
                "retries": first.retries + reply.retries,
            }
        )
    latencies = [s["latency_ms"] for s in samples]
    total_s = sum(latencies) / 1000
    tokens = sum(s["completion_tokens"] for s in samples)
    performance = {
        "model": entry.reference,
        "tokens_per_s": round(tokens / total_s, 2) if total_s > 0 else None,
        "ttft_ms": statistics.median(s["ttft_ms"] for s in samples),
        "latency_p50_ms": round(_percentile(latencies, 50), 1),
        "latency_p95_ms": round(_percentile(latencies, 95), 1),
        "completion_tokens": tokens,
        "prompts": len(samples),
        "max_tokens": max_tokens,
        "system_prompt": bool(system),
        "retried_calls": sum(1 for s in samples if s["retries"]),
        "samples": samples,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with session_scope() as session:
        row = session.get(ModelEntry, entry_id)
        row.metrics = {**(row.metrics or {}), "performance": performance}  # a new dict: SQLAlchemy sees it
        session.add(row)
    return performance


# --- efficiency ----------------------------------------------------------------------------------


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _safetensors_parameters(path: Path) -> int:
    """Parameters in a safetensors file, from its header alone (8-byte length, then JSON)."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    return sum(math.prod(spec["shape"]) for key, spec in header.items() if key != "__metadata__")


def _folder_parameters(folder: Path) -> int | None:
    files = sorted(folder.glob("*.safetensors"))  # top level only: not merged/ or checkpoints
    return sum(_safetensors_parameters(f) for f in files) if files else None


def parameter_count(name: str) -> int:
    """A local model's parameters (an adapter: its base's plus its own), from the safetensors headers;
    a folder without safetensors files is loaded and counted instead."""
    folder = embedded.model_path(name)
    if (folder / "adapter_config.json").exists():
        base, own = _folder_parameters(adapter_base_folder(folder)), _folder_parameters(folder)
        counted = None if base is None or own is None else base + own
    else:
        counted = _folder_parameters(folder)
    if counted is not None:
        return counted
    loaded = embedded.load(name)
    return sum(p.numel() for p in loaded.model.parameters())


def cost_per_million(reference: str) -> dict | None:
    """Dollars per 1M input and output tokens: zeros for local models, None when the price is unknown."""
    if reference.startswith("local/"):
        return {"input": 0.0, "output": 0.0}  # answered without loading litellm's price list
    from pipeline.llm import catalog

    try:
        cost_in, cost_out = catalog.price(reference, 1_000_000, 0), catalog.price(reference, 0, 1_000_000)
    except UserFacingError:  # a reference the catalog cannot route
        return None
    if cost_in is None or cost_out is None:
        return None
    return {"input": round(cost_in, 6), "output": round(cost_out, 6)}


def efficiency(entry: ModelEntry) -> dict:
    """Footprint and price.

    disk_bytes: the size of the local model folder the entry runs on (an adapter: its own folder only,
    `merged/` included when training wrote it; a prompt-only variant: the base it runs on). None for cloud.
    serve_memory_bytes: an estimate of the weights in memory as the studio serves them, fp32: parameters
    (base + adapter, from the safetensors headers) x 4 bytes. The KV cache and activations are not in it.
    cost_per_million: {"input", "output"} dollars per 1M tokens; zeros for local, None when unknown.
    """
    name = local_name(entry)
    disk = memory = None
    if name is not None:
        try:
            folder = embedded.model_path(name)
        except UserFacingError:
            folder = None
        if folder is not None and folder.exists():
            disk = folder_bytes(folder)
            try:
                memory = parameter_count(name) * BYTES_PER_PARAMETER
            except Exception:  # noqa: BLE001 - a folder that no longer loads (base gone): memory unknown
                memory = None
    return {"disk_bytes": disk, "serve_memory_bytes": memory, "cost_per_million": cost_per_million(entry.reference)}


# --- training ------------------------------------------------------------------------------------


def training(entry: ModelEntry) -> dict:
    """Final losses (the last recorded value of each), examples and tokens; {} for a model not trained here."""
    if entry.job_id is None:
        return {}
    with session_scope() as session:
        rows = session.exec(
            select(TrainingMetric).where(TrainingMetric.job_id == entry.job_id).order_by(TrainingMetric.step)
        ).all()
        dataset = session.get(Dataset, entry.dataset_id) if entry.dataset_id is not None else None
    losses = [r.loss for r in rows if r.loss is not None]
    val_losses = [r.val_loss for r in rows if r.val_loss is not None]
    recorded = entry.metrics or {}
    counts = dataset.counts if dataset is not None else {}
    return {
        "job_id": entry.job_id,
        "dataset": dataset.name if dataset is not None else None,
        "train_loss": losses[-1] if losses else recorded.get("train_loss"),
        "val_loss": val_losses[-1] if val_losses else recorded.get("val_loss"),
        "steps": rows[-1].step if rows else recorded.get("steps"),
        "examples": counts.get("train", recorded.get("examples")),
        "validation_examples": counts.get("validation"),
        "tokens": counts.get("tokens"),
    }


# --- one row for the table -----------------------------------------------------------------------


def quality(entry: ModelEntry) -> tuple[str | None, dict]:
    """The evaluation figures a table shows: the `plain` prompt mode's, else the first mode's."""
    by_mode = (entry.metrics or {}).get("quality") or {}
    if not by_mode:
        return None, {}
    mode = "plain" if "plain" in by_mode else next(iter(by_mode))
    return mode, by_mode[mode] or {}


def _round(value, digits: int = 1):
    return round(value, digits) if isinstance(value, int | float) else None


def _megabytes(value: int | None):
    return round(value / 1e6, 1) if value is not None else None


def live_quality(figures: dict) -> dict:
    """The Leaderboard's own figures for the contestant the stored quality names, read now (cached).

    The stored figures are a snapshot from when the evaluation ended; votes cast later, or a minimum the
    run does not reach, change what the Leaderboard shows, and Models shows the same figure. {} without a run.
    """
    job_id, name = figures.get("evaluation_job"), figures.get("contestant")
    if job_id is None or not name:
        return {}
    from pipeline.evaluation import leaderboard  # numpy and pandas: only when a model was evaluated

    try:
        return leaderboard.board(job_id).figures_for(name)
    except UserFacingError:  # the run was deleted
        return {}


def summary(entry: ModelEntry, live: bool = False) -> dict:
    """One flat row per model for the Models table; None where a figure is not known (yet).

    live: the quality figures as the Leaderboard shows them now (`live_quality`; what the Models page
    shows), else the snapshot stored when the evaluation ended. The command line keeps the snapshot: the
    evaluation package imports the LLM gateway (litellm, seconds), which `models list` never loads.
    """
    mode, figures = quality(entry)
    live = live_quality(figures) if live else {}
    if live:
        figures = {**figures, **{k: live[k] for k in ("rating", "lower", "upper", "win_rate_vs_base")}}
    lower, upper = figures.get("lower"), figures.get("upper")
    traits = [v for v in (figures.get("trait_scores") or {}).values() if isinstance(v, int | float)]
    win = figures.get("win_rate_vs_base")
    performance = (entry.metrics or {}).get("performance") or {}
    footprint = efficiency(entry)
    cost = footprint["cost_per_million"] or {}
    trained = training(entry)
    return {
        "name": entry.name,
        "persona": _persona_name(entry.persona_id),
        "backend": entry.backend,
        "base": entry.base_model,
        "status": entry.status,
        "created": clock.local(entry.created_at),
        "rating": _round(figures.get("rating")),
        "rating ±": _round((upper - lower) / 2) if lower is not None and upper is not None else None,
        "rated as": mode,
        "win rate vs base": _round(win, 3),
        "rating (95%)": live.get("rating_text"),
        "beats base": live.get("win_text"),
        "rated from": live.get("basis"),
        "mean trait score": _round(statistics.fmean(traits), 2) if traits else None,
        "consistency": _round(figures.get("consistency"), 2),
        "gold-star rate": _round(gold_star_rate(entry), 3),
        "tokens/s": _round(performance.get("tokens_per_s")),
        "TTFT ms": _round(performance.get("ttft_ms")),
        "p50 ms": _round(performance.get("latency_p50_ms")),
        "p95 ms": _round(performance.get("latency_p95_ms")),
        "disk MB": _megabytes(footprint["disk_bytes"]),
        "memory MB": _megabytes(footprint["serve_memory_bytes"]),
        "$ in / 1M": cost.get("input"),
        "$ out / 1M": cost.get("output"),
        "train loss": _round(trained.get("train_loss"), 4),
        "val loss": _round(trained.get("val_loss"), 4),
        "examples": trained.get("examples"),
        "job": entry.job_id,
    }


# --- cached reads ------------------------------------------------------------------------------
#
# A model's row reads its folder (sizes, safetensors headers), its training metrics, its playground
# replies and the evaluation's board. The row is kept until one of those changes: the key holds the
# entry's own fields (status, metrics: a deploy or a measured performance changes them), the counts behind
# the gold-star rate, and the version of the evaluation run its quality comes from (new battles or votes).

_summaries: dict[tuple, dict] = {}
_summaries_lock = threading.Lock()


def _playground_version() -> tuple:
    with session_scope() as session:
        calls = session.exec(
            select(func.count(LLMCall.id), func.max(LLMCall.id)).where(LLMCall.purpose == "playground")
        ).one()
        starred = session.exec(
            select(func.count(Example.id), func.max(Example.id)).where(Example.source == "playground")
        ).one()
    return (*calls, *starred)


def summary_key(entry: ModelEntry, playground: tuple, boards: dict[int, tuple]) -> tuple:
    job_id = (quality(entry)[1] or {}).get("evaluation_job")
    return (entry.id, entry.name, entry.status, entry.persona_id, entry.job_id, entry.dataset_id,
            json.dumps(entry.metrics or {}, sort_keys=True, default=str), playground, boards.get(job_id))  # fmt: skip


def summaries(entries: list[ModelEntry]) -> list[dict]:
    """`summary` of each entry, read through a cache (see above); what the Models page shows."""
    from pipeline.evaluation import leaderboard

    if not leaderboard.caching():
        return [summary(entry, live=True) for entry in entries]
    playground = _playground_version()
    jobs = {(quality(e)[1] or {}).get("evaluation_job") for e in entries} - {None}
    boards = {job_id: leaderboard.version(job_id) for job_id in jobs}
    rows = []
    for entry in entries:
        key = summary_key(entry, playground, boards)
        with _summaries_lock:
            row = _summaries.get(key)
        if row is None:
            row = summary(entry, live=True)
            with _summaries_lock:
                if len(_summaries) > 500:
                    _summaries.clear()
                _summaries[key] = row
        rows.append(dict(row))
    return rows


# the Models table's first view; the rest is one click away
# (the rating and win rate as the Leaderboard words them, and what they rest on: the same cached board)
HEADLINE = ["name", "persona", "backend", "status", "rating (95%)", "beats base", "rated from", "mean trait score",
            "tokens/s", "p50 ms", "disk MB", "val loss", "created"]  # fmt: skip

# what the Models page's comparison draws, one small chart each
COMPARED = [
    ("rating", "Rating (base = 1000)"),
    ("win rate vs base", "Win rate vs base"),
    ("mean trait score", "Mean trait score (1–5)"),
    ("gold-star rate", "Playground replies starred"),
    ("tokens/s", "Tokens / s"),
    ("p50 ms", "Latency p50 (ms)"),
    ("p95 ms", "Latency p95 (ms)"),
    ("disk MB", "Size on disk (MB)"),
    ("memory MB", "Memory to serve (MB)"),
    ("$ out / 1M", "$ per 1M output tokens"),
    ("val loss", "Validation loss"),
]


def _persona_name(persona_id: int | None) -> str | None:
    if persona_id is None:
        return None
    with session_scope() as session:
        persona = session.get(Persona, persona_id)
    return persona.name if persona else None


def gold_star_rate(entry: ModelEntry) -> float | None:
    """Share of this model's playground replies that someone ★-ed (sent to Review); None before any reply."""
    with session_scope() as session:
        replies = session.exec(
            select(func.count())
            .select_from(LLMCall)
            .where(LLMCall.purpose == "playground", LLMCall.model_used == entry.reference, LLMCall.error.is_(None))
        ).one()
        if not replies:
            return None
        starred = session.exec(
            select(func.count()).select_from(Example).where(
                Example.source == "playground", Example.gold_star,
                Example.stage_models["response"].as_string() == entry.reference,
            )
        ).one()  # fmt: skip
    return min(starred / replies, 1.0)
