"""Token counts without transformers: the same numbers transformers gives, for the embedded model."""

from __future__ import annotations

from transformers import AutoTokenizer

from pipeline.datasets import tokens
from pipeline.llm import embedded
from tests.conftest import SHARED_MODELS

CONVERSATIONS = [
    [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi! How can I help?"}],
    [
        {"role": "system", "content": "You are candid and warm."},
        {"role": "user", "content": "Our launch slipped a week.\n\nWhat do I tell the client? ünïcödé, 数字, emoji 🎭"},
        {"role": "assistant", "content": "Tell them early, say why, and give the new date with what you will do."},
    ],
]


def test_local_counts_match_transformers_chat_template_and_tokenizer():
    folder = SHARED_MODELS / embedded.EMBEDDED_NAME
    reference = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    texts = reference.apply_chat_template(CONVERSATIONS, tokenize=False)
    expected = [len(ids) for ids in reference(texts, add_special_tokens=False)["input_ids"]]

    assert tokens.LocalTokenizer(folder).count(CONVERSATIONS) == expected


def test_cloud_counts_use_the_bundled_cl100k_with_openais_overhead():
    counted = tokens.count_cl100k([[{"role": "user", "content": "hello world"}]])
    assert counted == [2 + 3 + 3]  # two tokens, the message overhead, the reply overhead


def test_no_token_covers_more_characters_than_the_length_check_assumes():
    """checks.MAX_CHARS_PER_TOKEN lets a huge line be refused without tokenizing it: it must bound every token."""
    from pipeline.datasets import checks

    cl100k = tokens._cl100k()
    longest_cloud = max(len(cl100k.decode_single_token_bytes(i)) for i in range(cl100k.n_vocab - 1000) if i < 100256)
    local = tokens.LocalTokenizer(SHARED_MODELS / embedded.EMBEDDED_NAME)
    longest_local = max(len(piece) for piece in local.tokenizer.get_vocab())  # byte-level: a character per byte
    assert max(longest_cloud, longest_local) <= checks.MAX_CHARS_PER_TOKEN
