"""Conversation import: the formats people have, bad files named, pairs added once, LLM extraction."""

from __future__ import annotations

import json

import pytest

from pipeline import personas
from pipeline.errors import UserFacingError
from pipeline.generation import service, transcripts
from tests.conftest import write_secrets
from tests.fakes.openai_server import FakeOpenAI

PLAIN = b"""Sam: Our launch slipped a week. What should I tell the client?
Ada: Let's start with what we know for sure.
What caused the slip?
Sam: A supplier delay.
Ada: Then we tell them plainly, with the new date and what we are doing about it.
"""


@pytest.fixture
def persona():
    personas.seed_samples()
    return personas.get_persona("collaborative")


def test_name_colon_message_lines_with_continuations():
    transcript = transcripts.parse(PLAIN, "chat.txt")
    assert transcript.speakers == ["Sam", "Ada"]
    assert transcript.pairs == [
        (
            "Our launch slipped a week. What should I tell the client?",
            "Let's start with what we know for sure.\nWhat caused the slip?",
        ),
        ("A supplier delay.", "Then we tell them plainly, with the new date and what we are doing about it."),
    ]


def test_the_persona_speaker_can_be_chosen():
    transcript = transcripts.parse(PLAIN, "chat.txt", persona_speaker="Sam")
    assert transcript.pairs[0] == (
        "Let's start with what we know for sure.\nWhat caused the slip?",
        "A supplier delay.",
    )


@pytest.mark.parametrize(
    "payload",
    [
        # OpenAI chat JSONL
        "\n".join(
            json.dumps(
                {
                    "messages": [
                        {"role": "system", "content": "x"},
                        {"role": "user", "content": "Hi?"},
                        {"role": "assistant", "content": "Hello!"},
                    ]
                }
            )
            for _ in range(2)
        ),
        # ShareGPT
        json.dumps([{"conversations": [{"from": "human", "value": "Hi?"}, {"from": "gpt", "value": "Hello!"}]}]),
        # a bare list of turns, with content parts
        json.dumps(
            [{"role": "user", "content": [{"type": "text", "text": "Hi?"}]}, {"role": "assistant", "content": "Hello!"}]
        ),
        # ChatGPT's conversations.json
        json.dumps(
            [
                {
                    "current_node": "c",
                    "mapping": {
                        "r": {"message": None, "parent": None},
                        "a": {"message": {"author": {"role": "user"}, "content": {"parts": ["Hi?"]}}, "parent": "r"},
                        "c": {
                            "message": {"author": {"role": "assistant"}, "content": {"parts": ["Hello!"]}},
                            "parent": "a",
                        },
                    },
                }
            ]
        ),
    ],
)
def test_json_chat_exports(payload):
    assert transcripts.parse(payload.encode(), "export.json").pairs[0] == ("Hi?", "Hello!")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "notes.txt is empty."),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "notes.txt is not a text file."),
        (b"\xff\xfe\xfa not utf8", "notes.txt is not UTF-8 text."),
        (b"Just a paragraph of prose with no speakers at all.", "notes.txt: no conversation found"),
        (b'{"title": "a json file that is not a chat"}', "notes.txt: no conversation found"),
    ],
)
def test_bad_files_are_named_with_the_reason(data, message):
    with pytest.raises(UserFacingError, match=message):
        transcripts.parse(data, "notes.txt")


def test_import_adds_each_pair_once(persona):
    transcript = transcripts.parse(PLAIN, "chat.txt")
    assert transcripts.import_pairs(persona.id, transcript) == (2, 0)
    assert transcripts.import_pairs(persona.id, transcript) == (0, 2)
    shots = transcripts.few_shot(persona.id, count=1)
    assert [m["role"] for m in shots] == ["user", "assistant"]
    assert shots[1]["content"].startswith("Then we tell them plainly")  # the fullest reply


def test_an_unknown_format_is_read_by_an_llm(persona):
    with FakeOpenAI(reply="User: Can you help with my memo?\nPersona: Of course, let's look at it together.") as s:
        write_secrets(f'[endpoints.extractor]\napi_base = "{s.api_base}"\nmodel = "x"\n')
        transcript = transcripts.extract_with_llm(
            b"<html><p>q: memo help?</p><p>a: sure</p></html>", "page.html", ["extractor"]
        )
        assert "<html><p>q: memo help?" in s.requests[0]["messages"][1]["content"]  # the file, as it was
    assert transcript.source == "page.html (via extractor)"
    assert transcript.pairs == [("Can you help with my memo?", "Of course, let's look at it together.")]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"Sam: " + b"long " * 1000 + b"\nAda: Hel\x00lo, a NUL past the first 4 kB", "line 2"),
        (
            json.dumps(
                {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "A\x00"}]}
            ).encode(),
            "conversation 1, message 2",
        ),
    ],
)
def test_a_nul_character_anywhere_in_a_transcript_is_named_and_nothing_is_imported(persona, data, message):
    report = service.import_transcripts(persona.id, [("chat.txt", data), ("good.txt", b"Sam: Hi\nAda: Hello!\n")])
    assert report[0]["added"] == 0 and "NUL character" in report[0]["problem"] and message in report[0]["problem"]
    assert report[1]["added"] == 1 and report[1]["problem"] == ""  # the other file still goes in


def test_a_transcript_over_the_upload_limit_is_refused_before_reading(persona):
    data = b"Sam: Hi\nAda: " + b"x" * 21_000_000
    [row] = service.import_transcripts(persona.id, [("huge.txt", data)])
    assert row["added"] == 0 and row["problem"] == "huge.txt is 21.0 MB; the limit is 20.0 MB. Split or shorten it."
