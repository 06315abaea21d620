"""One conversation (a list of {"role", "content"} messages) to and from each file format.

Every format round-trips the conversations it can hold: export then import gives the same
messages. Alpaca holds earlier turns in `history` (LLaMA-Factory's convention) and the system
prompt in `system`; prompt/completion uses plain strings when every conversation is one user turn
and one reply, and TRL's conversational form (lists of messages) otherwise.
"""

from __future__ import annotations

import json
import re

FORMATS = {
    "openai": "OpenAI chat JSONL",
    "chatml": 'ChatML text (JSONL of {"text"})',
    "alpaca": "Alpaca (instruction / input / output)",
    "sharegpt": "ShareGPT (conversations, from / value)",
    "prompt_completion": "Prompt / completion JSONL",
}
ROLES = ("system", "user", "assistant")
_SHAREGPT_ROLE = {"system": "system", "user": "human", "assistant": "gpt"}
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # see storable()
_SHAREGPT_BACK = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


class RowError(ValueError):
    """Why one row is not a usable conversation: the field at fault and a kind scripts can match."""

    def __init__(self, field: str, kind: str, message: str):
        super().__init__(message)
        self.field, self.kind, self.message = field, kind, message


# ---------------------------------------------------------------- writing


def to_row(messages: list[dict], fmt: str, strings: bool = True) -> dict:
    """The row for one conversation. `strings`: prompt/completion as plain text (single-turn sets)."""
    if fmt == "openai":
        return {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
    if fmt == "chatml":
        return {"text": chatml(messages)}
    if fmt == "sharegpt":
        return {"conversations": [{"from": _SHAREGPT_ROLE[m["role"]], "value": m["content"]} for m in messages]}
    system, turns = _split_system(messages)
    if fmt == "alpaca":
        pairs = _pairs(turns)
        row = {"instruction": pairs[-1][0], "input": "", "output": pairs[-1][1]}
        if system is not None:
            row["system"] = system
        if len(pairs) > 1:
            row["history"] = [list(p) for p in pairs[:-1]]
        return row
    if fmt == "prompt_completion":
        if strings:
            return {"prompt": turns[0]["content"], "completion": turns[1]["content"]}
        return {"prompt": messages[:-1], "completion": [messages[-1]]}
    raise ValueError(f"unknown format {fmt!r}")


def single_turn(messages: list[dict]) -> bool:
    """One user turn then one reply, no system prompt: what plain prompt/completion strings can hold."""
    return [m["role"] for m in messages] == ["user", "assistant"]


def chatml(messages: list[dict]) -> str:
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)


def dumps_jsonl(rows) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _split_system(messages: list[dict]) -> tuple[str | None, list[dict]]:
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], messages[1:]
    return None, messages


def _pairs(turns: list[dict]) -> list[tuple[str, str]]:
    """(user, assistant) pairs; Alpaca needs strict alternation ending on the assistant."""
    roles = [m["role"] for m in turns]
    if not turns or len(turns) % 2 or roles != ["user", "assistant"] * (len(turns) // 2):
        raise RowError("messages", "not_alternating", "Alpaca needs user and assistant turns taking turns")
    return [(turns[i]["content"], turns[i + 1]["content"]) for i in range(0, len(turns), 2)]


# ---------------------------------------------------------------- reading


def detect(row) -> str | None:
    """Which format a row is in, from its keys; None when it matches none."""
    if not isinstance(row, dict):
        return None
    if "messages" in row:
        return "openai"
    if "conversations" in row:
        return "sharegpt"
    if "instruction" in row or "output" in row:
        return "alpaca"
    if "prompt" in row or "completion" in row:
        return "prompt_completion"
    if "text" in row:
        return "chatml"
    return None


def from_row(row, fmt: str | None = None) -> tuple[list[dict], list[str]]:
    """(messages, warnings) for a row, in `fmt` or detected; raises RowError naming the field."""
    if not isinstance(row, dict):
        kind = type(row).__name__ if row is not None else "null"
        raise RowError("", "not_an_object", f"expected a JSON object, found a {_json_type(row, kind)}")
    fmt = fmt or detect(row)
    if fmt is None:
        keys = ", ".join(sorted(row)) or "none"
        raise RowError(
            "",
            "unknown_format",
            f"no known format has these keys ({keys}); expected messages, conversations, "
            "instruction/output, prompt/completion or text",
        )
    reader = {
        "openai": _from_openai,
        "sharegpt": _from_sharegpt,
        "alpaca": _from_alpaca,
        "prompt_completion": _from_prompt_completion,
        "chatml": _from_chatml,
    }[fmt]
    return reader(row)


def _json_type(value, fallback: str) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), fallback)


def _from_openai(row: dict) -> tuple[list[dict], list[str]]:
    # OpenAI's own checks: a messages list; each message a role and string content, no unknown keys
    warnings = [f"unknown key {k!r} is ignored" for k in row if k not in ("messages", "tools", "functions", "id")]
    messages = row["messages"]
    if not isinstance(messages, list):
        raise RowError("messages", "messages_not_a_list", "messages must be a list of messages")
    return _checked(messages, "messages", "role", "content", {r: r for r in ROLES}), warnings


def _from_sharegpt(row: dict) -> tuple[list[dict], list[str]]:
    turns = row["conversations"]
    if not isinstance(turns, list):
        raise RowError("conversations", "messages_not_a_list", "conversations must be a list of turns")
    return _checked(turns, "conversations", "from", "value", _SHAREGPT_BACK), []


def _checked(items: list, field: str, role_key: str, content_key: str, roles: dict) -> list[dict]:
    if not items:
        raise RowError(field, "no_messages", f"{field} is empty")
    messages = []
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        if not isinstance(item, dict):
            raise RowError(
                where, "message_not_an_object", f"{where} must be an object with {role_key} and {content_key}"
            )
        unknown = sorted(set(item) - {role_key, content_key, "name", "weight"})
        if unknown:
            raise RowError(f"{where}.{unknown[0]}", "unknown_key", f"{where} has an unknown key {unknown[0]!r}")
        if role_key not in item:
            raise RowError(f"{where}.{role_key}", "missing_role", f"{where} has no {role_key}")
        role = roles.get(item[role_key]) if isinstance(item[role_key], str) else None
        if role is None:
            raise RowError(
                f"{where}.{role_key}",
                "unknown_role",
                f"{where} has the unknown {role_key} {item[role_key]!r}; expected one of {', '.join(roles)}",
            )
        if content_key not in item:
            raise RowError(f"{where}.{content_key}", "missing_content", f"{where} has no {content_key}")
        content = item[content_key]
        if content is None:
            raise RowError(f"{where}.{content_key}", "content_null", f"{where}.{content_key} is null")
        if not isinstance(content, str):
            raise RowError(
                f"{where}.{content_key}",
                "content_not_text",
                f"{where}.{content_key} must be text, not {_json_type(content, 'value')}",
            )
        if not content.strip():
            raise RowError(f"{where}.{content_key}", "empty_content", f"{where}.{content_key} is empty")
        storable(content, f"{where}.{content_key}")
        messages.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in messages):
        raise RowError(field, "no_assistant_message", "there is no assistant message to learn from")
    return messages


def _text_field(row: dict, key: str, required: bool = True) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            kind = "content_null" if key in row and value is None else "missing_content"
            raise RowError(key, kind, f"{key} is {'null' if key in row and value is None else 'missing or empty'}")
        return ""
    if not isinstance(value, str):
        raise RowError(key, "content_not_text", f"{key} must be text, not {_json_type(value, 'value')}")
    return storable(value, key)


def storable(text: str, field: str) -> str:
    """`text`, unless it holds what no stored text can: a NUL character or half a UTF-16 surrogate pair.

    JSON can spell both (\\u0000, a lone \\ud800); PostgreSQL refuses the first, and neither store
    can encode the second, so one such line would otherwise fail the whole import.
    """
    found = _UNSTORABLE.search(text)
    if found is None:
        return text
    at, char = found.start() + 1, found.group()
    if char == "\x00":
        raise RowError(field, "nul_character", f"{field} holds a NUL character (\\u0000) at character {at}; remove it")
    raise RowError(
        field,
        "unpaired_surrogate",
        f"{field} holds \\u{ord(char):04x} at character {at}: half of a character without its other half "
        "(a broken \\u escape); fix or remove it",
    )


def _from_alpaca(row: dict) -> tuple[list[dict], list[str]]:
    instruction, extra = _text_field(row, "instruction"), _text_field(row, "input", required=False)
    output = _text_field(row, "output")
    messages = [{"role": "system", "content": _text_field(row, "system")}] if row.get("system") else []
    history = row.get("history") or []
    if not isinstance(history, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in history
    ):
        raise RowError("history", "bad_history", "history must be a list of [user, assistant] text pairs")
    for i, pair in enumerate(history):
        for j, text in enumerate(pair):
            storable(text, f"history[{i}][{j}]")
    for user, assistant in history:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    prompt = f"{instruction}\n\n{extra}" if extra else instruction
    return messages + [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}], []


def _from_prompt_completion(row: dict) -> tuple[list[dict], list[str]]:
    prompt, completion = row.get("prompt"), row.get("completion")
    if isinstance(prompt, list) or isinstance(completion, list):  # TRL's conversational form
        if not isinstance(prompt, list) or not isinstance(completion, list):
            raise RowError("prompt", "mixed_forms", "prompt and completion must both be text or both be message lists")
        return _checked(prompt + completion, "prompt+completion", "role", "content", {r: r for r in ROLES}), []
    return [
        {"role": "user", "content": _text_field(row, "prompt")},
        {"role": "assistant", "content": _text_field(row, "completion")},
    ], []


def _from_chatml(row: dict) -> tuple[list[dict], list[str]]:
    text = _text_field(row, "text")
    messages = []
    for block in text.split("<|im_start|>")[1:]:
        head, _, rest = block.partition("\n")
        content, closed, _ = rest.partition("<|im_end|>")
        if not closed:
            raise RowError("text", "bad_chatml", f"a {head.strip() or 'message'} block is not closed with <|im_end|>")
        messages.append({"role": head.strip(), "content": content})
    if not messages:
        raise RowError("text", "bad_chatml", "no <|im_start|>role … <|im_end|> blocks found")
    return _checked(messages, "text", "role", "content", {r: r for r in ROLES}), []
