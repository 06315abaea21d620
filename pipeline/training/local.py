"""Local LoRA training: TRL's SFTTrainer (or DPOTrainer) with PEFT, as the `train_local` job kind.

Loss is on the assistant's reply only (the dataset goes in as prompt / completion). Batches are
grouped by length so little is padding; bf16 where the hardware has it (CUDA, or a CPU with AMX).
Checkpoints land in the run folder; a cancelled or failed job resumes from its last one.
The adapter is saved whole into a local folder, published to the store's `models/<name>/` (pipeline/storage.py)
and registered, so `local/<name>` chats at once, on any machine that reads the store.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipeline import storage
from pipeline.datasets import build
from pipeline.errors import UserFacingError
from pipeline.jobs.context import JobContext
from pipeline.llm import embedded
from pipeline.training import bake, early_stop, hardware, registry, stage_one
from pipeline.training.callback import GalleryCallback, StudioCallback
from pipeline.training.config import TrainingConfig, load

CHECKPOINTS = "checkpoints"
DPO_CHECKPOINTS = "checkpoints-dpo"  # the DPO stage's, when a job has two stages


def model_name(config: TrainingConfig, job_id: int) -> str:
    raw = config.name or f"{config.dataset}-{config.method}-{job_id}"
    name = re.sub(r"[^a-z0-9._-]+", "-", raw.lower()).strip("-.")[:64]
    if not name or name == embedded.EMBEDDED_NAME:
        raise UserFacingError(f"{raw!r} cannot name a model.")
    return name


def conversations(path: Path) -> list[list[dict]]:
    return [json.loads(line)["messages"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sft_rows(path: Path) -> list[dict]:
    """Prompt / completion rows: TRL then computes the loss on the completion (the reply) only."""
    return [{"prompt": c[:-1], "completion": c[-1:]} for c in conversations(path) if c and c[-1]["role"] == "assistant"]


def dpo_rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [
        {
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}],
        }
        for r in rows
    ]


def base_folder(config: TrainingConfig) -> Path:
    base = config.resolved_base()
    if not base.startswith("local/"):
        raise UserFacingError(f"Local training needs a local base model (local/…), not {base!r}.")
    name = base.removeprefix("local/")
    if name == embedded.EMBEDDED_NAME:
        embedded.ensure_embedded_model()
    folder = embedded.model_path(name)
    if not (folder / "config.json").exists():
        raise UserFacingError(f"{base} is not a full model on this machine (an adapter cannot be a base).")
    return folder


def run(ctx: JobContext, params: dict) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = load(params["config"])
    dataset = build.get_dataset(config.dataset)
    name = model_name(config, ctx.job_id)
    gear = hardware.detect()
    (ctx.folder / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
    stages = f"{config.method} then DPO" if config.then_dpo else config.method
    ctx.log(f"training {name!r} on {gear.description}: {stages}, {config.epochs} epochs, dataset {dataset.name}")
    torch.manual_seed(config.seed)
    source = base_folder(config)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if gear.bf16 and gear.device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    callback = StudioCallback(ctx)
    arguments = lambda folder, with_eval: trainer_arguments(config, gear, ctx.folder / folder, with_eval)  # noqa: E731
    first = stage_one.done(ctx.folder) if config.then_dpo else None
    if first is not None:
        ctx.log(f"the {config.method.upper()} stage finished in an earlier attempt: going on with the DPO stage")
        trained = stage_one.load(ctx.folder, model)
    else:
        trainer = first_trainer(ctx, config, dataset, model, tokenizer, lambda e: arguments(CHECKPOINTS, e), callback)
        if trainer is None or not _train(ctx, trainer, ctx.folder / CHECKPOINTS):
            return
        if trainer.eval_dataset is not None and callback.last_val_loss is None:
            callback.last_val_loss = float(trainer.evaluate()["eval_loss"])
            ctx.log_metric(trainer.state.global_step, val_loss=callback.last_val_loss)
        first = {
            "train_loss": callback.last_loss,
            "val_loss": callback.last_val_loss,
            "examples": len(trainer.train_dataset),
            "tokens": int(trainer.state.num_input_tokens_seen or 0),
            "steps": trainer.state.global_step,
        }
        first |= _best_checkpoint(ctx, config, trainer)
        trained = trainer.model
        if config.then_dpo:
            stage_one.keep(ctx.folder, trained, first)
    metrics = {**first, "hardware": gear.description}
    if config.then_dpo:
        trainer = second_trainer(ctx, config, dataset, trained, tokenizer, arguments(DPO_CHECKPOINTS, False), callback)
        callback.step_offset, callback.stage = first["steps"], "DPO stage"
        if not _train(ctx, trainer, ctx.folder / DPO_CHECKPOINTS):
            return
        trainer.model.delete_adapter("ref")  # TRL's frozen copy of the first stage's adapter, the DPO reference
        metrics |= {
            "stages": [config.method, "dpo"],
            "first_stage_loss": first["train_loss"],
            "train_loss": callback.last_loss,
            "preference_pairs": len(trainer.train_dataset),
            "steps": first["steps"] + trainer.state.global_step,
        }
    folder = _save(trainer.model, tokenizer, name, source, config)
    entry = registry.register_local(
        name=name, folder=folder, config=config, dataset=dataset, job_id=ctx.job_id, metrics=metrics
    )
    steps = metrics["steps"]
    ctx.report_progress(steps, steps, unit="steps", message=f"saved {entry.reference}")
    ctx.log(f"saved the adapter to {folder} and registered {entry.reference}")
    from pipeline.registry import retrain

    retrain.after_training(ctx.job_id, entry, ctx.log)  # a retrain queues its evaluation; others: nothing


def first_trainer(ctx, config, dataset, model, tokenizer, arguments, callback):
    """The trainer of the job's (first) stage: SFT, DPO or bake; None when cancelled during bake's teacher pass."""
    from datasets import Dataset as HFDataset

    lora = lora_config(config)
    if config.method == "bake":
        trainer = bake.prepare(ctx, config, dataset, model, tokenizer, lora, arguments, [callback])
        if trainer is not None:
            _watch(ctx, config, dataset, tokenizer, trainer)
        return trainer
    if config.method == "dpo":
        train, evaluation = HFDataset.from_list(dpo_rows(build.file_path(dataset, "dpo"))), None
    else:
        train = HFDataset.from_list(sft_rows(build.file_path(dataset, "openai", "train")))
        rows = sft_rows(build.file_path(dataset, "openai", "validation"))
        evaluation = HFDataset.from_list(rows) if rows else None
    if len(train) == 0:
        raise UserFacingError(f"Dataset {dataset.name!r} has nothing to train on for {config.method.upper()}.")
    common = arguments(evaluation is not None)
    trainer = build_trainer(config, model, tokenizer, lora, train, evaluation, common, [callback])
    _watch(ctx, config, dataset, tokenizer, trainer)
    return trainer


def _watch(ctx: JobContext, config: TrainingConfig, dataset, tokenizer, trainer) -> None:
    """Early stopping (transformers' EarlyStoppingCallback, where a best checkpoint is kept) and the
    checkpoint gallery, on the first stage's trainer."""
    from pipeline.training import gallery

    what = early_stop.loss_words(config.method)
    if early_stop.attach(trainer, config.early_stopping_patience):
        ctx.log(
            f"early stopping: {what} every {config.eval_every} steps; training stops once it has not improved for "
            f"{config.early_stopping_patience} evaluations, and the best checkpoint becomes the model"
        )
    elif config.early_stopping_patience > 0 and config.method != "dpo":
        ctx.log(f"no validation split: no {what} to stop early on; training runs every epoch and keeps the last")
    probes = gallery.probes(dataset, config.gallery_probes)
    if probes:
        every = config.eval_every
        ctx.log(f"checkpoint gallery: {len(probes)} prompts answered without the system prompt every {every} steps")
        trainer.add_callback(
            GalleryCallback(ctx, probes, gallery.Scorer(dataset), every, config.gallery_max_tokens, tokenizer)
        )


def _best_checkpoint(ctx: JobContext, config: TrainingConfig, trainer) -> dict:
    """The best step and why training stopped: logged, recorded as metrics, and returned for the model's figures."""
    figures = early_stop.outcome(trainer, config.early_stopping_patience, ctx.cancelled())
    if figures is None:
        return {}
    sentence = early_stop.reason(figures, config.method)
    ctx.log(sentence[0].upper() + sentence[1:])
    recorded = {k: figures[k] for k in ("best_step", "best_val_loss", "stopped_early", "patience")}
    ctx.log_metric(figures["stop_step"], **recorded)
    return {**recorded, "val_loss": figures["best_val_loss"], "stop_reason": sentence}


def second_trainer(ctx, config, dataset, trained, tokenizer, common, callback):
    """DPO on the preference pairs, continuing the first stage's adapter; TRL keeps a frozen copy of that
    adapter as the reference, so the pairs move the model away from where the first stage left it."""
    from datasets import Dataset as HFDataset

    pairs = dpo_rows(build.file_path(dataset, "dpo"))
    if not pairs:
        raise UserFacingError(f"Dataset {dataset.name!r} has no preference pairs for the DPO stage.")
    ctx.log(f"DPO stage: {len(pairs)} preference pairs, from the {config.method.upper()} stage's adapter")
    stage = config.model_copy(update={"method": "dpo"})
    return build_trainer(stage, trained, tokenizer, None, HFDataset.from_list(pairs), None, common, [callback])


def _train(ctx: JobContext, trainer, checkpoints: Path) -> bool:
    """Train, from the last checkpoint under `checkpoints` if there is one; False when cancelled."""
    found = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[-1]))
    if found:
        ctx.log(f"resuming from {found[-1].name}")
    trainer.train(resume_from_checkpoint=bool(found) or None)
    if getattr(trainer, "student_replies", 0):
        ctx.log(f"on-policy: the student wrote {trainer.student_replies} replies of its own in this run")
    if ctx.cancelled():
        ctx.log("cancelled: a checkpoint was saved; resume to continue")
        return False
    return True


def lora_config(config: TrainingConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.target_modules,
        task_type="CAUSAL_LM",
    )


def trainer_arguments(config: TrainingConfig, gear: hardware.Hardware, output_dir: Path, with_eval: bool) -> dict:
    """The trainer settings every local run uses (and bench/train_throughput.py measures)."""
    return {
        "output_dir": str(output_dir),
        "num_train_epochs": config.epochs,
        "learning_rate": config.learning_rate,
        "per_device_train_batch_size": config.batch_size,
        "per_device_eval_batch_size": config.batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation,
        "logging_steps": 1,
        "save_steps": config.save_every,
        "save_total_limit": 2,
        "eval_strategy": "steps" if with_eval else "no",
        "eval_steps": config.eval_every,
        **early_stop.trainer_settings(config.early_stopping_patience, with_eval, config.eval_every),
        "seed": config.seed,
        "bf16": gear.bf16,
        "use_cpu": gear.device == "cpu",
        "report_to": "none",
        "gradient_checkpointing": False,  # a small model: recomputing activations costs more than it saves
        "include_num_input_tokens_seen": True,
        "train_sampling_strategy": "group_by_length",  # similar lengths together: less padding
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }


def build_trainer(config, model, tokenizer, lora, train, evaluation, common, callbacks=()):
    """TRL's SFTTrainer (loss on the completion only) or DPOTrainer, with the LoRA attached."""
    if config.method == "dpo":
        from trl import DPOConfig, DPOTrainer

        # pairs carry chosen and rejected ids, not one input_ids: the length-grouped sampler cannot size them
        common = common | {"train_sampling_strategy": "random"}
        args = DPOConfig(**common, beta=config.dpo_beta, max_length=config.max_seq_length)
        return DPOTrainer(
            model=model,
            args=args,
            train_dataset=train,
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=list(callbacks),
        )
    from trl import SFTConfig, SFTTrainer

    _score_completion_only()
    args = SFTConfig(**common, max_length=config.max_seq_length, completion_only_loss=True)
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=evaluation,
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=list(callbacks),
    )


def _score_completion_only() -> None:
    """Project only the completion's positions through the LM head on CPU too, not just on CUDA.

    TRL's fused LM head compacts to the positions that carry a label only where Triton runs, so that
    Neuron-style compilers see fixed shapes; on a CPU in eager mode that reason does not apply, and the
    prompt (the document, most of each example) made up about 30% of our training time.
    """
    from trl.trainer import utils as trl_utils

    if getattr(trl_utils, "_use_triton", None) is not None and not getattr(trl_utils, "_studio_compacts", False):
        on_triton = trl_utils._use_triton
        trl_utils._use_triton = lambda device: device.type == "cpu" or on_triton(device)
        trl_utils._studio_compacts = True


def _save(model, tokenizer, name: str, source: Path, config: TrainingConfig) -> Path:
    """The adapter (and merged weights if asked), written whole into a local folder then published to the store
    as `models/<name>/` (renamed in, or uploaded); returns its folder on this machine."""
    with storage.publishing("models", name) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        adapter_config = staging / "adapter_config.json"
        data = json.loads(adapter_config.read_text())
        data["base_model_name_or_path"] = source.name  # a name, resolved in the models folder: survives a move
        adapter_config.write_text(json.dumps(data, indent=2))
        if config.merge:
            merged = model.merge_and_unload()
            merged.save_pretrained(staging / "merged")
            tokenizer.save_pretrained(staging / "merged")
    return embedded.model_path(name)
