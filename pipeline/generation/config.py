"""What a generation run is asked to do, checked before anything starts."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator, model_validator

from pipeline import settings

DOCUMENT_TYPES = ["memo", "email", "report", "proposal", "analysis"]

# Defaults that fit the models in the run. The built-in 135M model decodes a few tokens a second on
# a laptop CPU: 6 examples of 500-1000-word documents took a user 41 minutes; these took 6.
EMBEDDED_DEFAULTS = {
    "document_words": (50, 150),
    "response_words": 60,
    "concurrency": 2,
    "min_document_words": 40,
    "min_response_words": 30,
}
HOSTED_DEFAULTS = {
    "document_words": (500, 1000),
    "response_words": 300,
    "concurrency": 4,
    "min_document_words": 100,
    "min_response_words": 50,
}
EMBEDDED_REASON = (
    "The built-in model runs on this computer's CPU, so the defaults are short (documents of 50–150 words, "
    "60-word replies, 2 in parallel) to finish in minutes; a hosted model can take longer ones."
)


def uses_embedded(chains: dict[str, list[str]] | list[list[str]]) -> bool:
    """Whether the built-in model is in any stage's chain (where it may end up answering)."""
    lists = chains.values() if isinstance(chains, dict) else chains
    return any(settings.EMBEDDED_MODEL in chain for chain in lists)


def defaults_for(chains: dict[str, list[str]] | list[list[str]]) -> dict:
    return dict(EMBEDDED_DEFAULTS if uses_embedded(chains) else HOSTED_DEFAULTS)


class GenerationConfig(BaseModel):
    persona_id: int | None = None
    system_prompt: str | None = None  # a prompt without a stored persona (command line)
    examples: int = Field(10, ge=1, le=100_000)
    name: str = ""  # output file stem; defaults to persona and job
    document_types: list[str] = Field(default_factory=lambda: list(DOCUMENT_TYPES))
    scenario_models: list[str] = Field(default_factory=lambda: [settings.EMBEDDED_MODEL])
    document_models: list[str] = Field(default_factory=lambda: [settings.EMBEDDED_MODEL])
    response_models: list[str] = Field(default_factory=lambda: [settings.EMBEDDED_MODEL])
    concurrency: int = Field(4, ge=1, le=256)
    temperature: float = Field(0.8, ge=0.0, le=2.0)
    document_words: tuple[int, int] = (500, 1000)
    response_words: int = Field(300, ge=20, le=4000)  # the length asked for
    min_document_words: int = Field(100, ge=1)
    min_response_words: int = Field(50, ge=1)
    include_system_prompt: bool = False  # in the training example; off: the model learns to carry it
    seed: int = 0
    timeout_s: float = Field(300.0, gt=0)

    @field_validator("document_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        cleaned = [v.strip().lower() for v in value if v and v.strip()]
        if not cleaned:
            raise ValueError("pick at least one document type")
        return list(dict.fromkeys(cleaned))

    @field_validator("scenario_models", "document_models", "response_models")
    @classmethod
    def _chain(cls, value: list[str]) -> list[str]:
        cleaned = [v.strip() for v in value if v and v.strip()]
        if not cleaned:
            raise ValueError("give each stage at least one model")
        return cleaned

    @model_validator(mode="after")
    def _who(self) -> GenerationConfig:
        if self.persona_id is None and not (self.system_prompt or "").strip():
            raise ValueError("pick a persona, or give a system prompt")
        low, high = self.document_words
        if not 0 < low <= high:
            raise ValueError("document length: the shortest must be positive and no longer than the longest")
        return self

    def chains(self) -> dict[str, list[str]]:
        return {"scenario": self.scenario_models, "document": self.document_models, "response": self.response_models}


def load(params: dict) -> GenerationConfig:
    """A config from page or command-line values; a bad value is explained, not a traceback."""
    from pydantic import ValidationError

    from pipeline.errors import UserFacingError

    try:
        return GenerationConfig(**params)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise UserFacingError(f"Check the generation settings: {problems}.") from None
