"""Persona preference pairs: the persona's reply preferred over the plain model's own (Open Character Training).

For each prompt of a dataset (its train split's user turns) the base model answers **without** the
persona's prompt; that reply is *rejected* and the dataset's own reply (accepted or edited: the
persona's) is *chosen*. The `pairs` job writes each rejected reply to its run folder as it lands (a
resumed job asks only for the missing ones), then adds the pairs to the dataset's preference file,
beside the reviewers' edit pairs, so the DPO path (local and Together) trains on them. The examples
themselves, and so the dataset's content hash, do not change.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline import access, jobs, storage
from pipeline.datasets import build, formats
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.jobs.context import JobContext
from pipeline.models import Dataset, Job
from pipeline.settings import EMBEDDED_MODEL

REJECTED = "rejected.jsonl"  # in the run folder: {"index", "rejected"} per answered prompt
PERSONA_PAIRS = "persona-pairs.dpo.jsonl"  # in the dataset folder: the edit pairs and these
MAX_TOKENS = 256


def prompts_and_replies(dataset: Dataset) -> list[tuple[str, str]]:
    """(the user turn, the persona's reply) for each train example that has both."""
    found = []
    for line in build.file_path(dataset, "openai", "train").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        messages = json.loads(line)["messages"]
        user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        reply = messages[-1]["content"] if messages and messages[-1]["role"] == "assistant" else ""
        if user.strip() and reply.strip():
            found.append((user, reply))
    return found


def model_choices() -> list[str]:
    """Models that can give the plain replies, the built-in one first (the usual base)."""
    from pipeline.llm import catalog

    return list(dict.fromkeys([EMBEDDED_MODEL, *catalog.available_models()]))


def start(dataset: str, base_model: str = EMBEDDED_MODEL, max_tokens: int = MAX_TOKENS, started_by: str = "") -> Job:
    """Queue the job that makes the pairs (refused with the reason when the dataset has no replies)."""
    access.check("build_dataset")
    found = build.get_dataset(dataset)
    if not prompts_and_replies(found):
        raise UserFacingError(
            f"Dataset {found.name!r} has no replies to prefer: persona pairs need the persona's reply to each prompt."
        )
    params = {"dataset": found.name, "base_model": base_model, "max_tokens": int(max_tokens)}
    return jobs.submit("pairs", params, name=f"Persona pairs {found.name} vs {base_model}", started_by=started_by)


def _answered(path: Path) -> dict[int, str]:
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {row["index"]: row["rejected"] for row in rows}


def run(ctx: JobContext, params: dict) -> None:
    from pipeline.llm import chat

    dataset = build.get_dataset(params["dataset"])
    model, max_tokens = params.get("base_model") or EMBEDDED_MODEL, int(params.get("max_tokens", MAX_TOKENS))
    items = prompts_and_replies(dataset)
    store = ctx.folder / REJECTED
    answered = _answered(store)
    lock = threading.Lock()
    ctx.log(f"{len(items)} prompts; {len(answered)} answered already; {model} answers without the persona's prompt")
    ctx.report_progress(len(answered), len(items), unit="prompts", message=f"plain replies from {model}")

    def answer(index: int) -> None:
        if ctx.cancelled():
            return
        reply = chat(
            [{"role": "user", "content": items[index][0]}],
            [model],
            max_tokens=max_tokens,
            purpose="persona pairs",
            job_id=ctx.job_id,
        )
        with lock:
            with store.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"index": index, "rejected": reply.text}) + "\n")
            answered[index] = reply.text
            ctx.report_progress(len(answered), len(items), unit="prompts", message=f"plain replies from {model}")

    missing = [i for i in range(len(items)) if i not in answered]
    workers = 4 if model.startswith("local/") else 8  # the local model batches what arrives together
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(answer, missing))
    if ctx.cancelled():
        ctx.log(f"cancelled with {len(answered)} of {len(items)} answered; resume asks only for the rest")
        return
    made = save(dataset, items, answered)
    ctx.log(f"added {made} persona pairs to {dataset.name}'s preference file ({PERSONA_PAIRS})")


def save(dataset: Dataset, items: list[tuple[str, str]], answered: dict[int, str]) -> int:
    """Write the edit pairs and the persona pairs as the dataset's preference file; returns the persona pairs."""
    pairs = [
        {"prompt": prompt, "chosen": chosen, "rejected": answered[i], "source": "persona vs plain"}
        for i, (prompt, chosen) in enumerate(items)
        if answered.get(i, "").strip() and answered[i].strip() != chosen.strip()
    ]
    edits_file = build.folder(dataset.name) / "preferences.dpo.jsonl"
    edits = [json.loads(line) for line in edits_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    # one more read-only file in the snapshot's folder, published whole (a remote store's copies see a new version)
    text = formats.dumps_jsonl(edits + pairs)
    storage.write_file("datasets", f"{dataset.name}/{PERSONA_PAIRS}", text, read_only=True)
    with session_scope() as session:
        row = session.get(Dataset, dataset.id)
        row.files = {**row.files, "dpo": {"train": PERSONA_PAIRS}}
        row.counts = {**row.counts, "preference_pairs": len(edits) + len(pairs), "persona_pairs": len(pairs)}
        session.add(row)
    return len(pairs)
