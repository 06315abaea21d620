"""The quality gate: replies that are degenerate, off the subject or out of character are flagged
before review, each with its reasons in plain words (e.g. "shouting: 62% of letters are capitals").

A flagged example stays reviewable (its status does not change) but is left out of datasets and of a
run's training file unless asked for. The checks:

- repetition: 3-word phrases that repeat an earlier one, or the same line again and again;
- shouting: the share of letters that are capitals;
- non-words: the share of tokens that cannot be words (no vowel, a long consonant run, a letter three
  times in a row, letters mixed with symbols);
- punctuation: "!!!", "?!?", "...." and other runs;
- unrelated: MiniLM similarity of the reply to its document (or, imported, the message before it);
- persona: none of the persona's behavioural markers, offline (the markers' own words in the reply, and
  the closest reply sentence to a marker in MiniLM space) or, when a judge model is configured, by the
  LLM judge's 1-5 score on the markers.

Thresholds are settings (`settings.setting("quality", name)`: STUDIO_QUALITY_<NAME> or the settings
file's [quality] table); `Thresholds` lists them with their defaults.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, fields
from functools import cached_property, lru_cache

import numpy as np

from pipeline import settings
from pipeline.errors import UserFacingError

# check → the words each of its reasons starts with, "<label>: ..."
LABELS = {
    "repetition": "repetition",
    "shouting": "shouting",
    "non_words": "non-words",
    "punctuation": "runaway punctuation",
    "unrelated": "unrelated to its document",
    "persona": "no persona markers",
}
CHECKS = tuple(LABELS)
JUDGE_CANDIDATES = ("anthropic/claude-haiku-4-5", "openai/gpt-4.1-mini")  # "auto": the first with a key


@dataclass(frozen=True)
class Thresholds:
    repeated_phrases: float = 0.30  # share of 3-word phrases repeating an earlier one, at or above: flagged
    repeated_line: int = 3  # the same line (3 words or more) this many times
    capitals: float = 0.50  # share of letters that are capitals (replies with 20 letters or more)
    non_words: float = 0.25  # share of tokens that cannot be words (replies with 5 tokens or more)
    punctuation_run: int = 3  # this many ! or ? in a row, or one more of any . , ; : ! ?
    relevance: float = 0.15  # reply-to-document similarity below this: unrelated
    persona_words: int = 2  # distinct marker words in the reply below this ...
    persona_similarity: float = 0.30  # ... and no sentence this close to a marker: no persona markers
    judge_model: str = "auto"  # a model to score persona markers; "auto": a provider's small model; "off"
    judge_min_score: int = 2  # the judge's 1-5 score below this: no persona markers
    import_embedding_limit: int = 1000  # imports larger than this get the text checks only


def thresholds() -> Thresholds:
    """The defaults, with what the environment or the settings file sets."""
    values = {}
    for f in fields(Thresholds):
        raw = settings.setting("quality", f.name)
        if raw is None:
            continue
        kind = type(f.default)
        try:
            values[f.name] = raw if kind is str else kind(raw)
        except ValueError:
            raise UserFacingError(
                f"The quality setting {f.name} (STUDIO_QUALITY_{f.name.upper()}) must be "
                f"{'a whole number' if kind is int else 'a number'}; it is {raw!r}."
            ) from None
    return Thresholds(**values)


def check_of(reason: str) -> str | None:
    """The check a reason came from."""
    head = reason.split(":", 1)[0]
    return next((check for check, label in LABELS.items() if label == head), None)


def counts(issue_lists) -> dict[str, int]:
    """How many replies each check caught (a reply caught by two checks counts for both)."""
    found = Counter(check for issues in issue_lists for check in {check_of(i) for i in issues})
    return {check: found.get(check, 0) for check in CHECKS}


def _reason(check: str, text: str) -> str:
    return f"{LABELS[check]}: {text}"


# --- degenerate text: pure functions of the reply -------------------------------------------------------

WORDS = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
STRIP = "\"'“”‘’«»()[]{}<>*_`#~|.,;:!?…-–—/\\"
NUMBERISH = re.compile(r"[$€£]?\d[\d.,:/%x-]*(?:st|nd|rd|th|am|pm|k|m|bn|s|h|min)?%?", re.IGNORECASE)
CODE = re.compile(r"[A-Za-z]{1,3}\d{1,4}[A-Za-z]?|\d{1,4}[A-Za-z]{1,3}")
WORD = re.compile(r"[^\W\d_]+(?:['’.-][^\W\d_]+)*")
VOWELS = set("aeiouy")


def repetition(reply: str, t: Thresholds) -> str | None:
    lines = Counter(" ".join(line.lower().split()) for line in reply.splitlines() if len(line.split()) >= 3)
    line, times = lines.most_common(1)[0] if lines else ("", 0)
    if times >= t.repeated_line:
        return _reason("repetition", f"the line “{_short(line)}” appears {times} times")
    words = WORDS.findall(reply.lower())
    phrases = list(zip(words, words[1:], words[2:], strict=False))
    if len(phrases) < 8:
        return None
    seen, repeats = set(), 0
    for phrase in phrases:
        repeats += phrase in seen
        seen.add(phrase)
    share = repeats / len(phrases)
    if share < t.repeated_phrases:
        return None
    top, n = Counter(phrases).most_common(1)[0]
    return _reason("repetition", f"{share:.0%} of 3-word phrases repeat an earlier one (“{' '.join(top)}” {n} times)")


def shouting(reply: str, t: Thresholds) -> str | None:
    upper, lower = sum(map(str.isupper, reply)), sum(map(str.islower, reply))
    if upper + lower < 20:
        return None
    share = upper / (upper + lower)
    return _reason("shouting", f"{share:.0%} of letters are capitals") if share >= t.capitals else None


@lru_cache(maxsize=65536)  # a corpus repeats its words: an import of thousands of replies asks about few
def plausible(token: str) -> bool | None:
    """Whether a token can be a word (or a number, a code, a link); None for bare punctuation or symbols."""
    core = token.strip(STRIP)
    if not core or not any(c.isalnum() for c in core):
        return None
    if core.lower().startswith(("http://", "https://", "www.")) or re.fullmatch(r"[\w.+-]+@[\w-]+\.[\w.]+", core):
        return True
    if NUMBERISH.fullmatch(core) or CODE.fullmatch(core):
        return True
    if not WORD.fullmatch(core) or len(core) > 25:
        return False
    lower = core.lower()
    if not lower.isascii():
        return True  # another script or accents: not judged here
    if re.search(r"(.)\1\1", lower):
        return False  # "trrrrp", "zzzz"
    if core.isupper() and len(core) <= 6:
        return True  # KPI, CRM, SQL
    letters = re.sub(r"[^a-z]", "", lower)
    if not VOWELS & set(letters):
        return len(letters) <= 3  # "hmm", "nth"
    if not set("aeiou") & set(letters) and len(letters) >= 5:
        return False  # "dlvry"
    return not re.search(r"[^aeiouy]{5,}", letters) or len(letters) > 8  # "kjhgf"; "strengths" passes


def non_words(reply: str, t: Thresholds) -> str | None:
    verdicts = [(token, plausible(token)) for token in reply.split()]
    judged = sum(v is not None for _, v in verdicts)
    if judged < 5:
        return None
    bad = [token.strip(STRIP) for token, v in verdicts if v is False]
    share = len(bad) / judged
    if share < t.non_words:
        return None
    return _reason("non_words", f"{share:.0%} of tokens are not words (“{'”, “'.join(bad[:3])}”)")


@lru_cache(maxsize=8)
def _runs(length: int) -> re.Pattern:
    return re.compile(rf"[!?]{{{length},}}|[.,;:!?]{{{length + 1},}}")


def punctuation(reply: str, t: Thresholds) -> str | None:
    runs = [m.group() for m in _runs(t.punctuation_run).finditer(reply)]
    if not runs:
        return None
    more = f" and {len(runs) - 1} more run{'s' if len(runs) > 2 else ''}" if len(runs) > 1 else ""
    return _reason("punctuation", f"“{_short(runs[0], 12)}”{more}")


TEXT_CHECKS = (repetition, shouting, non_words, punctuation)


def text_issues(reply: str, t: Thresholds | None = None) -> list[str]:
    """The degenerate-text reasons for one reply (no model involved)."""
    t = t or thresholds()
    return [r for r in (check(reply or "", t) for check in TEXT_CHECKS) if r]


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- meaning: the document and the persona (MiniLM, offline) ----------------------------------------------

STOP = frozenset(
    """a an the and or of to in on at for with by from as is are be it its this that these those when what which
    each least one more most rather than their them they he she his her about into out up down before after not
    no uses asks names states offers ends does would like look keep when something someone who how any all
    instead""".split()  # noqa: SIM905 - a word list reads better as words
)


def _stem(word: str) -> str:
    word = word.lower().strip("'’\"")
    for suffix in ("ing", "es", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def _stems(text: str) -> set[str]:
    return {_stem(w) for w in re.findall(r"[A-Za-z][A-Za-z'’-]*", text)}


def _sentences(text: str) -> list[str]:
    found = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if len(s.split()) >= 2]
    return found[:24] or [text]


@dataclass
class Persona:
    """What a persona's replies should show: its traits' markers, their words and their embeddings."""

    name: str
    traits: list[dict]
    markers: list[str]
    cues: set[str]
    vectors: np.ndarray | None

    @classmethod
    def of(cls, name: str, traits: list[dict]) -> Persona:
        from pipeline import embeddings

        markers = [m for t in traits for m in (t.get("markers") or []) if m.strip()]
        cues = {w for m in markers for w in _stems(m) if w not in STOP and len(w) > 1}
        return cls(name, traits, markers, cues, embeddings.embed(markers) if markers else None)


def meaning_issues(pairs: list[tuple[str, str]], persona: Persona | None, t: Thresholds) -> list[list[str]]:
    """For each (document, reply): the unrelated and (offline) persona reasons. Embedded in batches."""
    from pipeline import embeddings

    if not pairs:
        return []
    documents = embeddings.embed([d or "" for d, _ in pairs])
    replies = embeddings.embed([r or "" for _, r in pairs])
    found = []
    for (document, reply), d, r in zip(pairs, documents, replies, strict=True):
        issues = []
        similarity = float(d @ r)
        if document.strip() and similarity < t.relevance:
            issues.append(
                _reason("unrelated", f"similarity in meaning {similarity:.2f}, at least {t.relevance:.2f} expected")
            )
        if persona is not None:
            issue = persona_offline(reply, persona, t)
            if issue:
                issues.append(issue)
        found.append(issues)
    return found


def persona_offline(reply: str, persona: Persona, t: Thresholds) -> str | None:
    """No persona markers, offline: few of the markers' words, and no sentence close to any marker."""
    from pipeline import embeddings

    if persona.vectors is None or not reply.strip():
        return None
    words = sorted(_stems(reply) & persona.cues)
    if len(words) >= t.persona_words:
        return None
    closest = float((embeddings.embed(_sentences(reply)) @ persona.vectors.T).max())
    if closest >= t.persona_similarity:
        return None
    return _reason(
        "persona",
        f"{len(words)} of the markers' words (at least {t.persona_words} expected) and no sentence close to a "
        f"marker (closest {closest:.2f}, below {t.persona_similarity:.2f})",
    )


# --- the judge (when a model is configured) ----------------------------------------------------------------


def judge_model(t: Thresholds) -> str | None:
    """The model that scores persona markers: the setting, or with "auto" a provider's small model when its
    key is set; None when there is none (the offline score decides)."""
    from pipeline.llm import catalog

    if t.judge_model.lower() in ("off", "none", "offline", ""):
        return None
    names = JUDGE_CANDIDATES if t.judge_model.lower() == "auto" else (t.judge_model,)
    for name in names:
        try:
            if catalog.resolve(name).configured:
                return name
        except UserFacingError:
            if t.judge_model.lower() != "auto":
                raise
    return None


async def persona_by_judge(
    model: str, document: str, reply: str, persona: Persona, t: Thresholds, job_id: int | None = None
) -> tuple[str | None, bool]:
    """(the reason or None, whether the judge answered with a score). A provider failure raises."""
    from pipeline.evaluation import judge

    trait = {
        "name": f"{persona.name} (any of its behaviours)",
        "description": "; ".join(f"{tr['name']}: {tr.get('description', '')}" for tr in persona.traits),
        "markers": persona.markers,
    }
    score, rationale, _cost = await judge.score_trait(model, trait, document, reply, job_id)
    if score is None:
        return None, False
    if score >= t.judge_min_score:
        return None, True
    why = _short(" ".join(judge.SCORE.sub("", rationale).split()), 140)
    return _reason("persona", f"the judge ({model}) scored it {score}/5 on the markers: {why}"), True


# --- the gate --------------------------------------------------------------------------------------------


class Gate:
    """Every check, for one persona. `check` (sync, batched: imports) and `acheck` (one reply: generation)."""

    def __init__(self, persona_name: str = "", traits: list[dict] | None = None, t: Thresholds | None = None):
        self.t = t or thresholds()
        self.persona = Persona.of(persona_name, traits) if traits else None

    @cached_property
    def judge(self) -> str | None:
        """The judge model, looked up on first use: imports never ask one, so never load the gateway."""
        return judge_model(self.t) if self.persona and self.persona.markers else None

    def check(self, pairs: list[tuple[str, str]], with_meaning: bool = True) -> list[list[str]]:
        """Reasons per (document, reply); the meaning checks offline only."""
        issues = [text_issues(reply, self.t) for _, reply in pairs]
        if with_meaning:
            for mine, more in zip(issues, meaning_issues(pairs, self.persona, self.t), strict=True):
                mine.extend(more)
        return issues

    async def acheck(self, document: str, reply: str, job_id: int | None = None) -> list[str]:
        """One reply; the persona check by the judge when one is configured (offline if it cannot answer)."""
        import asyncio

        issues = text_issues(reply, self.t)
        offline = await asyncio.to_thread(meaning_issues, [(document, reply)], self.persona, self.t)
        meaning = offline[0]
        if self.judge:
            try:
                reason, scored = await persona_by_judge(self.judge, document, reply, self.persona, self.t, job_id)
            except UserFacingError:
                scored = False  # the judge is down: the offline score stands
            if scored:
                meaning = [r for r in meaning if check_of(r) != "persona"] + ([reason] if reason else [])
        return issues + meaning
