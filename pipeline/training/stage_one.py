"""The first stage of a two-stage training job (SFT or bake, then DPO), kept in the run folder.

Its adapter and figures are written whole (then renamed) the moment the stage ends, so a job cancelled
or killed during the DPO stage resumes there instead of training the first stage again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

STAGE_ONE = "stage1"
SUMMARY = "summary.json"


def keep(run_folder: Path, model, figures: dict) -> None:
    """Save the first stage's adapter (a PeftModel) and its figures (loss, steps, examples)."""
    final = run_folder / STAGE_ONE
    staging = run_folder / f".{STAGE_ONE}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    (staging / SUMMARY).write_text(json.dumps(figures), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)


def done(run_folder: Path) -> dict | None:
    """The first stage's figures when an earlier attempt finished it, else None."""
    summary = run_folder / STAGE_ONE / SUMMARY
    return json.loads(summary.read_text(encoding="utf-8")) if summary.exists() else None


def load(run_folder: Path, base):
    """The base model with the first stage's adapter on, trainable, for the DPO stage to continue."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base, run_folder / STAGE_ONE, is_trainable=True)
