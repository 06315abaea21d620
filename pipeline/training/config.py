"""TrainingConfig: what a fine-tuning run is asked to do, validated, saved as YAML in its run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline import settings
from pipeline.errors import UserFacingError

Backend = Literal["local", "together", "openai"]

# quick: see the loop work; standard: a first real model; thorough: more passes, gentler rate
PRESETS = {
    "quick": {"epochs": 1, "learning_rate": 2e-4, "lora_r": 8, "lora_alpha": 16},
    "standard": {"epochs": 3, "learning_rate": 2e-4, "lora_r": 16, "lora_alpha": 32},
    "thorough": {"epochs": 5, "learning_rate": 1e-4, "lora_r": 32, "lora_alpha": 64},
}
DEFAULT_BASE = {
    "local": settings.EMBEDDED_MODEL,
    "together": "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
    "openai": "gpt-4o-mini-2024-07-18",
}


class TrainingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Backend = "local"
    method: Literal["sft", "dpo", "bake"] = "sft"
    dataset: str  # a saved dataset's name
    base_model: str = ""  # empty: the backend's default
    name: str = ""  # the new model's name; empty: made from the dataset and job
    epochs: int = Field(3, ge=1, le=50)
    learning_rate: float = Field(2e-4, gt=0, le=1)
    batch_size: int = Field(4, ge=1, le=256)
    gradient_accumulation: int = Field(1, ge=1, le=256)
    max_seq_length: int = Field(1024, ge=32, le=131072)
    lora_r: int = Field(16, ge=1, le=512)
    lora_alpha: int = Field(32, ge=1, le=1024)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    qlora: bool = False  # 4-bit base weights: CUDA only
    seed: int = 42
    suffix: str = "persona"
    eval_every: int = Field(10, ge=1)  # steps between validation-loss checks
    save_every: int = Field(20, ge=1)  # steps between checkpoints (with early stopping: every evaluation)
    # evaluations without a better validation loss before training stops and the best checkpoint becomes
    # the model (local, with a validation split); 0: off, train every epoch and keep the last weights
    early_stopping_patience: int = Field(3, ge=0, le=100)
    # the checkpoint gallery (local): probe prompts answered without the system prompt at every evaluation
    gallery_probes: int = Field(3, ge=0, le=8)  # 0: off
    gallery_max_tokens: int = Field(48, ge=8, le=256)  # per reply, greedy
    merge: bool = False  # also write merged weights (local)
    dpo_beta: float = Field(0.1, gt=0)
    # local SFT or bake: then DPO on the dataset's preference pairs, as a second stage of the same job
    then_dpo: bool = False
    # bake (local only): the teacher's top-K per reply token, whose replies, how long, and an optional SFT mix
    bake_top_k: int = Field(32, ge=1, le=1024)
    # whose replies the KL is taken on: the prompted teacher's, the dataset's, or the student's own (on-policy)
    bake_replies: Literal["teacher", "dataset", "student"] = "teacher"
    bake_max_reply_tokens: int = Field(96, ge=8, le=2048)
    bake_sft_weight: float = Field(0.0, ge=0, le=10)
    # bake needs no gold replies: more prompts to bake on, besides the dataset's own
    bake_prompts: list[str] = Field(default_factory=list, max_length=5000)
    bake_failed_documents: bool = False  # the documents of the persona's examples whose reply failed
    hyperparameters_auto: bool = False  # OpenAI: let the provider choose epochs and rate

    def resolved_base(self) -> str:
        return self.base_model or DEFAULT_BASE[self.backend]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def load(data: dict) -> TrainingConfig:
    try:
        return TrainingConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'config'}: {e['msg']}" for e in exc.errors())
        raise UserFacingError(f"The training settings are not valid: {problems}") from None


# Together's hosted LoRA runs take much smaller rates (the original pipeline used 1e-5)
TOGETHER_RATES = {"quick": 1e-5, "standard": 1e-5, "thorough": 5e-6}


def preset_values(preset: str, backend: str = "local") -> dict:
    if preset not in PRESETS:
        raise UserFacingError(f"Unknown preset {preset!r}; choose {', '.join(PRESETS)}.")
    values = dict(PRESETS[preset])
    if backend == "together":
        values["learning_rate"] = TOGETHER_RATES[preset]
    return values


def from_preset(preset: str, **values) -> TrainingConfig:
    base = preset_values(preset, values.get("backend") or "local")
    return load({**base, **{k: v for k, v in values.items() if v is not None}})


def load_file(path: Path, **overrides) -> TrainingConfig:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserFacingError(f"Cannot read {path.name}: {exc}") from None
    if not isinstance(data, dict):
        raise UserFacingError(f"{path.name} must be a mapping of settings.")
    return load({**data, **{k: v for k, v in overrides.items() if v is not None}})
