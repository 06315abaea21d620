"""OpenAI fine-tuning through the `openai` SDK, as the `train_openai` job kind.

Supervised jobs with the studio's epochs and batch size (or "auto" for everything); OpenAI takes a
learning-rate *multiplier*, not a rate, so that one is left to "auto". Metric events feed the loss
curve while it runs; the result file's CSV gives the final curve. The fine-tuned model goes in the
registry as `openai/<id>`.
"""

from __future__ import annotations

import csv
import io

from pipeline import settings
from pipeline.datasets import build
from pipeline.errors import UserFacingError
from pipeline.jobs.context import JobContext
from pipeline.models import Dataset
from pipeline.training import cloud
from pipeline.training.config import TrainingConfig

STATUS = {"validating_files": "running", "queued": "running", "running": "running", "succeeded": "succeeded",
          "failed": "failed", "cancelled": "cancelled"}  # fmt: skip


def run(ctx: JobContext, params: dict) -> None:
    cloud.run(ctx, params, OpenAIBackend())


class OpenAIBackend(cloud.CloudBackend):
    name = "openai"
    litellm_prefix = "openai"

    def __init__(self):
        import openai

        key = settings.get_secret("OPENAI_API_KEY")
        if not key:
            raise UserFacingError("OpenAI fine-tuning needs OPENAI_API_KEY (environment or .streamlit/secrets.toml).")
        self._openai = openai
        self.client = openai.OpenAI(api_key=key, max_retries=3)  # OPENAI_BASE_URL is honoured by the SDK

    def _call(self, what: str, fn, *args, **kwargs):
        """The SDK call, with the provider's own words on failure (never the key)."""
        try:
            return fn(*args, **kwargs)
        except self._openai.AuthenticationError:
            raise UserFacingError(f"OpenAI refused the API key while trying to {what}; check OPENAI_API_KEY.") from None
        except self._openai.APIStatusError as exc:
            message = (exc.body or {}).get("message") if isinstance(exc.body, dict) else None
            raise UserFacingError(
                f"OpenAI could not {what} ({exc.status_code}): {settings.redact(message or str(exc))}"
            ) from None
        except self._openai.APIConnectionError as exc:
            raise UserFacingError(f"Could not reach OpenAI to {what}: {exc}") from None

    def upload(self, dataset: Dataset, config: TrainingConfig) -> dict:
        files = {}
        for part in ("train", "validation"):
            path = build.file_path(dataset, "openai", part)
            if part == "validation" and not path.read_text().strip():
                continue
            with path.open("rb") as handle:
                uploaded = self._call(
                    f"upload the {part} file",
                    self.client.files.create,
                    file=(f"{dataset.name}.{part}.jsonl", handle),
                    purpose="fine-tune",
                )
            files[f"{part}_file"] = uploaded.id
        return files

    def create(self, config: TrainingConfig, files: dict, name: str) -> str:
        hyper = {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}
        if not config.hyperparameters_auto:
            hyper |= {"n_epochs": config.epochs, "batch_size": config.batch_size}
        job = self._call(
            "start the fine-tuning job",
            self.client.fine_tuning.jobs.create,
            model=config.resolved_base(),
            training_file=files["train_file"],
            validation_file=files.get("validation_file") or self._openai.omit,
            suffix=config.suffix[:64] or self._openai.omit,
            seed=config.seed,
            method={"type": "supervised", "supervised": {"hyperparameters": hyper}},
        )
        return job.id

    def poll(self, job_id: str, seen: set[str]) -> cloud.Remote:
        job = self._call("read the job's status", self.client.fine_tuning.jobs.retrieve, job_id)
        events = self._call("read the job's events", self.client.fine_tuning.jobs.list_events, job_id, limit=100)
        fresh = [e for e in reversed(events.data) if e.id not in seen]  # oldest first
        seen.update(e.id for e in fresh)
        metrics = [
            {"step": e.data["step"], "loss": e.data.get("train_loss"), "val_loss": e.data.get("valid_loss"),
             "total_steps": e.data.get("total_steps")}
            for e in fresh if e.type == "metrics" and isinstance(e.data, dict) and "step" in e.data
        ]  # fmt: skip
        metrics = [{k: v for k, v in m.items() if v is not None} for m in metrics]
        error = job.error.message if job.error and job.error.message else None
        return cloud.Remote(
            status=STATUS.get(job.status, "running"),
            provider_status=job.status,
            model=job.fine_tuned_model,
            error=error,
            trained_tokens=job.trained_tokens,
            metrics=metrics,
            messages=[e.message for e in fresh if e.type != "metrics"],
        )

    def cancel(self, job_id: str) -> None:
        self._call("cancel the job", self.client.fine_tuning.jobs.cancel, job_id)

    def final_metrics(self, job_id: str) -> list[dict]:
        job = self._call("read the job's status", self.client.fine_tuning.jobs.retrieve, job_id)
        if not job.result_files:
            return []
        content = self._call("read the result file", self.client.files.content, job.result_files[0])
        rows = csv.DictReader(io.StringIO(content.text))
        out = []
        for row in rows:
            record = {"step": int(row["step"])}
            if row.get("train_loss"):
                record["loss"] = float(row["train_loss"])
            if row.get("valid_loss"):
                record["val_loss"] = float(row["valid_loss"])
            out.append(record)
        return out
