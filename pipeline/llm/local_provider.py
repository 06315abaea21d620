"""litellm custom provider `local/…`: the embedded model and local fine-tunes, in process."""

from __future__ import annotations

import asyncio

from litellm import CustomLLM
from litellm.types.utils import ModelResponse, Usage

from pipeline.llm import embedded


class LocalProvider(CustomLLM):
    def completion(self, model: str, messages: list, model_response: ModelResponse, optional_params: dict, **_):
        result = embedded.generate(
            model,
            messages,
            max_tokens=int(optional_params.get("max_tokens") or 256),
            temperature=float(optional_params.get("temperature", 0.7)),
            top_p=float(optional_params.get("top_p", 0.9)),
            seed=optional_params.get("seed"),
        )
        choice = model_response.choices[0]
        choice.message.content = result.text
        choice.finish_reason = result.finish_reason
        model_response.model = f"local/{model}"
        model_response.usage = Usage(
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            total_tokens=result.prompt_tokens + result.completion_tokens,
        )
        return model_response

    async def acompletion(self, *args, **kwargs):
        # CPU-bound: run off the event loop so other requests keep flowing.
        return await asyncio.to_thread(self.completion, *args, **kwargs)
