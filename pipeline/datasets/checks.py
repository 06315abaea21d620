"""The data checks OpenAI runs on chat fine-tuning files, for any file or set of examples.

Every problem names its line (or example), field and kind; the valid rows are kept. The report
also gives the token distribution, which examples exceed the chosen base model's context, the
billed tokens (tokens × epochs) and the estimated training cost on every backend.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field

from pipeline.datasets import formats, reader, targets, tokens
from pipeline.datasets.targets import Target

# No token of the tokenizers the studio counts with covers more than 128 characters (cl100k's longest is
# 128 bytes, the embedded model's 81; tests/test_tokens.py checks), so a conversation of more than
# 128 × context characters cannot fit that context: it is reported without being tokenized, which for
# a 10 MB line would take many seconds and much memory.
MAX_CHARS_PER_TOKEN = 128


def characters(messages: list[dict]) -> int:
    return sum(len(m["content"]) for m in messages)


def cannot_fit(messages: list[dict], target: Target) -> Problem | None:
    """A too_many_tokens problem (line left for the caller) when the characters alone rule the context out."""
    chars = characters(messages)
    if chars <= MAX_CHARS_PER_TOKEN * target.context_tokens:
        return None
    return Problem(
        None,
        "messages",
        "too_many_tokens",
        f"{chars:,} characters, so at least {chars // MAX_CHARS_PER_TOKEN:,} tokens; "
        f"{target.base_model} trains on at most {target.context_tokens:,}",
    )


def over_context(count: int, target: Target) -> Problem | None:
    if count <= target.context_tokens:
        return None
    return Problem(
        None,
        "messages",
        "too_many_tokens",
        f"{count:,} tokens; {target.base_model} trains on at most {target.context_tokens:,}",
    )


@dataclass
class Problem:
    line: int | None  # the file's line; None for a whole-file problem or a stored example
    field: str
    kind: str
    message: str
    severity: str = "error"  # error | warning
    example_id: int | None = None

    def where(self) -> str:
        if self.example_id is not None:
            return f"example {self.example_id}"
        return f"line {self.line}" if self.line else "file"


@dataclass
class Report:
    target: str
    rows: int = 0  # non-blank rows read
    valid: int = 0
    invalid: int = 0
    blank_lines: list[int] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    formats: dict = field(default_factory=dict)
    tokens: list[int] = field(default_factory=list)  # per valid example, for the chosen target
    token_stats: dict = field(default_factory=dict)
    backends: list[dict] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors and self.valid > 0

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("tokens")
        data["ok"] = self.ok
        data["error_count"], data["warning_count"] = len(self.errors), len(self.warnings)
        return data


@dataclass
class Checked:
    """Valid conversations with where they came from, and the report on all of them."""

    conversations: list[list[dict]]
    origins: list[int]  # line numbers (files) or example ids (stored examples)
    report: Report


def check_file(
    data: bytes, name: str, target: Target | None = targets.DEFAULT, fmt: str | None = None, epochs: int | None = None
) -> Checked:
    report = Report(target=target.label if target else "")
    try:
        _, rows = reader.read(data, name)
        rows = list(rows)
    except reader.FileError as exc:
        report.problems.append(Problem(None, "", "unreadable_file", str(exc)))
        return Checked([], [], report)
    conversations, origins = [], []
    detected = Counter()
    for row in rows:
        if row.blank:
            report.blank_lines.append(row.line)
            continue
        report.rows += 1
        try:
            if row.error:
                raise row.error
            row_format = fmt or formats.detect(row.value)
            messages, notes = formats.from_row(row.value, row_format)
        except formats.RowError as exc:
            report.invalid += 1
            report.problems.append(Problem(row.line, exc.field, exc.kind, exc.message))
            continue
        detected[row_format] += 1
        report.problems += [Problem(row.line, "", "unknown_key", note, "warning") for note in notes]
        huge = cannot_fit(messages, target) if target is not None else None
        if huge is not None:  # not tokenized, not counted: it cannot be trained on
            huge.line = row.line
            report.invalid += 1
            report.problems.append(huge)
            continue
        conversations.append(messages)
        origins.append(row.line)
    report.formats = dict(detected)
    if report.blank_lines:
        lines = ", ".join(map(str, report.blank_lines[:10])) + (" …" if len(report.blank_lines) > 10 else "")
        report.problems.append(Problem(None, "", "blank_lines", f"blank lines skipped: {lines}", "warning"))
    if target is None:  # structure only (an import): tokens and costs belong to a dataset's check
        report.valid = len(conversations)
    else:
        _finish(report, conversations, origins, target, epochs, by_line=True)
    return Checked(conversations, origins, report)


def check_conversations(
    conversations: list[list[dict]], example_ids: list[int], target: Target = targets.DEFAULT, epochs: int | None = None
) -> Report:
    """The same report for examples about to become a dataset."""
    report = Report(target=target.label, rows=len(conversations), formats={"openai": len(conversations)})
    kept, origins = [], []
    for messages, example_id in zip(conversations, example_ids, strict=True):
        try:
            kept.append(formats.from_row({"messages": messages}, "openai")[0])
            origins.append(example_id)
        except formats.RowError as exc:
            report.invalid += 1
            report.problems.append(Problem(None, exc.field, exc.kind, exc.message, example_id=example_id))
    _finish(report, kept, origins, target, epochs, by_line=False)
    return report


def _finish(
    report: Report, conversations: list, origins: list[int], target: Target, epochs: int | None, by_line: bool
) -> None:
    report.valid = len(conversations)
    counts = tokens.count(conversations, target)
    for origin, count in zip(origins, counts, strict=True):
        problem = over_context(count, target)
        if problem is not None:
            problem.line, problem.example_id = (origin, None) if by_line else (None, origin)
            report.problems.append(problem)
    report.tokens = counts
    report.token_stats = _stats(counts)
    if 0 < report.valid < target.min_examples:
        report.problems.append(
            Problem(
                None,
                "",
                "too_few_examples",
                f"{report.valid} examples; {target.backend} needs at least {target.min_examples}",
            )
        )
    elif 0 < report.valid < target.recommended_examples:
        report.problems.append(
            Problem(
                None,
                "",
                "few_examples",
                f"{report.valid} examples; {target.recommended_examples}+ are recommended to teach a persona",
                "warning",
            )
        )
    report.backends = _costs(conversations, counts, target, epochs)


def _stats(counts: list[int]) -> dict:
    if not counts:
        return {}
    ordered = sorted(counts)

    def pct(p: float) -> int:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return {
        "examples": len(counts),
        "total": sum(counts),
        "min": ordered[0],
        "max": ordered[-1],
        "mean": round(statistics.fmean(counts), 1),
        "median": statistics.median(ordered),
        "p5": pct(0.05),
        "p95": pct(0.95),
    }


def _costs(conversations: list, chosen_counts: list[int], chosen: Target, epochs: int | None) -> list[dict]:
    by_tokenizer = {chosen.tokenizer: chosen_counts}  # count once per tokenizer, not per model
    rows = []
    extra = [] if chosen in targets.TARGETS else [chosen]  # e.g. a training run's own sequence length
    for target in extra + targets.TARGETS:
        if target.tokenizer not in by_tokenizer:
            by_tokenizer[target.tokenizer] = tokens.count(conversations, target)
        counts = by_tokenizer[target.tokenizer]
        runs = targets.epochs(target, len(counts), epochs)
        # tokens past the context are cut off, not billed (OpenAI's estimate does the same)
        billed = sum(min(c, target.context_tokens) for c in counts) * runs
        too_long = sum(c > target.context_tokens for c in counts)
        rows.append(
            {
                "backend": target.backend,
                "base_model": target.base_model,
                "examples": len(counts),
                "too_long": too_long,
                "epochs": runs,
                "billed_tokens": billed,
                "cost_usd": round(billed / 1e6 * target.usd_per_million_tokens, 4),
                "eligible": len(counts) >= target.min_examples and too_long == 0,
                "chosen": target == chosen,
            }
        )
    return rows


def money(usd: float) -> str:
    """Dollars as people read them; fractions of a cent keep four decimals rather than showing $0.00."""
    return f"${usd:,.2f}" if usd >= 0.01 or usd == 0 else f"${usd:.4f}"
