"""An Ollama Modelfile for an exported GGUF: its chat template in Ollama's Go template language.

The model's own chat template is Jinja; Ollama's is Go's text/template. Rather than translate Jinja, the
template's pieces are read off the tokenizer by rendering conversations with marker contents: what comes
before and after a system, user and assistant message, the default system block the template adds when a
conversation has none, and the generation prompt. The Go template is rebuilt from those pieces, and the
pieces are checked to rebuild the tokenizer's own rendering of sample conversations; a template they
cannot rebuild (one that does more than wrap messages) is refused rather than written wrong.

There is no SYSTEM line: the persona is in the weights. Stop tokens are the special tokens that close or
open a turn.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.errors import UserFacingError

ROLES = ("system", "user", "assistant")
MARK = {"system": "\x01SYSTEM\x01", "user": "\x01USER\x01", "assistant": "\x01ASSISTANT\x01", "again": "\x01AGAIN\x01"}


@dataclass(frozen=True)
class ChatFormat:
    prefix: dict[str, str]  # role → text before its content
    suffix: dict[str, str]  # role → text after its content
    default_system: str  # added before the first message when it is not a system message
    generation_prompt: str  # after the last message, before the reply

    def render(self, messages: list[dict]) -> str:
        """The prompt text for `messages` and a reply to come, as the Modelfile's template renders it."""
        text = self.default_system if not messages or messages[0]["role"] != "system" else ""
        for m in messages:
            text += self.prefix[m["role"]] + m["content"] + self.suffix[m["role"]]
        return text + self.generation_prompt


def _between(text: str, start: str, end: str) -> str:
    return text[text.index(start) + len(start) : text.index(end)]


def chat_format(tokenizer) -> ChatFormat:
    """The chat template's pieces, read off `tokenizer` (transformers) by rendering marked conversations."""

    def render(messages, generation=False) -> str:
        return tokenizer.apply_chat_template(messages, add_generation_prompt=generation, tokenize=False)

    s, u, a, again = (MARK[k] for k in ("system", "user", "assistant", "again"))
    system = {"role": "system", "content": s}
    user, reply, user2 = ({"role": "user", "content": u}, {"role": "assistant", "content": a},
                          {"role": "user", "content": again})  # fmt: skip
    full = render([system, user, reply, user2])
    alone = render([system])
    unprompted = render([user])
    try:
        suffix_system = alone[alone.index(s) + len(s) :]
        prefix_user = _between(full, s, u)[len(suffix_system) :]
        suffix_user = full[full.index(again) + len(again) :]
        prefix_assistant = _between(full, u, a)[len(suffix_user) :]
        suffix_assistant = _between(full, a, again)[: -len(prefix_user) or None]
        fmt = ChatFormat(
            prefix={"system": full[: full.index(s)], "user": prefix_user, "assistant": prefix_assistant},
            suffix={"system": suffix_system, "user": suffix_user, "assistant": suffix_assistant},
            default_system=unprompted[: unprompted.index(u) - len(prefix_user)],
            generation_prompt=render([user], generation=True)[len(unprompted) :],
        )
    except ValueError as exc:
        raise UserFacingError(
            "This model's chat template drops or reorders messages; Ollama's template cannot copy it."
        ) from exc
    samples = [[user], [system, user], [user, reply, user2], [system, user, reply, user2]]
    if any(fmt.render(m) != render(m, generation=True) for m in samples) or any(
        "{{" in piece or '"""' in piece for piece in (*fmt.prefix.values(), *fmt.suffix.values(), fmt.default_system)
    ):
        raise UserFacingError("This model's chat template does more than wrap messages; Ollama's cannot copy it.")
    return fmt


def go_template(fmt: ChatFormat) -> str:
    """The Go text/template Ollama renders `.Messages` with. Literal text is kept verbatim (newlines
    included), so no `{{-` trimming is used anywhere: it would eat a piece's own trailing newline."""
    branches = "".join(
        f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{role}" }}}}'
        f"{fmt.prefix[role]}{{{{ .Content }}}}{fmt.suffix[role]}"
        for i, role in enumerate(ROLES)
    )
    default = (
        f'{{{{ if or (not .Messages) (ne (index .Messages 0).Role "system") }}}}{fmt.default_system}{{{{ end }}}}'
        if fmt.default_system
        else ""
    )
    return f"{default}{{{{ range .Messages }}}}{branches}{{{{ end }}}}{{{{ end }}}}{fmt.generation_prompt}"


def stop_tokens(fmt: ChatFormat, special_tokens: list[str]) -> list[str]:
    """Special tokens that end a reply or start the next turn: where generation must stop."""
    around = fmt.suffix["assistant"] + fmt.prefix["user"] + fmt.generation_prompt
    return [token for token in special_tokens if token and token in around]


def model_name(name: str) -> str:
    """A name `ollama create` accepts: lower-case letters, digits, dot, dash, underscore."""
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip(".-_")
    return cleaned[:60] or "persona-model"


def modelfile(gguf_name: str, fmt: ChatFormat, stops: list[str], title: str) -> str:
    lines = [
        f"# {title}: exported from Persona Studio.",
        "# No SYSTEM line: the persona is in the weights.",
        f"FROM ./{gguf_name}",
        f'TEMPLATE """{go_template(fmt)}"""',
        *(f'PARAMETER stop "{token}"' for token in stops),
    ]
    return "\n".join(lines) + "\n"


def commands(name: str) -> dict[str, str]:
    ollama = model_name(name)
    return {"create": f"ollama create {ollama} -f Modelfile", "run": f"ollama run {ollama}"}
