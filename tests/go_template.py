"""Just enough of Go's text/template to render an Ollama chat template the way Ollama does, for the tests.

Covers what the studio's Modelfiles use and the forms Ollama's own ChatML templates use: `{{ .Field }}`,
`{{ range .Messages }}`, `{{ if COND }} / {{ else if COND }} / {{ else }} / {{ end }}`, trim markers
`{{-`/`-}}`, and conditions built from `eq`, `ne`, `not`, `or`, `and`, `index` and parentheses. Anything
else raises: a template this cannot read fails the test instead of passing by accident.
"""

from __future__ import annotations

import re

ACTION = re.compile(r"{{(-?)\s*(.*?)\s*(-?)}}", re.S)


def _tokens(template: str) -> list[tuple[str, str]]:
    out, position = [], 0
    for match in ACTION.finditer(template):
        text = template[position : match.start()]
        if match.group(1):
            text = text.rstrip()
        out.append(("text", text))
        out.append(("action", match.group(2)))
        position = match.end()
        if match.group(3):
            rest = template[position:]
            position += len(rest) - len(rest.lstrip())
    out.append(("text", template[position:]))
    return out


def _parse(tokens, i=0, stop=("end",)):
    """A list of nodes until one of `stop`; returns (nodes, index of the stopping action, its text)."""
    nodes = []
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "text":
            nodes.append(("text", value))
            i += 1
            continue
        head = value.split(" ", 1)[0]
        if head in stop or value.startswith("else"):
            return nodes, i, value
        if head == "if":
            branches, i = _parse_if(tokens, i)
            nodes.append(("if", branches))
        elif head == "range":
            body, i, closing = _parse(tokens, i + 1)
            assert closing == "end", closing
            nodes.append(("range", value[len("range") :].strip(), body))
            i += 1
        elif value.startswith("."):
            nodes.append(("value", value))
            i += 1
        else:
            raise ValueError(f"unsupported action {{{{ {value} }}}}")
    return nodes, i, None


def _parse_if(tokens, i):
    branches = []
    condition = tokens[i][1][len("if") :].strip()
    while True:
        body, i, closing = _parse(tokens, i + 1)
        branches.append((condition, body))
        if closing == "end":
            return branches, i + 1
        if closing.startswith("else if"):
            condition = closing[len("else if") :].strip()
        elif closing == "else":
            condition = None
        else:
            raise ValueError(f"unexpected {{{{ {closing} }}}}")


def _field(path: str, data):
    value = data
    for part in path.strip(".").split("."):
        if part:
            value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


def _words(text: str) -> list:
    """Split a condition into words, with parenthesised groups (and a field read off them) as lists."""
    out, i = [], 0
    while i < len(text):
        char = text[i]
        if char.isspace():
            i += 1
        elif char == "(":
            depth, j = 1, i + 1
            while depth:
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
            group = _words(text[i + 1 : j - 1])
            field = re.match(r"\.[A-Za-z_.]+", text[j:])
            if field:  # (index .Messages 0).Role
                group = ["__field__", group, field.group(0)]
                j += field.end()
            out.append(group)
            i = j
        elif char == '"':
            j = text.index('"', i + 1)
            out.append(text[i : j + 1])
            i = j + 1
        else:
            j = i
            while j < len(text) and not text[j].isspace() and text[j] not in "()":
                j += 1
            out.append(text[i:j])
            i = j
    return out


FUNCTIONS = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "not": lambda a: not a,
             "index": lambda seq, n: seq[n]}  # fmt: skip


def _evaluate(word, data):
    """One operand: a literal, a field, or a parenthesised command (with a field read off its value)."""
    if isinstance(word, list) and word and word[0] == "__field__":
        return _field(word[2], _call(word[1], data))
    if isinstance(word, list):
        return _call(word, data)
    if word.startswith('"'):
        return word[1:-1]
    if word.isdigit():
        return int(word)
    if word.startswith("."):
        return _field(word, data)
    raise ValueError(f"unsupported operand {word}")


def _call(words: list, data):
    """A command: `or`/`and` stop at the first operand that decides (as Go's do since 1.18)."""
    head, args = words[0], words[1:]
    if not args:
        return _evaluate(head, data)
    if head in ("or", "and"):
        value = None
        for arg in args:
            value = _evaluate(arg, data)
            if bool(value) == (head == "or"):
                return value
        return value
    return FUNCTIONS[head](*(_evaluate(a, data) for a in args))


def _condition(text: str, data):
    return _call(_words(text), data)


def _render(nodes, data) -> str:
    out = []
    for node in nodes:
        if node[0] == "text":
            out.append(node[1])
        elif node[0] == "value":
            out.append(str(_field(node[1], data)))
        elif node[0] == "range":
            for item in _field(node[1], data):
                out.append(_render(node[2], item))
        elif node[0] == "if":
            for condition, body in node[1]:
                if condition is None or _condition(condition, data):
                    out.append(_render(body, data))
                    break
    return "".join(out)


def render(template: str, messages: list[dict]) -> str:
    nodes, _, closing = _parse(_tokens(template), stop=())
    assert closing is None, f"unbalanced template: {closing}"
    data = {"Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages]}
    return _render(nodes, data)
