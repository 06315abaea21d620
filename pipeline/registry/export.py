"""Taking a model out of the studio: a model card, the adapter or merged weights as a zip, a vLLM command.

Zips are artifacts, `exports/<file>` of the store (pipeline/storage.py: the data folder's `exports/` unless
STUDIO_STORAGE_URI names another), named from the registry name made safe for a file name, and appear whole
(written aside, then renamed in or uploaded). Cloud models cannot be exported: their weights stay at
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

from pipeline import storage
from pipeline.errors import UserFacingError
from pipeline.llm import embedded
from pipeline.models import ModelEntry
from pipeline.registry import figures
from pipeline.registry.model_card import model_card

STORED = (".safetensors", ".bin", ".pt", ".gguf")  # already dense: not worth compressing
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the --max-lora-rank values vLLM accepts (default 16)
TOML_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
PROVIDERS = {"openai": "OpenAI", "together": "Together"}


def exports_dir() -> Path:
    """Where this machine reads exports: the store's `exports/` folder, or its local cache of a remote store."""
    return storage.current().area_root("exports")


def exported(file_name: str) -> Path:
    """An export's zip on this machine (fetched from a remote store when needed); it may not exist."""
    return storage.local("exports", Path(file_name).name)


def safe_name(entry: ModelEntry) -> str:
    """The entry's name as a file name: letters, digits, dot, dash, underscore; never a path."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", entry.name or "").strip(".-")[:80]
    return cleaned or f"model-{entry.id}"


# --- where a model's files are ---------------------------------------------------------------------


def refuse_unless_local(entry: ModelEntry) -> str:
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


def is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").exists()


def _base_folder(entry: ModelEntry) -> Path:
    """The base model's folder for a local model (an adapter's base; a full model is its own base)."""
    folder = embedded.model_path(figures.local_name(entry))
    return figures.adapter_base_folder(folder) if is_adapter(folder) else folder


def _adapter_files(folder: Path) -> list[Path]:
    """The adapter as saved: its files, not merged weights or checkpoints."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.relative_to(folder).parts[0] != "merged"
        and not p.relative_to(folder).parts[0].startswith(("checkpoint", "."))
    )


# --- zips ----------------------------------------------------------------------------------------


def write_zip(target: Path | str, files: dict[str, Path | str], scratch: Path | None = None) -> Path:
    """A zip of `arcname → file path or text`, named as `target`'s file name, written aside (in `scratch`, else
    the store's scratch folder) and published as `exports/<name>`: a reader never sees half a zip. Returns the
    zip's path on this machine."""
    name = Path(target).name
    aside = scratch or _scratch()
    aside.mkdir(parents=True, exist_ok=True)
    partial = aside / f".{name}.partial"
    try:
        with zipfile.ZipFile(partial, "w") as archive:
            for arcname, source in files.items():
                if isinstance(source, Path):
                    method = zipfile.ZIP_STORED if source.suffix in STORED else zipfile.ZIP_DEFLATED
                    archive.write(source, arcname, compress_type=method)
                else:
                    archive.writestr(arcname, source, compress_type=zipfile.ZIP_DEFLATED)
        return storage.put_file("exports", name, partial, move=True)
    finally:
        partial.unlink(missing_ok=True)


def _config_yaml(entry: ModelEntry) -> str:
    return yaml.safe_dump(entry.config or {}, sort_keys=False, allow_unicode=True)


def export_adapter(entry_id: int, scratch: Path | None = None) -> Path:
    """The adapter as a zip: `<name>/` with the adapter's files, training_config.yaml and README.md.

    Cloud models and prompt-only variants are refused (nothing to download); so is a local model without
    an adapter, the embedded base included: its whole weights come out through `export_merged`.
    """
    entry = figures.get_entry(entry_id)
    name = refuse_unless_local(entry)
    folder = embedded.model_path(name)
    if not is_adapter(folder):
        raise UserFacingError(
            f"{entry.name} is a full model, not an adapter: there is no adapter to export. "
            "Export its weights with “merged weights” instead."
        )
    root = safe_name(entry)
    files: dict[str, Path | str] = {f"{root}/{p.relative_to(folder).as_posix()}": p for p in _adapter_files(folder)}
    files[f"{root}/training_config.yaml"] = _config_yaml(entry)
    files[f"{root}/README.md"] = model_card(entry, folder_name=root)
    return write_zip(f"{root}-adapter.zip", files, scratch)


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


def merged_weights(folder: Path, scratch: Path) -> Path:
    """A folder of plain weights for a local model: itself, the `merged/` training wrote, or a merge now."""
    if not is_adapter(folder):
        return folder
    if (folder / "merged" / "config.json").exists():
        return folder / "merged"
    _merge(folder, scratch / "merged")
    return scratch / "merged"


def export_merged(entry_id: int, scratch: Path | None = None) -> Path:
    """Merged weights as a zip: `<name>-merged/` loadable with plain transformers, plus the card and config.

    Uses `merged/` if training wrote it, else merges now. A local model without an adapter (the embedded
    base) is exported as its folder is.
    """
    entry = figures.get_entry(entry_id)
    name = refuse_unless_local(entry)
    folder = embedded.model_path(name)
    root = f"{safe_name(entry)}-merged"
    with tempfile.TemporaryDirectory(prefix="merge-", dir=scratch or _scratch()) as aside:
        source = merged_weights(folder, Path(aside))
        files: dict[str, Path | str] = {
            f"{root}/{p.relative_to(source).as_posix()}": p
            for p in sorted(source.rglob("*"))
            if p.is_file() and not p.relative_to(source).parts[0].startswith(("checkpoint", "."))
        }
        files[f"{root}/training_config.yaml"] = _config_yaml(entry)
        files[f"{root}/README.md"] = model_card(entry, merged=True, folder_name=root)
        return write_zip(f"{root}.zip", files, scratch)


def _scratch() -> Path:
    """Merges and zips are written next to the exports when the store is a folder (same disk as the zip, not a
    small /tmp), in this machine's cache of a remote store otherwise."""
    folder = storage.scratch("exports")
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
    name = refuse_unless_local(entry)
    folder = embedded.model_path(name)
    served = entry.name
    if is_adapter(folder):
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
