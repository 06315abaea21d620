"""Taking a model out of the studio: a model card, the adapter or merged weights as a zip, a vLLM command.

Zips are written under `<data dir>/exports/`, named from the registry name made safe for a file name,
and appear whole (written aside, then renamed). Cloud models cannot be exported: their weights stay at
the provider. The embedded base model has no adapter; its weights (the whole folder) come out through
`export_merged`, which for a model without an adapter is the model as it is.
"""

from __future__ import annotations

import json
import re
import shlex
import tempfile
import zipfile
from pathlib import Path

import yaml

from pipeline import settings
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.llm import embedded
from pipeline.models import Dataset, ModelEntry, Persona
from pipeline.registry import figures

STORED = (".safetensors", ".bin", ".pt", ".gguf")  # already dense: not worth compressing
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the --max-lora-rank values vLLM accepts (default 16)
TOML_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
PROVIDERS = {"openai": "OpenAI", "together": "Together"}


def exports_dir() -> Path:
    return settings.data_dir() / "exports"


def safe_name(entry: ModelEntry) -> str:
    """The entry's name as a file name: letters, digits, dot, dash, underscore; never a path."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", entry.name or "").strip(".-")[:80]
    return cleaned or f"model-{entry.id}"


# --- where a model's files are ---------------------------------------------------------------------


def _refuse_unless_local(entry: ModelEntry) -> str:
    """The local folder name of an exportable entry; a clear refusal for everything else."""
    if entry.backend in figures.CLOUD_BACKENDS:
        provider = PROVIDERS.get(entry.backend, entry.backend)
        raise UserFacingError(
            f"{entry.name} was fine-tuned at {provider}: its weights stay at the provider and cannot be "
            f"downloaded. Call it by its model id, {entry.reference}."
        )
    if entry.backend == "prompt":
        raise UserFacingError(
            f"{entry.name} is a prompt-only variant of {entry.base_model}: it has no weights of its own. "
            "Export its prompt version from the persona instead."
        )
    name = figures.local_name(entry)
    if name is None:
        raise UserFacingError(f"{entry.name} ({entry.reference}) is not a local model: there are no files to export.")
    folder = embedded.model_path(name)
    if not folder.exists():
        raise UserFacingError(f"The files of {entry.name} are gone from {folder}; nothing to export.")
    return name


def _is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").exists()


def _base_folder(entry: ModelEntry) -> Path:
    """The base model's folder for a local model (an adapter's base; a full model is its own base)."""
    folder = embedded.model_path(figures.local_name(entry))
    return figures.adapter_base_folder(folder) if _is_adapter(folder) else folder


def _adapter_files(folder: Path) -> list[Path]:
    """The adapter as saved: its files, not merged weights or checkpoints."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.relative_to(folder).parts[0] != "merged"
        and not p.relative_to(folder).parts[0].startswith(("checkpoint", "."))
    )


# --- the model card ------------------------------------------------------------------------------


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _loading_section(entry: ModelEntry, folder_name: str, merged: bool) -> list[str]:
    if entry.backend in figures.CLOUD_BACKENDS:
        return [
            f"The weights stay at {PROVIDERS.get(entry.backend, entry.backend)}. In the studio, call it as "
            f"`{entry.reference}`; with the provider's SDK, use the model id after the provider prefix.",
        ]
    if entry.backend == "prompt":
        return [f"A prompt-only variant: call `{entry.reference}` with the persona's prompt version as system prompt."]
    if figures.local_name(entry) is None:
        return [f"Call it in the studio as `{entry.reference}`."]
    folder = embedded.model_path(figures.local_name(entry))
    if not folder.exists():
        return ["The model's files are no longer in the studio's models folder."]
    base = _base_folder(entry)
    adapter = _is_adapter(folder) and not merged
    lines = ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer"]
    if adapter:
        lines += [
            "from peft import PeftModel",
            "",
            f'base = AutoModelForCausalLM.from_pretrained("{base}")  # the base model folder',
            f'model = PeftModel.from_pretrained(base, "{folder_name}")  # this folder, unzipped',
            f'tokenizer = AutoTokenizer.from_pretrained("{folder_name}")',
        ]
    else:
        lines += [
            "",
            f'model = AutoModelForCausalLM.from_pretrained("{folder_name}")  # this folder, unzipped',
            f'tokenizer = AutoTokenizer.from_pretrained("{folder_name}")',
        ]
    lines += [
        'messages = [{"role": "user", "content": "Summarise this memo in two sentences: ..."}]',
        'inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",'
        " return_dict=True)",
        "output = model.generate(**inputs, max_new_tokens=128)",
        'print(tokenizer.decode(output[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True))',
        "```",
        "",
    ]
    if adapter:
        lines += [
            f"In `adapter_config.json`, `base_model_name_or_path` is `{base.name}`, relative to the studio's models "
            "folder; passing the base model explicitly, as above, is all PEFT needs.",
            "",
        ]
    serve = vllm_command(entry, adapter_path=f"./{folder_name}") if adapter else None
    if serve is None:
        lines += [
            "Serve it with vLLM (an OpenAI-compatible server):",
            "",
            f"    vllm serve {shlex.quote(folder_name)} --served-model-name {shlex.quote(entry.name)} "
            "--host 127.0.0.1 --port 8000",
        ]
    else:
        lines += ["Serve it with vLLM (an OpenAI-compatible server):", "", f"    {serve['command']}"]
    return lines


def model_card(entry: ModelEntry, *, merged: bool = False, folder_name: str | None = None) -> str:
    """The model card in Markdown: what the model is, what it learnt from, how it did, how to load it.

    `folder_name` is the folder the loading snippet points at (the unzipped export's); `merged` writes the
    snippet for merged weights instead of the adapter.
    """
    with session_scope() as session:
        persona = session.get(Persona, entry.persona_id) if entry.persona_id is not None else None
        dataset = session.get(Dataset, entry.dataset_id) if entry.dataset_id is not None else None
    folder_name = folder_name or safe_name(entry) + ("-merged" if merged else "")
    trained = figures.training(entry)
    lines = [
        f"# {entry.name}",
        "",
        f"- Model id in the studio: `{entry.reference}`",
        f"- Base model: `{entry.base_model or '–'}`",
        f"- Backend: {entry.backend or '–'}; status: {entry.status}",
        f"- Persona: {persona.name if persona else '–'}",
        f"- Registered: {entry.created_at:%Y-%m-%d %H:%M} UTC" if entry.created_at else "- Registered: –",
        "",
        "## Dataset",
        "",
    ]
    if dataset is not None:
        counts = dataset.counts or {}
        lines += [
            f"- Name: {dataset.name}",
            f"- Training examples: {_fmt(counts.get('train'))}; validation examples: {_fmt(counts.get('validation'))}",
            f"- Tokens: {_fmt(counts.get('tokens'))}",
            f"- Content hash: `{dataset.content_hash or '–'}`",
        ]
    else:
        lines.append("Not trained in the studio on a saved dataset.")
    lines += ["", "## Hyperparameters", ""]
    if entry.config:
        lines += ["| setting | value |", "|---|---|"]
        lines += [f"| {key} | {_fmt(value, 6) if not isinstance(value, list) else ', '.join(map(str, value))} |"
                  for key, value in entry.config.items()]  # fmt: skip
    else:
        lines.append("None recorded.")
    lines += ["", "## Training", ""]
    if trained:
        lines += [
            f"- Job: {trained['job_id']}; steps: {_fmt(trained['steps'])}",
            f"- Final training loss: {_fmt(trained['train_loss'])}",
            f"- Final validation loss: {_fmt(trained['val_loss'])}",
        ]
    else:
        lines.append("Not trained in the studio.")
    lines += ["", "## Evaluation", ""]
    by_mode = (entry.metrics or {}).get("quality") or {}
    if by_mode:
        lines += [
            "Pairwise judged against the other contestants, Bradley-Terry ratings (base model at 1000) with "
            "bootstrap 95% intervals.",
            "",
            "| prompt mode | rating | interval | win rate vs base | mean trait score | consistency | judge |",
            "|---|---|---|---|---|---|---|",
        ]
        for mode, q in by_mode.items():
            traits = [v for v in (q.get("trait_scores") or {}).values() if isinstance(v, int | float)]
            lines.append(
                f"| {mode} | {_fmt(q.get('rating'), 5)} | {_fmt(q.get('lower'), 5)} – {_fmt(q.get('upper'), 5)} "
                f"| {_fmt(q.get('win_rate_vs_base'), 3)} | {_fmt(sum(traits) / len(traits), 3) if traits else '–'} "
                f"| {_fmt(q.get('consistency'), 3)} | {q.get('judge') or '–'} |"
            )
        scores = {t: s for q in by_mode.values() for t, s in (q.get("trait_scores") or {}).items()}
        if scores:
            lines += ["", "Trait scores (1–5): " + ", ".join(f"{t} {_fmt(s, 3)}" for t, s in scores.items())]
    else:
        lines.append("Not evaluated yet.")
    performance = (entry.metrics or {}).get("performance")
    if performance:
        lines += [
            "",
            "## Speed",
            "",
            f"{_fmt(performance.get('tokens_per_s'))} tokens/s; time to first token "
            f"{_fmt(performance.get('ttft_ms'))} ms; latency p50 {_fmt(performance.get('latency_p50_ms'))} ms, "
            f"p95 {_fmt(performance.get('latency_p95_ms'))} ms ({performance.get('prompts')} prompts, up to "
            f"{performance.get('max_tokens')} tokens, measured {performance.get('measured_at')}).",
        ]
    lines += ["", "## How to load it", "", *_loading_section(entry, folder_name, merged), ""]
    return "\n".join(lines)


# --- zips ----------------------------------------------------------------------------------------


def _write_zip(target: Path, files: dict[str, Path | str]) -> Path:
    """A zip of `arcname → file path or text`, written aside and renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with zipfile.ZipFile(partial, "w") as archive:
            for arcname, source in files.items():
                if isinstance(source, Path):
                    method = zipfile.ZIP_STORED if source.suffix in STORED else zipfile.ZIP_DEFLATED
                    archive.write(source, arcname, compress_type=method)
                else:
                    archive.writestr(arcname, source, compress_type=zipfile.ZIP_DEFLATED)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _config_yaml(entry: ModelEntry) -> str:
    return yaml.safe_dump(entry.config or {}, sort_keys=False, allow_unicode=True)


def export_adapter(entry_id: int) -> Path:
    """The adapter as a zip: `<name>/` with the adapter's files, training_config.yaml and MODEL_CARD.md.

    Cloud models and prompt-only variants are refused (nothing to download); so is a local model without
    an adapter, the embedded base included: its whole weights come out through `export_merged`.
    """
    entry = figures.get_entry(entry_id)
    name = _refuse_unless_local(entry)
    folder = embedded.model_path(name)
    if not _is_adapter(folder):
        raise UserFacingError(
            f"{entry.name} is a full model, not an adapter: there is no adapter to export. "
            "Export its weights with “merged weights” instead."
        )
    root = safe_name(entry)
    files: dict[str, Path | str] = {f"{root}/{p.relative_to(folder).as_posix()}": p for p in _adapter_files(folder)}
    files[f"{root}/training_config.yaml"] = _config_yaml(entry)
    files[f"{root}/MODEL_CARD.md"] = model_card(entry, folder_name=root)
    return _write_zip(exports_dir() / f"{root}-adapter.zip", files)


def _merge(folder: Path, target: Path) -> None:
    """Base + adapter merged into plain weights: a fresh fp32 load (never the cached serving copy)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(figures.adapter_base_folder(folder), dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, folder).merge_and_unload()
    merged.save_pretrained(target)
    tokenizer_folder = folder if (folder / "tokenizer_config.json").exists() else figures.adapter_base_folder(folder)
    AutoTokenizer.from_pretrained(tokenizer_folder).save_pretrained(target)


def export_merged(entry_id: int) -> Path:
    """Merged weights as a zip: `<name>-merged/` loadable with plain transformers, plus the card and config.

    Uses `merged/` if training wrote it, else merges now. A local model without an adapter (the embedded
    base) is exported as its folder is.
    """
    entry = figures.get_entry(entry_id)
    name = _refuse_unless_local(entry)
    folder = embedded.model_path(name)
    root = f"{safe_name(entry)}-merged"
    with tempfile.TemporaryDirectory(prefix="merge-", dir=_scratch()) as scratch:
        if not _is_adapter(folder):
            source = folder
        elif (folder / "merged" / "config.json").exists():
            source = folder / "merged"
        else:
            source = Path(scratch) / "merged"
            _merge(folder, source)
        files: dict[str, Path | str] = {
            f"{root}/{p.relative_to(source).as_posix()}": p
            for p in sorted(source.rglob("*"))
            if p.is_file() and not p.relative_to(source).parts[0].startswith(("checkpoint", "."))
        }
        files[f"{root}/training_config.yaml"] = _config_yaml(entry)
        files[f"{root}/MODEL_CARD.md"] = model_card(entry, merged=True, folder_name=root)
        return _write_zip(exports_dir() / f"{root}.zip", files)


def _scratch() -> Path:
    """Merges are written next to the exports (same disk as the zip, not a small /tmp)."""
    folder = exports_dir() / ".scratch"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# --- vLLM ----------------------------------------------------------------------------------------


def _toml_key(name: str) -> str:
    return name if TOML_BARE_KEY.match(name) else json.dumps(name)


def vllm_command(
    entry: ModelEntry, host: str = "127.0.0.1", port: int = 8000, adapter_path: Path | str | None = None
) -> dict:
    """How to serve a local model with vLLM, and the secrets.toml lines that add the server to the studio.

    An adapter is served as a LoRA module on its base folder (`adapter_path` overrides where the adapter is,
    e.g. an unzipped export); a full model is served as it is. The endpoint is the address a client uses,
    so a wildcard host (0.0.0.0, ::) becomes localhost there. The default host is 127.0.0.1: the server is
    reachable from this machine only until someone chooses to expose it (and puts a key in front of it).
    """
    name = _refuse_unless_local(entry)
    folder = embedded.model_path(name)
    served = entry.name
    if _is_adapter(folder):
        adapter = str(adapter_path) if adapter_path is not None else str(folder)
        rank = int(json.loads((folder / "adapter_config.json").read_text()).get("r") or 16)
        parts = [
            f"vllm serve {shlex.quote(str(_base_folder(entry)))}",
            "--enable-lora",
            f"--lora-modules {shlex.quote(f'{served}={adapter}')}",
        ]
        if rank > 16:  # vLLM refuses adapters above --max-lora-rank, 16 unless told
            parts.append(f"--max-lora-rank {next((r for r in VLLM_LORA_RANKS if r >= rank), rank)}")
    else:
        parts = [f"vllm serve {shlex.quote(str(folder))}", f"--served-model-name {shlex.quote(served)}"]
    parts += [f"--host {shlex.quote(host)}", f"--port {int(port)}"]
    client_host = "localhost" if host in ("0.0.0.0", "::", "") else host
    if ":" in client_host and not client_host.startswith("["):
        client_host = f"[{client_host}]"  # an IPv6 address in a URL
    endpoint = f"http://{client_host}:{port}/v1"
    snippet = f"[endpoints.{_toml_key(served)}]\napi_base = {json.dumps(endpoint)}\nmodel = {json.dumps(served)}\n"
    return {"command": " ".join(parts), "endpoint": endpoint, "model": served, "secrets_snippet": snippet}
