"""Local training throughput: our backend's settings against a plain baseline, on the same work.

Same model (the embedded SmolLM2-135M), same LoRA, same examples of varied length, one epoch each:

- ours: TRL's SFTTrainer as pipeline/training/local.py builds it (bf16 where the CPU has AMX,
  batches grouped by length, loss on the reply only);
- baseline: transformers' plain Trainer, fp32, random batches padded to the longest in the batch.

Tokens/s counts the real (non-padding) tokens of the examples, so both are paid for the same work.
Then the end-to-end figure: a 50-example dataset, one epoch, through the real job (data → adapter
registered), wall time.

    .venv/bin/python bench/train_throughput.py [--examples 48] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["STUDIO_DATA_DIR"] = tempfile.mkdtemp(prefix="studio-bench-")
os.environ.setdefault("STUDIO_MODELS_DIR", str(REPO / "data" / "models"))

from pipeline import jobs, personas, startup  # noqa: E402
from pipeline.datasets import build  # noqa: E402
from pipeline.llm import embedded  # noqa: E402
from pipeline.review.filters import ExampleFilter  # noqa: E402
from pipeline.training import hardware, local, service  # noqa: E402
from pipeline.training.config import TrainingConfig  # noqa: E402
from tests.seed import add_examples, text  # noqa: E402


def conversations(count: int, seed: int = 7) -> list[list[dict]]:
    rng = random.Random(seed)
    return [
        [
            {"role": "user", "content": text(rng.randint(20, 250), i)},
            {"role": "assistant", "content": text(rng.randint(20, 200), i + 3)},
        ]
        for i in range(count)
    ]


def real_tokens(tokenizer, convs) -> int:
    return sum(len(ids) for ids in tokenizer.apply_chat_template(convs, tokenize=True, return_dict=True)["input_ids"])


def ours(config: TrainingConfig, convs, folder: Path) -> float:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = local.base_folder(config)
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source)
    rows = Dataset.from_list([{"prompt": c[:-1], "completion": c[-1:]} for c in convs])
    common = local.trainer_arguments(config, hardware.detect(), folder, with_eval=False)
    common |= {"save_strategy": "no", "logging_steps": 1000}
    trainer = local.build_trainer(config, model, tokenizer, local.lora_config(config), rows, None, common)
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started


def baseline(config: TrainingConfig, convs, folder: Path) -> float:
    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    source = local.base_folder(config)
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32), local.lora_config(config))
    encoded = tokenizer.apply_chat_template(
        convs, tokenize=True, return_dict=True, truncation=True, max_length=config.max_seq_length
    )
    rows = Dataset.from_dict({"input_ids": encoded["input_ids"]})

    def pad_to_longest(batch):
        longest = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), longest), tokenizer.pad_token_id)
        mask = torch.zeros((len(batch), longest), dtype=torch.long)
        for i, b in enumerate(batch):
            ids[i, : len(b["input_ids"])] = torch.tensor(b["input_ids"])
            mask[i, : len(b["input_ids"])] = 1
        labels = ids.masked_fill(mask == 0, -100)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    args = TrainingArguments(
        output_dir=str(folder),
        num_train_epochs=1,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1000,
        disable_tqdm=True,
        seed=config.seed,
        gradient_checkpointing=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=pad_to_longest)
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started


def peak_flops() -> tuple[float, str]:
    """A rough peak for this CPU: threads × clock × FLOPs per cycle (AMX bf16 1024, AVX-512 fp32 64)."""
    import torch

    mhz = 2000.0
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            mhz = float(line.split(":")[1])
            break
    gear = hardware.detect()
    per_cycle = 1024 if gear.bf16 else 64
    threads = torch.get_num_threads()
    return threads * mhz * 1e6 * per_cycle, f"{threads} threads x {mhz / 1000:.1f} GHz x {per_cycle} FLOPs/cycle"


def end_to_end(examples: int) -> float:
    startup.init(with_model=False)
    persona = personas.get_persona("collaborative")
    add_examples(persona.id, examples, status="accepted")
    build.save("bench-e2e", build.preview(ExampleFilter(persona_id=persona.id, statuses=["accepted"]), 0.1))
    started = time.perf_counter()
    job = service.start(TrainingConfig(dataset="bench-e2e", epochs=1, name="bench-e2e", save_every=1000))
    code = jobs.run(job.id)
    assert code == 0, "the end-to-end training failed: see its log"
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    embedded.ensure_embedded_model()
    config = TrainingConfig(dataset="bench", epochs=1, batch_size=args.batch_size, max_seq_length=1024)
    convs = conversations(args.examples)
    from transformers import AutoTokenizer

    tokens = real_tokens(AutoTokenizer.from_pretrained(local.base_folder(config)), convs)
    work = Path(tempfile.mkdtemp(prefix="studio-bench-train-"))
    baseline_s = baseline(config, convs, work / "baseline")
    ours_s = ours(config, convs, work / "ours")
    peak, how = peak_flops()
    parameters = 134_515_008  # SmolLM2-135M
    print(
        f"{args.examples} examples, {tokens:,} real tokens, batch {args.batch_size}, one epoch, "
        f"{hardware.detect().description}"
    )
    print(f"baseline (Trainer, fp32, random batches padded): {tokens / baseline_s:8.1f} tokens/s ({baseline_s:.1f} s)")
    print(f"ours (SFTTrainer, bf16, length-grouped):       {tokens / ours_s:8.1f} tokens/s ({ours_s:.1f} s)")
    print(f"ratio: {baseline_s / ours_s:.2f}x (target >= 1.5x)")
    for label, seconds in (("baseline", baseline_s), ("ours", ours_s)):
        flops = 6 * parameters * tokens / seconds  # the standard 6·N·T estimate of training FLOPs
        print(f"model FLOPs utilisation, {label}: {flops / peak:.2%} of a {peak / 1e12:.1f} TFLOP/s peak ({how})")
    print(f"end to end, 50 examples, 1 epoch, data to registered adapter: {end_to_end(50):.0f} s")


if __name__ == "__main__":
    main()
