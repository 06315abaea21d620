"""Run again with changes, sweeps and saved settings: what the Experiments page and the command line call.

A past training or generation job holds its whole config in its params (training: `{"config": ...}`;
generation: the config's fields). A rerun starts from that config, applies the edits, shows only what
changed, and launches a new job. A sweep is a grid over one or two settings of a training config,
queued as separate jobs that share a sweep id (`params["sweep"]`): the monitor starts one run of a
sweep at a time (pipeline/jobs/monitor.py). Saved settings are YAML files in data/configs/.
"""

from __future__ import annotations

import itertools
import re
import secrets
import types
import typing
from dataclasses import dataclass, field

import yaml
from pydantic import BaseModel

from pipeline import access, jobs, settings
from pipeline.errors import UserFacingError
from pipeline.models import Job
from pipeline.training.config import TrainingConfig, load

MAX_SWEEP_RUNS = 12
MAX_SWEEP_SETTINGS = 2
TRAINING_KINDS = ("train_local", "train_together", "train_openai")
# settings a sweep may vary: numbers and choices that change how a run learns, not where its data is
SWEEPABLE = (
    "learning_rate",
    "epochs",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "batch_size",
    "gradient_accumulation",
    "max_seq_length",
    "seed",
    "method",
    "dpo_beta",
    "bake_sft_weight",
    "bake_top_k",
    "base_model",
)


# --- where a config comes from --------------------------------------------------------------------


@dataclass
class Source:
    kind: str  # "training" or "generation"
    config: dict  # the whole config, as JSON values
    label: str
    job_id: int | None = None

    @property
    def model(self) -> type[BaseModel]:
        return TrainingConfig if self.kind == "training" else _generation_config()


def _generation_config():
    from pipeline.generation.config import GenerationConfig

    return GenerationConfig


def from_job(job_id: int) -> Source:
    """A past training or generation job's whole config."""
    job = jobs.get(job_id)
    if job.kind in TRAINING_KINDS:
        if "config" not in job.params:
            raise UserFacingError(f"Job {job_id} has no saved training settings to run again.")
        config = load(job.params["config"]).model_dump(mode="json")
        return Source("training", config, f"#{job.id} · {job.name}", job.id)
    if job.kind == "generation":
        model = _generation_config()
        values = {k: v for k, v in job.params.items() if k in model.model_fields}
        from pipeline.generation.config import load as load_generation

        return Source("generation", load_generation(values).model_dump(mode="json"), f"#{job.id} · {job.name}", job.id)
    kind = jobs.KIND_LABELS.get(job.kind, job.kind)
    raise UserFacingError(f"Job {job_id} is {kind}: only training and generation jobs run again.")


def from_saved(name: str) -> Source:
    return Source("training", load_saved(name).model_dump(mode="json"), f"saved settings {name!r}")


def rerunnable_jobs(limit: int = 100) -> list[Job]:
    """Training and generation jobs, newest first: the ones "Run again with changes" can start from."""
    return [j for j in jobs.list_jobs(limit * 3) if j.kind in (*TRAINING_KINDS, "generation")][:limit]


# --- editing a config: fields, values typed as text, what changed -----------------------------------


@dataclass
class Setting:
    name: str
    kind: str  # bool | int | float | choice | text | list | optional-int
    value: object
    choices: list[str] = field(default_factory=list)


def _shape(annotation) -> tuple[str, list[str]]:
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        kind, choices = _shape(args[0]) if len(args) == 1 else ("text", [])
        return ("optional-int" if kind == "int" else kind), choices
    if origin is typing.Literal:
        return "choice", [str(a) for a in typing.get_args(annotation)]
    if origin in (list, tuple) or annotation in (list, tuple):
        return "list", []
    return {bool: "bool", int: "int", float: "float"}.get(annotation, "text"), []


def settings_of(source: Source) -> list[Setting]:
    """Every setting of the config, with its kind and current value, in the config's own order."""
    found = []
    for name, info in source.model.model_fields.items():
        kind, choices = _shape(info.annotation)
        found.append(Setting(name, kind, source.config.get(name), choices))
    return found


def coerce(model: type[BaseModel], name: str, raw):
    """A value typed as text (or given by a widget) as the config's field wants it; the model validates it."""
    if name not in model.model_fields:
        known = ", ".join(model.model_fields)
        raise UserFacingError(f"There is no setting {name!r}. Settings: {known}.")
    if not isinstance(raw, str):
        return raw
    kind, _ = _shape(model.model_fields[name].annotation)
    text = raw.strip()
    if kind == "list":
        separator = "-" if name == "document_words" and "," not in text else ","
        return [part.strip() for part in text.split(separator) if part.strip()]
    annotation = model.model_fields[name].annotation
    optional = type(None) in typing.get_args(annotation)
    if optional and text.lower() in ("", "none", "null"):
        return None
    return text


def parse_sets(pairs: list[str]) -> dict[str, str]:
    """`key=value` pairs from the command line."""
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserFacingError(f"{pair!r}: write a change as key=value, e.g. learning_rate=1e-4.")
        found[key.strip()] = value
    return found


def _show(value) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "(none)"
    if value is None or value == "":
        return "(none)"
    return str(value)


def changes(before: dict, after: dict) -> list[dict]:
    """Only the settings that differ: setting, was, now."""
    return [
        {"setting": key, "was": _show(before.get(key)), "now": _show(after.get(key))}
        for key in after
        if before.get(key) != after.get(key)
    ]


@dataclass
class Revision:
    source: Source
    config: dict  # the new whole config, validated
    changed: list[dict]  # setting, was, now


def revise(source: Source, edits: dict) -> Revision:
    """The source's config with `edits` applied and validated; raises UserFacingError on a bad value."""
    model = source.model
    values = {**source.config, **{k: coerce(model, k, v) for k, v in edits.items()}}
    if source.kind == "training":
        new = load(values).model_dump(mode="json")
    else:
        from pipeline.generation.config import load as load_generation

        new = load_generation(values).model_dump(mode="json")
    return Revision(source, new, changes(source.config, new))


def start_revision(revision: Revision, started_by: str = "") -> Job:
    """Launch the revised config as a new job (queued for the monitor)."""
    source = revision.source
    what = "; ".join(f"{c['setting']} {c['was']} → {c['now']}" for c in revision.changed) or "no changes"
    origin = f"#{source.job_id}" if source.job_id else source.label
    if source.kind == "training":
        from pipeline.training import service

        config = load(revision.config)
        name = f"{config.method.upper()} {config.dataset} ({config.backend}), rerun of {origin}: {what}"
        extra = {"rerun_of": source.job_id} if source.job_id else {}
        return service.start(config, started_by=started_by, name=name[:200], extra=extra)
    from pipeline.generation import service as generation

    name = f"Generation: {revision.config['examples']} examples, rerun of {origin}: {what}"
    return generation.start(revision.config, started_by=started_by, name=name[:200])


def rerun(job_id: int, edits: dict, started_by: str = "") -> tuple[Job, list[dict]]:
    """Run job `job_id` again with `edits` (setting → value); returns the new job and what changed."""
    revision = revise(from_job(job_id), edits)
    return start_revision(revision, started_by), revision.changed


# --- sweeps -----------------------------------------------------------------------------------------


def parse_grid(pairs: list[str]) -> dict[str, list[str]]:
    """`learning_rate=1e-4,2e-4` pairs (one per setting) → setting: values."""
    grid = {}
    for key, values in parse_sets(pairs).items():
        grid[key] = [v.strip() for v in values.split(",") if v.strip()]
    return grid


@dataclass
class SweepRun:
    values: dict  # the swept settings' values for this run
    config: TrainingConfig


def sweep_size(grid: dict[str, list]) -> int:
    size = 1
    for values in grid.values():
        size *= len(dict.fromkeys(map(str, values)))
    return size


def sweep_runs(base: TrainingConfig, grid: dict[str, list]) -> list[SweepRun]:
    """The product of the grid over `base`; at most two settings and twelve runs."""
    grid = {k: list(dict.fromkeys(v)) for k, v in grid.items()}
    if not grid:
        raise UserFacingError("A sweep needs at least one setting with its values, e.g. learning_rate=1e-4,2e-4.")
    if len(grid) > MAX_SWEEP_SETTINGS:
        raise UserFacingError(f"A sweep varies at most {MAX_SWEEP_SETTINGS} settings; this one varies {len(grid)}.")
    for key, values in grid.items():
        if key not in SWEEPABLE:
            raise UserFacingError(f"{key!r} cannot be swept. Sweepable settings: {', '.join(SWEEPABLE)}.")
        if not values:
            raise UserFacingError(f"Give {key} at least one value.")
    size = sweep_size(grid)
    if size > MAX_SWEEP_RUNS:
        raise UserFacingError(
            f"This sweep would queue {size} runs; at most {MAX_SWEEP_RUNS} are allowed. Use fewer values."
        )
    found = []
    base_values = base.model_dump(mode="json")
    for number, combo in enumerate(itertools.product(*grid.values()), 1):
        values = {k: coerce(TrainingConfig, k, v) for k, v in zip(grid, combo, strict=True)}
        named = {"name": f"{base.name}-{number}"} if base.name else {}  # each run's model needs its own name
        config = load({**base_values, **values, **named})
        found.append(SweepRun({k: getattr(config, k) for k in grid}, config))
    return found


@dataclass
class Sweep:
    id: str
    jobs: list[Job]
    runs: list[SweepRun]


def start_sweep(base: TrainingConfig, grid: dict[str, list], started_by: str = "") -> Sweep:
    """Check every run of the grid, then queue them all; the monitor runs them one at a time."""
    from pipeline.training import service

    access.check("train")
    runs = sweep_runs(base, grid)
    for number, run in enumerate(runs, 1):
        checked = service.plan(run.config)
        if not checked.can_start:
            raise UserFacingError(f"Run {number} of the sweep ({_values(run.values)}): {checked.refusal()}")
    sweep_id = secrets.token_hex(4)
    queued = []
    for number, run in enumerate(runs, 1):
        name = f"Sweep {sweep_id} run {number}/{len(runs)}: {_values(run.values)} · {run.config.dataset}"
        extra = {"sweep": {"id": sweep_id, "run": number, "of": len(runs), "values": run.values}}
        queued.append(service.start(run.config, started_by=started_by, name=name, extra=extra))
    return Sweep(sweep_id, queued, runs)


def _values(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


# --- saved settings ---------------------------------------------------------------------------------

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def configs_dir():
    return settings.data_dir() / "configs"


def _path(name: str):
    if not NAME.fullmatch(name or ""):
        raise UserFacingError(
            f"{name!r} cannot name saved settings: use up to 64 letters, digits, dots, dashes or underscores."
        )
    return configs_dir() / f"{name}.yaml"


def training_config(source: Source) -> TrainingConfig:
    if source.kind != "training":
        raise UserFacingError(f"{source.label} is not a training run.")
    return load(source.config)


def save_config(name: str, config: TrainingConfig | dict) -> str:
    """Keep `config` under `name` (data/configs/NAME.yaml), replacing what was saved there."""
    access.check("train")
    config = load(config) if isinstance(config, dict) else config
    path = _path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(config.to_yaml(), encoding="utf-8")
    return name


def saved_configs() -> list[str]:
    folder = configs_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.exists() else []


def load_saved(saved: str, **overrides) -> TrainingConfig:
    path = _path(saved)
    if not path.exists():
        known = ", ".join(saved_configs()) or "none yet"
        raise UserFacingError(f"There are no saved settings named {saved!r}. Saved: {known}.")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return load({**data, **{k: v for k, v in overrides.items() if v is not None}})
