"""The trainer callback that tells the studio what training is doing, and hears a cancel."""

from __future__ import annotations

import time

from transformers import TrainerCallback

from pipeline.jobs.context import JobContext
from pipeline.training import gallery


class StudioCallback(TrainerCallback):
    """metrics.jsonl (loss, validation loss, learning rate, tokens/s per step), progress, cancel → checkpoint."""

    def __init__(self, ctx: JobContext):
        self.ctx = ctx
        self._last = (time.perf_counter(), 0)
        self.last_loss: float | None = None
        self.last_val_loss: float | None = None
        # the second stage of a two-stage job: its steps continue the first stage's on the curve and in progress
        self.step_offset = 0
        self.stage = ""

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        values = {}
        if "loss" in logs:
            values["loss"] = self.last_loss = float(logs["loss"])
        if "eval_loss" in logs:
            values["val_loss"] = self.last_val_loss = float(logs["eval_loss"])
        if "learning_rate" in logs:
            values["learning_rate"] = float(logs["learning_rate"])
        seen = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        now = time.perf_counter()
        if "loss" in logs and seen > self._last[1]:
            values["tokens_per_s"] = round((seen - self._last[1]) / max(now - self._last[0], 1e-6), 1)
            self._last = (now, seen)
        if values:
            self.ctx.log_metric(self.step_offset + state.global_step, epoch=round(float(state.epoch or 0), 3), **values)

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = (time.perf_counter(), int(getattr(state, "num_input_tokens_seen", 0) or 0))
        done, total = self.step_offset + state.global_step, self.step_offset + state.max_steps
        self.ctx.report_progress(done, total, unit="steps", message=self.stage or "training")

    def on_step_end(self, args, state, control, **kwargs):
        loss = f", loss {self.last_loss:.3f}" if self.last_loss is not None else ""
        where = f"{self.stage}, " if self.stage else ""
        self.ctx.report_progress(
            self.step_offset + state.global_step,
            self.step_offset + state.max_steps,
            unit="steps",
            message=f"{where}epoch {state.epoch or 0:.2f}{loss}",
        )
        if self.ctx.cancelled():
            control.should_save = True  # a cancel keeps what was learned: it can be resumed
            control.should_training_stop = True
        return control


class GalleryCallback(TrainerCallback):
    """The checkpoint gallery (training/gallery.py): the probes answered and scored at step 0 and at every
    evaluation step, into gallery.jsonl and, as mean scores, the job's metrics."""

    def __init__(self, ctx: JobContext, probes: list, scorer, every: int, max_tokens: int, tokenizer):
        self.ctx, self.probes, self.scorer = ctx, probes, scorer
        self.every, self.max_tokens, self.tokenizer = every, max_tokens, tokenizer
        self.taken = gallery.steps(ctx.folder)  # a resumed job does not answer again at the steps it did

    def _take(self, step: int, model) -> None:
        if step in self.taken or self.ctx.cancelled() or not self.probes or model is None:
            return
        record = gallery.take(model, self.tokenizer, step, self.probes, self.scorer, self.max_tokens)
        gallery.append(self.ctx.folder, record)
        self.taken.add(step)
        values = {k: record[k] for k in ("persona_similarity", "persona_likelihood") if record[k] is not None}
        if step > 0 and values:
            self.ctx.log_metric(step, **values)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if state.global_step == 0:
            self._take(0, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every == 0:
            self._take(state.global_step, model)
