"""Bake the prompt in: train a LoRA so the model *without* the persona's prompt behaves as it does *with* it.

Teacher = the base model with the persona's system prompt; student = the same base with the adapter,
without the prompt (one copy of the weights: the teacher pass runs before the adapter exists).
For each prompt of the dataset (its user turns; no gold reply needed) the teacher writes a reply
(off-policy; or the dataset's own reply), and its top-K next-token log-probabilities over that reply
are computed **once** and cached in the run folder (`teacher/`, one file per prompt). Training then
minimises KL(teacher ‖ student) over the reply positions (`distill.top_k_kl`), optionally plus a
weighted cross-entropy on the reply itself. A cancelled teacher pass keeps the files it wrote; a
resumed job computes only the missing ones, and training resumes from its last checkpoint.

On-policy (`bake_replies="student"`): at every step the student writes its own reply to each prompt
(adapter on, no prompt), the teacher scores that reply (adapter off, with the prompt), and the KL is
taken there: the student is corrected where it actually goes, at the price of a generation and a
teacher pass per example per step, so nothing of the training part is cached. Validation stays on the
cached teacher-written replies, so its KL reads the same across methods and epochs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline.datasets import build
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.jobs.context import JobContext
from pipeline.models import Persona
from pipeline.training import distill
from pipeline.training.config import TrainingConfig

TEACHER = "teacher"
MANIFEST = "manifest.json"


def system_prompt(dataset) -> str:
    """The persona's system prompt: what the teacher reads and the student must do without."""
    with session_scope() as session:
        persona = session.get(Persona, dataset.persona_id) if dataset.persona_id else None
    prompt = (persona.system_prompt if persona else "").strip()
    if not prompt:
        raise UserFacingError(
            "This persona has no system prompt, so there is nothing to bake in: write one on the Personas page, "
            "or choose 'Imitate the examples'."
        )
    return prompt


def extra_prompts(config: TrainingConfig, dataset) -> list[tuple[list[dict], str]]:
    """Prompts without replies to bake on too: typed ones, and the documents of examples whose reply failed."""
    found = [([{"role": "user", "content": p.strip()}], "") for p in config.bake_prompts if p.strip()]
    if config.bake_failed_documents and dataset.persona_id:
        from sqlmodel import select

        from pipeline.generation.prompts import response_request
        from pipeline.models import Example

        with session_scope() as session:
            rows = session.exec(
                select(Example.document_title, Example.document).where(
                    Example.persona_id == dataset.persona_id, Example.status == "failed", Example.document != ""
                )
            ).all()
        found += [([{"role": "user", "content": response_request(t, d)}], "") for t, d in rows]
    return found


def exchanges(path: Path) -> list[tuple[list[dict], str]]:
    """(the conversation before the reply, without any system prompt; the dataset's reply or "") per line."""
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        messages = json.loads(line)["messages"]
        reply = messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else ""
        turns = distill.without_system(messages[:-1] if reply else messages)
        if turns:
            found.append((turns, reply))
    return found


def key(item: tuple[list[dict], str]) -> str:
    """What a cache file was computed from: a resumed job whose prompts changed recomputes, never misreads."""
    return hashlib.sha256(json.dumps(item, sort_keys=True).encode()).hexdigest()[:16]


class TeacherCache:
    """The teacher's top-K log-probabilities per prompt, one file each (named by its place and its prompt's
    key), written whole then renamed."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, part: str, index: int, key: str) -> Path:
        return self.folder / f"{part}-{index:06d}-{key}.pt"

    def has(self, part: str, index: int, key: str) -> bool:
        return self.path(part, index, key).exists()

    def save(self, part: str, index: int, key: str, item: dict) -> None:
        import torch

        final = self.path(part, index, key)
        partial = final.with_suffix(".partial")
        torch.save(item, partial)
        partial.rename(final)
        self._count()

    def load(self, part: str, index: int, key: str) -> dict:
        import torch

        return torch.load(self.path(part, index, key), weights_only=True)

    def _count(self) -> None:
        manifest = self.folder / MANIFEST
        counted = json.loads(manifest.read_text()) if manifest.exists() else {"teacher_passes": 0}
        counted["teacher_passes"] += 1
        manifest.write_text(json.dumps(counted))

    def passes(self) -> int:
        """How many teacher forward passes this run has made in all (reused files are not counted again)."""
        manifest = self.folder / MANIFEST
        return json.loads(manifest.read_text())["teacher_passes"] if manifest.exists() else 0


def teacher_pass(ctx: JobContext, model, tokenizer, config: TrainingConfig, prompt: str, part: str, items, cache):
    """Write the cache files `part` still lacks: the teacher's reply and its top-K over each. Cancellable."""
    import torch

    keys = [key(item) for item in items]
    missing = [i for i in range(len(items)) if not cache.has(part, i, keys[i])]
    for done, index in enumerate(missing, start=1):
        if ctx.cancelled():
            return False
        turns, gold = items[index]
        teacher_messages = distill.with_system(prompt, turns)
        with torch.inference_mode():
            reply = (
                gold
                if config.bake_replies == "dataset" and gold
                else _sample(model, tokenizer, teacher_messages, config, index)
            )
            seen = distill.views(tokenizer, teacher_messages, turns, reply, config.bake_max_reply_tokens)
            top, ids = distill.top_k(distill.reply_log_probs(model, seen.teacher, seen.reply), config.bake_top_k)
        cache.save(
            part,
            index,
            keys[index],
            {
                "input_ids": torch.tensor(seen.student, dtype=torch.int32),
                "reply": seen.reply,
                "top": top.to(torch.float16).cpu(),
                "ids": ids.to(torch.int32).cpu(),
            },
        )
        ctx.report_progress(
            len(items) - len(missing) + done, len(items), "prompts", f"teacher pass ({part})", chart=False
        )
    return True


def _sample(model, tokenizer, messages: list[dict], config: TrainingConfig, index: int) -> str:
    import torch

    ids = torch.tensor([distill.prompt_ids(tokenizer, messages)], device=model.device)
    torch.manual_seed(config.seed + index)
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=config.bake_max_reply_tokens,
        do_sample=True,
        temperature=0.7,
        top_p=0.9,
        pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


class CachedPrompts:
    """A torch-style dataset over the cache files of one part (train or validation)."""

    def __init__(self, cache: TeacherCache, part: str, items: list):
        self.cache, self.part, self.keys = cache, part, [key(item) for item in items]

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int) -> dict:
        return self.cache.load(self.part, index, self.keys[index])


class OnPolicyPrompts:
    """On-policy training items: each prompt as the student reads it (no system prompt) and as the teacher
    does (with it). The reply is written by the student at each step (BakeTrainer.on_policy_loss)."""

    def __init__(self, tokenizer, prompt: str, items: list):
        self.rows = [
            (distill.prompt_ids(tokenizer, turns), distill.prompt_ids(tokenizer, distill.with_system(prompt, turns)))
            for turns, _ in items
        ]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        student, teacher = self.rows[index]
        return {"student_prompt": student, "teacher_prompt": teacher}


def collate(items: list[dict]) -> dict:
    """Right-padded student ids, and the teacher's top-K laid on the positions that predict reply tokens
    (on-policy items: both views of each prompt, the student's also padded as input_ids for token counts)."""
    import torch

    if "student_prompt" in items[0]:
        students = [torch.tensor(i["student_prompt"], dtype=torch.long) for i in items]
        padded = torch.nn.utils.rnn.pad_sequence(students, batch_first=True)
        return {
            "input_ids": padded,
            "attention_mask": (
                torch.arange(padded.shape[1])[None] < torch.tensor([len(s) for s in students])[:, None]
            ).long(),
            "student_prompts": students,
            "teacher_prompts": [torch.tensor(i["teacher_prompt"], dtype=torch.long) for i in items],
        }

    width = max(len(i["input_ids"]) for i in items)
    k = items[0]["top"].shape[-1]
    input_ids = torch.zeros(len(items), width, dtype=torch.long)
    attention = torch.zeros(len(items), width, dtype=torch.long)
    positions = torch.zeros(len(items), width, dtype=torch.bool)
    top = torch.zeros(len(items), width, k)
    ids = torch.zeros(len(items), width, k, dtype=torch.long)
    labels = torch.full((len(items), width), -100, dtype=torch.long)
    for row, item in enumerate(items):
        n, reply = len(item["input_ids"]), item["reply"]
        input_ids[row, :n] = item["input_ids"].long()
        attention[row, :n] = 1
        start = n - reply - 1  # the position whose logits predict the first reply token
        positions[row, start : n - 1] = True
        top[row, start : n - 1] = item["top"].float()
        ids[row, start : n - 1] = item["ids"].long()
        labels[row, n - reply : n] = input_ids[row, n - reply : n]
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "reply_positions": positions,
        "teacher_top": top,
        "teacher_ids": ids,
        "labels": labels,
    }


def make_trainer_class():
    import torch
    from transformers import Trainer

    class BakeTrainer(Trainer):
        """Loss = mean KL(teacher ‖ student) over reply positions (+ sft_weight × cross-entropy on the reply)."""

        sft_weight = 0.0
        top_k = 32
        max_reply_tokens = 96
        student_replies = 0  # on-policy: replies the student wrote in this process (counted by tests)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if "student_prompts" in inputs:
                loss = self.on_policy_loss(model, inputs["student_prompts"], inputs["teacher_prompts"])
                return (loss, None) if return_outputs else loss
            positions = inputs.pop("reply_positions")
            top, ids = inputs.pop("teacher_top"), inputs.pop("teacher_ids")
            labels = inputs.pop("labels")
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
            student = torch.log_softmax(outputs.logits[positions].float(), dim=-1)
            loss = distill.top_k_kl(top[positions], ids[positions], student).mean()
            if self.sft_weight > 0:
                targets = labels[:, 1:][positions[:, :-1]]
                loss = loss + self.sft_weight * torch.nn.functional.nll_loss(student, targets)
            return (loss, outputs) if return_outputs else loss

        def on_policy_loss(self, model, student_prompts, teacher_prompts):
            """Mean over the batch of KL(teacher ‖ student) on a reply the student writes now."""
            losses = []
            for student_prompt, teacher_prompt in zip(student_prompts, teacher_prompts, strict=True):
                reply = self.student_reply(model, student_prompt)
                with torch.no_grad(), model.disable_adapter():  # the teacher: the base, with the prompt
                    teacher = distill.reply_log_probs(model, [*teacher_prompt.tolist(), *reply], len(reply))
                top, ids = distill.top_k(teacher, self.top_k)
                ids_in = torch.tensor([[*student_prompt.tolist(), *reply]], device=model.device)
                start = len(student_prompt) - 1  # the position whose logits predict the first reply token
                logits = model(input_ids=ids_in).logits[0, start : start + len(reply)].float()
                losses.append(distill.top_k_kl(top, ids, torch.log_softmax(logits, dim=-1)).mean())
            return torch.stack(losses).mean()

        def student_reply(self, model, prompt) -> list[int]:
            """The student's own reply (adapter on, no prompt, dropout off), its end-of-turn token included."""
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    out = model.generate(
                        input_ids=prompt[None],
                        attention_mask=torch.ones_like(prompt[None]),
                        max_new_tokens=self.max_reply_tokens,
                        do_sample=True,
                        temperature=0.7,
                        top_p=0.9,
                        pad_token_id=self.processing_class.pad_token_id,
                    )
            finally:
                model.train(was_training)
            self.student_replies += 1
            return out[0, len(prompt) :].tolist() or [self.processing_class.eos_token_id]

    return BakeTrainer


def prepare(ctx: JobContext, config: TrainingConfig, dataset, model, tokenizer, lora, arguments, callbacks):
    """The teacher pass (what is not cached yet), then the trainer; None when cancelled during the pass.

    arguments(with_eval) gives the trainer settings every local run uses."""
    prompt = system_prompt(dataset)
    cache = TeacherCache(ctx.folder / TEACHER)
    parts = {part: exchanges(build.file_path(dataset, "openai", part)) for part in ("train", "validation")}
    parts["train"] += extra_prompts(config, dataset)
    if not parts["train"]:
        raise UserFacingError(f"Dataset {dataset.name!r} has no prompts to bake the persona's prompt in with.")
    on_policy = config.bake_replies == "student"
    ctx.log(f"teacher pass: top-{config.bake_top_k} of the base model with the persona's prompt, cached in teacher/")
    if on_policy:
        ctx.log("on-policy: the student writes its own replies during training; only validation is cached")
    for part, items in parts.items():
        if on_policy and part == "train":
            continue
        if not teacher_pass(ctx, model, tokenizer, config, prompt, part, items, cache):
            ctx.log("cancelled during the teacher pass: what it computed is kept; resume continues from it")
            return None
    ctx.log(f"teacher pass done ({cache.passes()} prompts computed in this run so far); training the student")
    common = arguments(bool(parts["validation"]))
    return build_trainer(config, model, tokenizer, lora, cache, parts, common, callbacks, prompt)


def build_trainer(config, model, tokenizer, lora, cache, parts, common, callbacks, prompt: str):
    from peft import get_peft_model
    from transformers import TrainingArguments

    if config.bake_replies == "student":
        train = OnPolicyPrompts(tokenizer, prompt, parts["train"])
    else:
        train = CachedPrompts(cache, "train", parts["train"])
    evaluation = CachedPrompts(cache, "validation", parts["validation"]) if parts["validation"] else None
    common = common | {"remove_unused_columns": False}
    common["train_sampling_strategy"] = "random"  # the cached items are not text: no length grouping
    args = TrainingArguments(**common)
    trainer_class = make_trainer_class()
    trainer = trainer_class(
        model=get_peft_model(model, lora),
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        data_collator=collate,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    trainer.sft_weight = config.bake_sft_weight
    trainer.top_k, trainer.max_reply_tokens = config.bake_top_k, config.bake_max_reply_tokens
    return trainer
