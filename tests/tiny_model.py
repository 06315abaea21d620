"""A tiny causal LM with the embedded model's tokenizer: trains in seconds, for the training tests."""

from __future__ import annotations

from pathlib import Path

from pipeline import settings
from pipeline.llm import embedded

TINY = "tiny-llama"


def make_tiny_model(name: str = TINY) -> Path:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = settings.models_dir() / name
    if (folder / "config.json").exists():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(embedded.ensure_embedded_model())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
