"""Is a written GGUF file the model it came from? Load it back and compare next-token predictions.

transformers reads GGUF (`from_pretrained(folder, gguf_file=...)`): it rebuilds the tokenizer and chat
template from the file alone and dequantizes the weights. On fixed chat prompts the file's tokenizer must
give the same token ids and the same prompt text as the source's, and its next-token logits must pick the
same top token at (nearly) every position, a near-tie in the source counting as the same. The
tolerance is per type: quantizing changes logits by design.
A file that fails is not offered for download.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

# Top-1 agreement each type must reach over the probe positions. F16 is exact up to rounding; Q8_0 and
# Q4_1 move logits by design (measured on the built-in model: F16 1.000, Q8_0 0.97-0.99; README, bench/export.py).
# Q8_0's bar leaves room for the random tiny test model (0.93 on one machine, less with other thread counts); a
# broken file agrees at chance, far below any of these.
MIN_TOP1 = {"F16": 0.99, "Q8_0": 0.90, "Q4_1": 0.80}
# A position whose two best next tokens the source model scores within this share of its logit range is a
# tie: rounding may pick either, and that is not the file being wrong (a random tiny model is full of them).
TIE = 1e-3

PROBES = [
    [{"role": "user", "content": "Summarise this memo in two sentences: the Q3 budget rose 12% and hiring froze."}],
    [
        {"role": "system", "content": "You answer in one short paragraph."},
        {"role": "user", "content": "Write a note to the team about the delayed product launch."},
    ],
    [
        {"role": "user", "content": "What are the risks of moving the data centre?"},
        {"role": "assistant", "content": "Downtime, cost overruns and staff turnover."},
        {"role": "user", "content": "Which matters most, and why?"},
    ],
]


@dataclass(frozen=True)
class Check:
    file_type: str
    positions: int  # next-token predictions compared
    top1_agreement: float  # share of positions where the file picks the model's next token (or one tied with it)
    exact_top1: float  # the same, counting ties broken the other way as disagreements
    max_logit_difference: float
    min_top1: float
    tokenizer_matches: bool  # same prompt text and token ids from the file alone
    passed: bool
    reason: str  # in words, for the page when it fails

    def as_dict(self) -> dict:
        return asdict(self)


def verify(source: Path, gguf_path: Path, file_type: str) -> Check:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = gguf_path.parent, gguf_path.name
    reference_tokenizer = AutoTokenizer.from_pretrained(source)
    reference = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()

    positions = agree = exact = 0
    max_difference = 0.0
    tokenizer_matches = True
    with torch.no_grad():
        for messages in PROBES:
            text = reference_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            ids = reference_tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
            own_text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            own_ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
            tokenizer_matches &= own_text == text and own_ids.tolist() == ids.tolist()
            expected, got = reference(ids).logits[0], loaded(ids).logits[0]
            positions += expected.shape[0]
            best = expected.max(-1).values
            picked = expected.gather(-1, got.argmax(-1, keepdim=True)).squeeze(-1)
            tie = TIE * float(expected.max() - expected.min())
            agree += int((best - picked <= tie).sum())
            exact += int((expected.argmax(-1) == got.argmax(-1)).sum())
            max_difference = max(max_difference, float((expected - got).abs().max()))
    top1 = agree / positions
    minimum = MIN_TOP1[file_type]
    if not tokenizer_matches:
        reason = "the file's own tokenizer or chat template reads prompts differently from the model's"
    elif top1 < minimum:
        reason = f"it picks the same next token as the model at {top1:.0%} of positions, below the {minimum:.0%} needed"
    else:
        reason = ""
    return Check(
        file_type, positions, top1, exact / positions, max_difference, minimum, tokenizer_matches, not reason, reason
    )
