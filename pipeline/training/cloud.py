"""The lifecycle every cloud backend shares, run as a job: upload, create, poll, cancel, register.

The provider's job id and state go into fine_tuning_job_info.json in the run folder (as the
original pipeline wrote it), so a restarted job keeps following the same provider job instead of
starting (and paying for) another. Metrics from the provider's events feed the loss curve.
"""

from __future__ import annotations

import json
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from pipeline.datasets import build
from pipeline.errors import UserFacingError
from pipeline.jobs.context import JobContext
from pipeline.models import Dataset
from pipeline.training import early_stop, registry
from pipeline.training.config import TrainingConfig, load

INFO = "fine_tuning_job_info.json"


@dataclass
class Remote:
    """One look at the provider's job."""

    status: str  # running | succeeded | failed | cancelled (mapped from the provider's words)
    provider_status: str
    model: str | None = None  # the fine-tuned model's id, when succeeded
    error: str | None = None
    trained_tokens: int | None = None
    metrics: list[dict] = field(default_factory=list)  # new ones: {"step", "loss", "val_loss", ...}
    messages: list[str] = field(default_factory=list)  # new events, in order


class CloudBackend(ABC):
    name: str
    litellm_prefix: str  # the registered model is f"{prefix}/{model id}"

    @abstractmethod
    def upload(self, dataset: Dataset, config: TrainingConfig) -> dict: ...

    @abstractmethod
    def create(self, config: TrainingConfig, files: dict, name: str) -> str: ...

    @abstractmethod
    def poll(self, job_id: str, seen: set[str]) -> Remote: ...

    @abstractmethod
    def cancel(self, job_id: str) -> None: ...

    def final_metrics(self, job_id: str) -> list[dict]:
        return []


def poll_seconds() -> float:
    return float(os.environ.get("STUDIO_CLOUD_POLL_S", "15"))


def run(ctx: JobContext, params: dict, backend: CloudBackend) -> None:
    config = load(params["config"])
    dataset = build.get_dataset(config.dataset)
    (ctx.folder / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
    info_path = ctx.folder / INFO
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    if info.get("status") in ("succeeded", "failed", "cancelled") and info.get("job_id"):
        info = {}  # a finished provider job is not resumed: start a new one
    if not info.get("job_id"):
        ctx.report_progress(0, 0, unit="steps", message=f"uploading to {backend.name}")
        files = backend.upload(dataset, config)
        ctx.log(f"uploaded {', '.join(f'{k}={v}' for k, v in files.items() if v)}")
        job_id = backend.create(config, files, config.name or f"{dataset.name}")
        info = {"job_id": job_id, "backend": backend.name, "files": files, "model": config.resolved_base(),
                "created_at": time.time(), "status": "running"}  # fmt: skip
        info_path.write_text(json.dumps(info, indent=2))
        ctx.log(f"created {backend.name} job {job_id}")
    else:
        ctx.log(f"following {backend.name} job {info['job_id']} again")
    seen: set[str] = set()
    total = 0
    validation: list[tuple[int, float]] = []  # the provider's validation losses: a warning when they rise
    warned = False
    while True:
        remote = backend.poll(info["job_id"], seen)
        for message in remote.messages:
            ctx.log(f"{backend.name}: {message}")
        for metric in remote.metrics:
            step = int(metric.pop("step"))
            total = max(total, int(metric.pop("total_steps", 0) or 0))
            ctx.log_metric(step, **metric)
            if metric.get("val_loss") is not None:
                validation = sorted({**dict(validation), step: float(metric["val_loss"])}.items())
                rising = early_stop.rising(validation, config.method)
                if rising and not warned:
                    ctx.log(f"warning: {rising}")
                warned = warned or bool(rising)
            ctx.report_progress(step, total or None, unit="steps", message=f"{remote.provider_status}")
        if remote.status != "running":
            break
        if ctx.cancelled():
            backend.cancel(info["job_id"])
            ctx.log(f"asked {backend.name} to cancel job {info['job_id']}")
            remote.status = "cancelled"
            break
        _sleep(ctx, poll_seconds())
    info.update(status=remote.status, provider_status=remote.provider_status, fine_tuned_model=remote.model,
                error=remote.error, trained_tokens=remote.trained_tokens)  # fmt: skip
    info_path.write_text(json.dumps(info, indent=2))
    if remote.status == "failed":
        raise UserFacingError(f"{backend.name} ended the job: {remote.error or remote.provider_status}")
    if remote.status != "succeeded":
        return
    final = backend.final_metrics(info["job_id"])
    for metric in final:
        ctx.log_metric(int(metric.pop("step")), **metric)
    last = _last_losses(ctx)
    entry = registry.register(
        name=config.name or _model_name(remote.model),
        reference=f"{backend.litellm_prefix}/{remote.model}",
        backend=backend.name,
        config=config,
        dataset=dataset,
        job_id=ctx.job_id,
        metrics={**last, "trained_tokens": remote.trained_tokens, "provider_job": info["job_id"]},
    )
    ctx.log(f"registered {entry.reference}")
    from pipeline.registry import retrain

    retrain.after_training(ctx.job_id, entry, ctx.log)  # a retrain queues its evaluation; others: nothing


def _sleep(ctx: JobContext, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not ctx.cancelled():
        time.sleep(min(0.2, seconds))


def _model_name(model_id: str) -> str:
    return model_id.replace("/", "-").replace(":", "-")[:64]


def _last_losses(ctx: JobContext) -> dict:
    from pipeline.jobs import runfolder

    loss = val = None
    path = ctx.folder / runfolder.METRICS
    for line in path.read_text().splitlines() if path.exists() else []:
        record = json.loads(line)
        loss = record.get("loss", loss)
        val = record.get("val_loss", val)
    return {"train_loss": loss, "val_loss": val}
