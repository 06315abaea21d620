"""Teacher and student views of one exchange, and the distance between their next-token distributions.

The teacher is a base model **with** the persona's system prompt; the student is a model (the same
base, or one trained from it) **without** it. Both read the same reply tokens after their own
context, so their distributions at each reply position can be compared token for token. Prompt
fidelity (evaluation) and prompt baking (training) are both built on this.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Views:
    """Token ids of one exchange as the teacher and as the student read it, with the same reply."""

    teacher: list[int]
    student: list[int]
    reply: int  # how many reply tokens end both sequences

    def teacher_start(self) -> int:
        return len(self.teacher) - self.reply

    def student_start(self) -> int:
        return len(self.student) - self.reply


def with_system(system_prompt: str, conversation: list[dict]) -> list[dict]:
    return [{"role": "system", "content": system_prompt}, *[m for m in conversation if m["role"] != "system"]]


def without_system(conversation: list[dict]) -> list[dict]:
    return [m for m in conversation if m["role"] != "system"]


def prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    found = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)
    return list(found["input_ids"])


def reply_ids(tokenizer, reply: str, limit: int | None = None) -> list[int]:
    """The reply's tokens and the end-of-turn token, tokenized once, so both views predict the same ids."""
    ids = tokenizer.encode(reply.strip(), add_special_tokens=False)
    if limit is not None:
        ids = ids[: max(0, limit - 1)]
    return [*ids, tokenizer.eos_token_id]


def views(
    tokenizer,
    teacher_messages: list[dict],
    student_messages: list[dict],
    reply: str,
    max_reply_tokens: int | None = None,
) -> Views:
    tail = reply_ids(tokenizer, reply, max_reply_tokens)
    return Views(
        prompt_ids(tokenizer, teacher_messages) + tail, prompt_ids(tokenizer, student_messages) + tail, len(tail)
    )


def reply_log_probs(model, ids: list[int], reply: int):
    """Log-probabilities over the vocabulary at each position that predicts one of the last `reply` ids
    (reply × vocabulary, float32)."""
    import torch

    tensor = torch.tensor([ids], device=model.device)
    logits = model(input_ids=tensor).logits[0, len(ids) - reply - 1 : len(ids) - 1].float()
    return torch.log_softmax(logits, dim=-1)


def kl_per_token(teacher_log_probs, student_log_probs):
    """KL(teacher ‖ student) at each reply position, in nats (a 1-D tensor)."""
    return (teacher_log_probs.exp() * (teacher_log_probs - student_log_probs)).sum(dim=-1)


def top_k(log_probs, k: int):
    """The teacher's k most likely tokens at each position: (log-probabilities, token ids)."""
    return log_probs.topk(min(k, log_probs.shape[-1]), dim=-1)


def top_k_kl(teacher_top, teacher_ids, student_log_probs):
    """KL(teacher ‖ student) from the teacher's top-k only, the rest of its mass in one bucket.

    With the rest as a (k+1)-th outcome this is a true KL between two distributions over k+1 outcomes:
    never negative, and zero when the student matches the teacher on those tokens and on the rest.
    Shapes: teacher_top, teacher_ids (positions × k); student_log_probs (positions × vocabulary).
    """
    import torch

    student_top = student_log_probs.gather(-1, teacher_ids)
    tiny = torch.finfo(student_top.dtype).tiny
    teacher_rest = (1 - teacher_top.exp().sum(-1)).clamp_min(tiny)
    student_rest = (1 - student_top.exp().sum(-1)).clamp_min(tiny)
    kept = (teacher_top.exp() * (teacher_top - student_top)).sum(-1)
    return kept + teacher_rest * (teacher_rest.log() - student_rest.log())
