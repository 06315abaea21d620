"""Dynamic batching for a local model: requests that arrive together share one `generate` call.

On a CPU a small model's decoding time is mostly per-step overhead, paid once per step whatever
the batch size, so eight requests batched cost little more than one. Each model has one worker
thread: callers (threads, or coroutines through asyncio.to_thread) hand it a request and wait.
The worker takes the first waiting request, gathers others with the same sampling settings for a
short window, generates for all of them at once (left-padded), and cuts each row at its own end.

`close()` ends a worker when its model is unloaded: requests already queued are still served, a
request that comes later is refused with `ModelUnloaded`, and the worker lets go of the model.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from pipeline.errors import UserFacingError

MAX_BATCH = 8
WINDOW_S = 0.02
_STOP = object()  # queued by close(): the worker serves what came before it, then ends


class ModelUnloaded(UserFacingError):
    """A request reached a model's worker after the model was unloaded (replaced on disk or evicted)."""


@dataclass
class Request:
    messages: list[dict]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    future: Future = field(default_factory=Future)

    @property
    def key(self) -> tuple:
        """Requests batch together only when one generate call can honour all their settings."""
        sampling = self.temperature > 0
        return (sampling, round(self.temperature, 3) if sampling else 0.0, round(self.top_p, 3) if sampling else 1.0)


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    seconds: float
    batch_size: int = 1


class Batcher:
    def __init__(self, loaded, max_batch: int = MAX_BATCH, window_s: float = WINDOW_S):
        self.loaded = loaded
        self.max_batch = max_batch
        self.window_s = window_s
        self._queue: queue.Queue[Request] = queue.Queue()
        self._held: list[Request] = []  # taken from the queue but not batchable with the last batch
        self._name = loaded.name
        self._closed = False  # no more requests are taken
        self._stopping = False  # the worker has reached the stop mark: nothing more will arrive
        self._submit = threading.Lock()  # a request is queued before the stop mark or refused, never after
        self._worker = threading.Thread(target=self._serve, name=f"batcher-{loaded.name}", daemon=True)
        self._worker.start()

    def generate(self, messages, max_tokens=256, temperature=0.7, top_p=0.9, seed=None) -> Generation:
        request = Request(messages, max_tokens, temperature, top_p, seed)
        with self._submit:
            if self._closed:
                raise ModelUnloaded(
                    f"The local model {self._name!r} was unloaded (replaced on disk or evicted); ask again."
                )
            self._queue.put(request)
        return request.future.result()

    def close(self) -> None:
        """Take no more requests; the worker answers those already queued, then ends and drops the model.

        Does not wait: a batch in progress finishes on the worker's own time (see `join`)."""
        with self._submit:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for a closed worker to end; whether it has."""
        self._worker.join(timeout)
        return not self._worker.is_alive()

    @property
    def closed(self) -> bool:
        return self._closed

    def _next_batch(self) -> list[Request]:
        if self._held:
            first = self._held.pop(0)
        else:
            first = self._queue.get()
            if first is _STOP:
                self._stopping = True
                return []
        batch = [first]
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            same = next((r for r in self._held if r.key == first.key), None)
            if same is not None:
                self._held.remove(same)
                batch.append(same)
                continue
            if self._stopping:
                break
            try:
                request = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            if request is _STOP:
                self._stopping = True
                break
            (batch if request.key == first.key else self._held).append(request)
        return batch

    def _serve(self) -> None:
        try:
            while not (self._stopping and not self._held):
                batch = self._next_batch()
                if batch:
                    self._answer(batch)
        finally:
            self.loaded = None  # whoever still holds this Batcher no longer holds the weights
            with self._submit:
                self._closed = True  # an unexpected end takes no more requests either
            pending, self._held = self._held, []  # none in practice: the loop ends once they are served
            while not self._queue.empty():
                request = self._queue.get_nowait()
                if request is not _STOP:
                    pending.append(request)
            for request in pending:
                request.future.set_exception(ModelUnloaded(f"The local model {self._name!r} was unloaded."))

    def _answer(self, batch: list[Request]) -> None:
        try:
            results = self._run(batch)
        except BaseException as exc:  # noqa: BLE001 - every waiting caller gets the error
            for request in batch:
                request.future.set_exception(exc)
            return
        for request, result in zip(batch, results, strict=True):
            request.future.set_result(result)

    def _run(self, batch: list[Request]) -> list[Generation]:
        import torch

        tokenizer, model = self.loaded.tokenizer, self.loaded.model
        tokenizer.padding_side = "left"  # decoder-only: pad before the prompt so all rows end together
        inputs = tokenizer.apply_chat_template(
            [r.messages for r in batch],
            add_generation_prompt=True,
            padding=True,
            return_tensors="pt",
            return_dict=True,
        )
        first = batch[0]
        options = {
            "max_new_tokens": max(r.max_tokens for r in batch),
            "do_sample": first.temperature > 0,
            "repetition_penalty": 1.1,  # a 135M model loops without it
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
        }
        if first.temperature > 0:
            options.update(temperature=first.temperature, top_p=first.top_p)
        started = time.perf_counter()
        with torch.inference_mode():
            if first.seed is not None:
                torch.manual_seed(first.seed)
            output = model.generate(**inputs, **options)
        seconds = time.perf_counter() - started
        width = inputs["input_ids"].shape[1]
        results = []
        for row, request in enumerate(batch):
            tokens = output[row][width:].tolist()[: request.max_tokens]
            finish = "length"
            if tokenizer.eos_token_id in tokens:
                tokens = tokens[: tokens.index(tokenizer.eos_token_id) + 1]
                finish = "stop"
            results.append(
                Generation(
                    text=tokenizer.decode(tokens, skip_special_tokens=True).strip(),
                    prompt_tokens=int(inputs["attention_mask"][row].sum()),
                    completion_tokens=len(tokens),
                    finish_reason=finish,
                    seconds=seconds,
                    batch_size=len(batch),
                )
            )
        return results
