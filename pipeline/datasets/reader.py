"""An uploaded dataset file's bytes → numbered rows. Every line that cannot be read is reported.

JSONL, a JSON array or CSV, chosen by the file's extension or, failing that, its first character.
Line numbers are 1-based lines of the file as the user sees it in an editor (for a JSON array,
the line where each element starts; for CSV, the line where each record starts).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass

from pipeline.datasets.formats import RowError

MAX_BYTES = 200 * 1024 * 1024  # Streamlit's own upload limit; larger files are refused up front
CSV_LAYOUTS = {  # columns → the format its rows are read as
    "alpaca": ({"instruction", "output"}, {"input", "system"}),
    "prompt_completion": ({"prompt", "completion"}, set()),
    "pairs": ({"user", "assistant"}, {"system"}),
}


@dataclass
class Row:
    line: int
    value: object = None
    error: RowError | None = None
    blank: bool = False


class FileError(ValueError):
    """The whole file cannot be read (encoding, container, CSV header): nothing in it is used."""


def decode(data: bytes) -> str:
    """Text from UTF-8 (a BOM is fine) or UTF-16 with a BOM; anything else is refused precisely."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FileError(
            f"line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at byte {exc.start}); save the file as UTF-8"
        ) from None


def container(name: str, text: str) -> str:
    lowered = name.lower()
    for ext, kind in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".csv", "csv"), (".json", "json")):
        if lowered.endswith(ext):
            return "jsonl" if kind == "json" and not text.lstrip().startswith("[") else kind
    first = text.lstrip()[:1]
    return "json" if first == "[" else "jsonl" if first == "{" else "csv" if "," in text[:2000] else "jsonl"


def read(data: bytes, name: str = "") -> tuple[str, Iterator[Row]]:
    """(container, rows). Raises FileError only when nothing in the file can be read."""
    if len(data) > MAX_BYTES:
        raise FileError(f"the file is {len(data) / 1e6:.0f} MB; the limit is {MAX_BYTES / 1e6:.0f} MB: split it")
    if b"\x00" in data[:4096] and not data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileError("this is a binary file, not JSONL, JSON or CSV text")
    try:
        text = decode(data)
    except FileError:
        sample = data[:2000].decode("utf-8", errors="replace")
        if container(name, sample) != "jsonl":
            raise
        return "jsonl", _jsonl_bytes(data)  # one bad line must not cost the others
    if not text.strip():
        raise FileError("the file is empty")
    kind = container(name, text)
    return kind, {"jsonl": _jsonl, "json": _json_array, "csv": _csv}[kind](text)


def _jsonl(text: str) -> Iterator[Row]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            yield Row(number, blank=True)
            continue
        try:
            yield Row(number, json.loads(line))
        except json.JSONDecodeError as exc:
            yield Row(number, error=RowError("", "invalid_json", f"not valid JSON: {exc.msg} (column {exc.colno})"))


def _jsonl_bytes(data: bytes) -> Iterator[Row]:
    """JSONL that is not all UTF-8: each line decoded on its own, the undecodable ones reported."""
    for number, raw in enumerate(data.removeprefix(codecs.BOM_UTF8).split(b"\n"), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Row(
                number,
                error=RowError(
                    "",
                    "encoding",
                    f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); save the file as UTF-8",
                ),
            )
            continue
        if number > 1 and not raw and number == data.count(b"\n") + 1:
            return  # the empty piece after the final newline is not a line
        yield from (Row(number, r.value, r.error, r.blank) for r in _jsonl(line))


def _json_array(text: str) -> Iterator[Row]:
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    while True:
        position = _skip_space(text, position)
        if position >= len(text):
            yield Row(_line(text, position), error=RowError("", "invalid_json", "the JSON array is not closed with ]"))
            return
        if text[position] == "]":
            return
        line = _line(text, position)
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            # the rest of the array cannot be found reliably: report where it broke and stop
            yield Row(exc.lineno, error=RowError("", "invalid_json", f"not valid JSON: {exc.msg} (column {exc.colno})"))
            return
        yield Row(line, value)
        position = _skip_space(text, position)
        if position < len(text) and text[position] == ",":
            position += 1
        elif position < len(text) and text[position] != "]":
            yield Row(_line(text, position), error=RowError("", "invalid_json", "expected , or ] between items"))
            return


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _line(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


def _csv(text: str) -> Iterator[Row]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = {c.strip().lower() for c in reader.fieldnames or [] if c}
    layout = next((name for name, (needed, _) in CSV_LAYOUTS.items() if needed <= columns), None)
    if layout is None:
        wanted = "; ".join(" + ".join(sorted(needed)) for needed, _ in CSV_LAYOUTS.values())
        raise FileError(f"line 1: the CSV has columns {', '.join(sorted(columns)) or 'none'}; it needs {wanted}")
    record_start = 2
    for record in reader:
        line, record_start = record_start, reader.line_num + 1
        if None in record:  # DictReader's key for values past the header
            yield Row(line, error=RowError("", "extra_columns", "this record has more values than the header"))
            continue
        values = {k.strip().lower(): v for k, v in record.items() if k}
        short = [k for k, v in values.items() if v is None]
        if short and any((v or "").strip() for v in values.values()):
            yield Row(line, error=RowError(short[0], "missing_columns", f"this record has no value for {short[0]!r}"))
            continue
        if not any((v or "").strip() for v in values.values() if isinstance(v, str)):
            yield Row(line, blank=True)
            continue
        yield Row(line, _csv_row(layout, values))


def _csv_row(layout: str, values: dict) -> dict:
    if layout == "pairs":
        messages = [{"role": "system", "content": values["system"]}] if (values.get("system") or "").strip() else []
        return {
            "messages": messages
            + [
                {"role": "user", "content": values.get("user")},
                {"role": "assistant", "content": values.get("assistant")},
            ]
        }
    needed, optional = CSV_LAYOUTS[layout]
    return {k: values.get(k) for k in needed | optional if k in values and (k in needed or values.get(k))}
