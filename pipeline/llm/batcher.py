"""Dynamic batching for a local model: requests that arrive together share one `generate` call.

On a CPU a small model's decoding time is mostly per-step overhead, paid once per step whatever
the batch size, so eight requests batched cost little more than one. Each model has one worker
thread: callers (threads, or coroutines through asyncio.to_thread) hand it a request and wait.
The worker takes the first waiting request, gathers others with the same sampling settings for a
short window, generates for all of them at once (left-padded), and cuts each row at its own end.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

MAX_BATCH = 8
WINDOW_S = 0.02


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
        self._worker = threading.Thread(target=self._serve, name=f"batcher-{loaded.name}", daemon=True)
        self._worker.start()

    def generate(self, messages, max_tokens=256, temperature=0.7, top_p=0.9, seed=None) -> Generation:
        request = Request(messages, max_tokens, temperature, top_p, seed)
        self._queue.put(request)
        return request.future.result()

    def _next_batch(self) -> list[Request]:
        first = self._held.pop(0) if self._held else self._queue.get()
        batch = [first]
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            same = next((r for r in self._held if r.key == first.key), None)
            if same is not None:
                self._held.remove(same)
                batch.append(same)
                continue
            try:
                request = self._queue.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            (batch if request.key == first.key else self._held).append(request)
        return batch

    def _serve(self) -> None:
        while True:
            batch = self._next_batch()
            try:
                results = self._run(batch)
            except BaseException as exc:  # noqa: BLE001 - every waiting caller gets the error
                for request in batch:
                    request.future.set_exception(exc)
                continue
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
