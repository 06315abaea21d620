"""Together fine-tuning through the `together` SDK, as the `train_together` job kind (as the original
pipeline used it): a LoRA job with the studio's epochs, rate, rank, alpha, dropout and batch size.

The SDK checks the file before uploading it and reads the base model's limits; Together's own
price estimate is logged (and a job over the account's limit refused) before the job is created;
events give progress and the metrics endpoint gives the loss curve. The result is
registered as `together_ai/<output name>`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from pipeline import settings
from pipeline.datasets import build
from pipeline.errors import UserFacingError
from pipeline.jobs.context import JobContext
from pipeline.models import Dataset
from pipeline.training import cloud
from pipeline.training.config import TrainingConfig

STATUS = {"pending": "running", "queued": "running", "running": "running", "compressing": "running",
          "uploading": "running", "cancel_requested": "running", "cancelled": "cancelled", "error": "failed",
          "completed": "succeeded"}  # fmt: skip


def run(ctx: JobContext, params: dict) -> None:
    cloud.run(ctx, params, TogetherBackend(ctx))


class TogetherBackend(cloud.CloudBackend):
    name = "together"
    litellm_prefix = "together_ai"

    def __init__(self, ctx: JobContext | None = None):
        import together

        key = settings.get_secret("TOGETHER_API_KEY")
        if not key:
            raise UserFacingError(
                "Together fine-tuning needs TOGETHER_API_KEY (environment or .streamlit/secrets.toml)."
            )
        self._together = together
        self.ctx = ctx
        self.client = together.Together(api_key=key, max_retries=3)  # TOGETHER_BASE_URL is honoured by the SDK

    def _call(self, what: str, fn, *args, **kwargs):
        together = self._together
        try:
            return fn(*args, **kwargs)
        except together.AuthenticationError:
            raise UserFacingError(
                f"Together refused the API key while trying to {what}; check TOGETHER_API_KEY."
            ) from None
        except together.APIStatusError as exc:
            body = exc.body if isinstance(exc.body, dict) else {}
            message = (body.get("error") or {}).get("message") if isinstance(body.get("error"), dict) else None
            message = message or body.get("message") or str(exc)
            raise UserFacingError(
                f"Together could not {what} ({exc.status_code}): {settings.redact(message)}"
            ) from None
        except together.APIConnectionError as exc:
            raise UserFacingError(f"Could not reach Together to {what}: {exc}") from None
        except ValueError as exc:  # the SDK's own checks of the file and the settings
            raise UserFacingError(f"Together's checks refused the job ({what}): {exc}") from None

    def upload(self, dataset: Dataset, config: TrainingConfig) -> dict:
        files = {}
        if config.method == "dpo":
            parts = {"train": _preference_file(build.file_path(dataset, "dpo"))}
        else:
            parts = {part: build.file_path(dataset, "openai", part) for part in ("train", "validation")}
        for part, path in parts.items():
            if not path.read_text().strip():
                continue
            uploaded = self._call(f"upload the {part} file", self.client.files.upload, path, purpose="fine-tune",
                                  check=True)  # fmt: skip
            files[f"{part}_file"] = uploaded.id
        return files

    def create(self, config: TrainingConfig, files: dict, name: str) -> str:
        options = {
            "training_file": files["train_file"],
            "model": config.resolved_base(),
            "n_epochs": config.epochs,
            "learning_rate": config.learning_rate,
            "lora": True,
            "lora_r": config.lora_r,
            "lora_alpha": config.lora_alpha,
            "lora_dropout": config.lora_dropout,
            "suffix": config.suffix[:40] or None,
            "random_seed": config.seed,
            "training_method": config.method,
        }
        if files.get("validation_file"):
            options |= {"validation_file": files["validation_file"], "n_evals": max(1, config.epochs)}
        if config.method == "dpo":
            options["dpo_beta"] = config.dpo_beta
        self._check_price(options)
        job = self._call("start the fine-tuning job", self.client.fine_tuning.create, **options)
        return job.id

    def _check_price(self, options: dict) -> None:
        """Together's own estimate for these files and settings, logged before the job exists (and costs)."""
        asked = {k: options[k] for k in ("training_file", "model", "n_epochs", "validation_file", "n_evals")
                 if options.get(k) is not None}  # fmt: skip
        asked["training_method"] = {"method": options["training_method"]}
        estimate = self._call("estimate the price", self.client.fine_tuning.estimate_price, **asked)
        if not getattr(estimate, "estimation_available", False):
            reason = getattr(estimate, "unavailable_reason", "unknown").replace("_", " ")
            self._say(f"Together gave no price estimate ({reason})")
            return
        price = estimate.estimated_total_price or 0.0
        tokens = int(estimate.estimated_train_token_count or 0)
        if estimate.allowed_to_proceed is False:
            raise UserFacingError(
                f"Together estimates this job at ${price:,.2f}, more than your account allows "
                f"(limit ${estimate.user_limit or 0:,.2f}); nothing was started."
            )
        self._say(f"Together estimates ${price:,.2f} for {tokens:,} training tokens")

    def _say(self, message: str) -> None:
        if self.ctx is not None:
            self.ctx.log(message)
            self.ctx.report_progress(0, 0, unit="steps", message=message)

    def poll(self, job_id: str, seen: set[str]) -> cloud.Remote:
        job = self._call("read the job's status", self.client.fine_tuning.retrieve, job_id)
        events = self._call("read the job's events", self.client.fine_tuning.list_events, job_id).data
        fresh = []
        for event in events:
            key = f"{event.created_at}|{event.type}|{event.message}"
            if key not in seen:
                seen.add(key)
                fresh.append(event)
        metrics = self._metrics(job_id, seen)
        steps = [e for e in fresh if e.step is not None]
        if steps and not metrics:  # progress even before the metrics endpoint has values
            metrics = [{"step": steps[-1].step, "total_steps": steps[-1].total_steps}]
        elif metrics and steps:
            metrics[-1]["total_steps"] = steps[-1].total_steps
        errors = [e.message for e in events if e.type == "job_error"]
        return cloud.Remote(
            status=STATUS.get(job.status, "running"),
            provider_status=job.status,
            model=job.x_model_output_name,
            error=errors[-1] if errors else None,
            trained_tokens=job.token_count,
            metrics=metrics,
            messages=[e.message for e in fresh],
        )

    def _metrics(self, job_id: str, seen: set[str]) -> list[dict]:
        rows = self._call("read the job's metrics", self.client.fine_tuning.list_metrics, job_id).metrics or []
        by_step: dict[int, dict] = {}
        for row in rows:
            step = int(row.get("global_step", row.get("step", 0)))
            record = by_step.setdefault(step, {"step": step})
            for key, value in row.items():
                if key.endswith("loss"):
                    record["val_loss" if key.startswith(("eval", "valid")) else "loss"] = value
                elif key.endswith("learning_rate"):
                    record["learning_rate"] = value
        out = []
        for step in sorted(by_step):
            key = f"metric|{step}|{json.dumps(by_step[step], sort_keys=True)}"
            if key not in seen:
                seen.add(key)
                out.append(by_step[step])
        return out

    def cancel(self, job_id: str) -> None:
        self._call("cancel the job", self.client.fine_tuning.cancel, job_id)


def _preference_file(path: Path) -> Path:
    """Together's preference format (input / preferred_output / non_preferred_output) from the DPO pairs."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = Path(tempfile.mkdtemp(prefix="studio-dpo-")) / "preferences.jsonl"
    out.write_text(
        "".join(
            json.dumps({
                "input": {"messages": [{"role": "user", "content": r["prompt"]}]},
                "preferred_output": [{"role": "assistant", "content": r["chosen"]}],
                "non_preferred_output": [{"role": "assistant", "content": r["rejected"]}],
            }) + "\n"
            for r in rows
        ),
        encoding="utf-8",
    )  # fmt: skip
    return out
