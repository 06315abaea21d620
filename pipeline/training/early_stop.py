"""Best checkpoint and early stopping, and why training stopped, in words.

Local training uses the Trainer's own machinery: `load_best_model_at_end` with `metric_for_best_model`
= the validation loss (KL for bake) keeps the best checkpoint from rotation and loads it when training
ends, and transformers' `EarlyStoppingCallback` stops training once that loss has not improved for
`early_stopping_patience` evaluations. A checkpoint is saved at every evaluation, so the best one is
always on disk. What this module adds: the settings, the figures the job records, and the sentences
the Train and monitoring pages show. Cloud providers stop nothing on our behalf: for their jobs,
`rising` says when the validation loss they report has turned upward.

The figures recorded at the step where training ended (as metrics, so they reach the database
through the job's reporting): best_step, best_val_loss, stopped_early (1 or 0), patience.
"""

from __future__ import annotations

import math

RISING_REPORTS = 2  # a cloud job's validation loss up this many reports in a row after its minimum: a warning


def loss_words(method: str) -> str:
    return "validation KL" if method == "bake" else "validation loss"


def trainer_settings(patience: int, with_eval: bool, eval_every: int) -> dict:
    """The Trainer's arguments for a best checkpoint: a checkpoint at every evaluation, the best kept."""
    if not (with_eval and patience > 0):
        return {}
    return {
        "save_steps": eval_every,  # the best checkpoint can only be one that was saved
        "load_best_model_at_end": True,
        "metric_for_best_model": "eval_loss",
        "greater_is_better": False,
    }


def attach(trainer, patience: int) -> bool:
    """Add transformers' EarlyStoppingCallback where the trainer keeps its best checkpoint; True if added."""
    if patience <= 0 or not getattr(trainer.args, "load_best_model_at_end", False):
        return False
    from transformers import EarlyStoppingCallback

    trainer.add_callback(EarlyStoppingCallback(early_stopping_patience=patience))
    return True


def outcome(trainer, patience: int, cancelled: bool) -> dict | None:
    """What the trainer's state says once training ended: the best step and loss, and whether it stopped
    early; None when there was no best checkpoint to keep (no validation split, or early stopping off)."""
    state = trainer.state
    if not getattr(trainer.args, "load_best_model_at_end", False) or state.best_metric is None:
        return None
    best_step = state.best_global_step
    if best_step is None and state.best_model_checkpoint:
        best_step = int(str(state.best_model_checkpoint).rstrip("/").rsplit("-", 1)[-1])
    return {
        "best_step": int(best_step or 0),
        "best_val_loss": float(state.best_metric),
        "stopped_early": int(not cancelled and state.global_step < state.max_steps),
        "stop_step": int(state.global_step),
        "patience": patience,
    }


def reason(figures: dict, method: str = "sft") -> str:
    """Why training ended, in one sentence, from the recorded figures."""
    what = loss_words(method)
    best, loss, stop = figures["best_step"], figures["best_val_loss"], figures["stop_step"]
    patience = int(figures.get("patience") or 0)
    if figures.get("stopped_early"):
        times = "evaluation" if patience == 1 else "evaluations"
        return (
            f"stopped at step {stop}: {what} had not improved for {patience} {times} since step {best} ({loss:.2f}); "
            f"the model is the checkpoint of step {best}"
        )
    if best == stop:
        return f"ran all {stop} steps; the last evaluation had the lowest {what} ({loss:.2f})"
    return f"ran all {stop} steps; the lowest {what} was at step {best} ({loss:.2f}), and that checkpoint is the model"


def from_metrics(metrics: list[dict], method: str = "sft") -> tuple[int | None, str]:
    """(the best step, why training stopped) from a job's metric rows: the recorded figures once training
    ended; while it runs, the lowest validation loss so far and no sentence."""
    for row in reversed(metrics):
        if _number(row.get("best_step")) and _number(row.get("best_val_loss")):
            figures = {
                "best_step": int(row["best_step"]),
                "best_val_loss": float(row["best_val_loss"]),
                "stopped_early": int(row.get("stopped_early") or 0),
                "stop_step": int(row["step"]),
                "patience": int(row.get("patience") or 0),
            }
            return figures["best_step"], reason(figures, method)
    points = validation_points(metrics)
    if not points:
        return None, ""
    return min(points, key=lambda p: p[1])[0], ""


def validation_points(metrics: list[dict]) -> list[tuple[int, float]]:
    return sorted((int(r["step"]), float(r["val_loss"])) for r in metrics if _number(r.get("val_loss")))


def rising(points: list[tuple[int, float]], method: str = "sft", reports: int = RISING_REPORTS) -> str:
    """A warning when the validation loss rose in each of the last `reports` reports after its minimum
    (points: (step, loss) in step order); "" otherwise."""
    if len(points) < reports + 1:
        return ""
    tail = points[-(reports + 1) :]
    if not all(b[1] > a[1] for a, b in zip(tail, tail[1:], strict=False)):
        return ""
    best_step, best = min(points, key=lambda p: p[1])
    if best_step > tail[0][0]:
        return ""
    what = loss_words(method)
    return (
        f"The {what} has risen for {len(points) - 1 - points.index((best_step, best))} reports since step "
        f"{best_step} ({best:.2f}; now {points[-1][1]:.2f}): the model may be learning the training examples by "
        "heart. The provider trains to the end; consider fewer epochs or a lower learning rate next time."
    )


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
