"""The `export` job: a local model as an adapter zip, merged weights, a GGUF file or an Ollama bundle.

Every export runs as a background job (the command line runs it in its own process), so a page shows
its progress and a long GGUF write never blocks one. Work happens in a scratch folder of its own,
`exports/.scratch/job-<id>/` (in this machine's cache when the store is remote); only a finished, checked zip is
published as the store's `exports/<file>`. A failed or
cancelled export, or one whose process is killed (the monitor's stop hook, `tidy`), leaves nothing
behind. A GGUF file that fails its check (gguf_check.py) is not kept.

What an export made is written to its run folder as `export.json` (file, size, seconds, the check's figures and
the commands to run it), and published as the store's `reports/<job-id>/export.json` for pages on other machines.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import select

from pipeline import access, jobs, storage
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.jobs.context import JobContext
from pipeline.llm import embedded
from pipeline.models import Job, ModelEntry
from pipeline.registry import export, figures, gguf_check, gguf_file, lifecycle, ollama

FORMATS = {
    "ollama": "Ollama (GGUF + Modelfile)",
    "gguf": "GGUF file (llama.cpp, LM Studio)",
    "adapter": "Adapter (small; needs its base model, transformers + PEFT or vLLM)",
    "merged": "Merged weights (transformers, vLLM)",
}
BUTTONS = {  # the Export tab's buttons, the one a non-engineer can run first
    "ollama": "Export for Ollama",
    "gguf": "Export a GGUF file",
    "adapter": "Export the adapter",
    "merged": "Export merged weights",
}
RESULT = "export.json"


@dataclass(frozen=True)
class ExportView:
    """The latest export of a model, as a page shows it."""

    job_id: int
    status: str
    format: str
    file_type: str | None
    done: int
    total: int
    message: str
    error: str | None
    result: dict | None  # export.json once it succeeded

    @property
    def active(self) -> bool:
        return self.status in jobs.ACTIVE

    @property
    def label(self) -> str:
        return FORMATS.get(self.format, self.format).split(" (")[0] + (f" {self.file_type}" if self.file_type else "")

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


def scratch_dir(job_id: int) -> Path:
    return storage.scratch("exports") / f"job-{job_id}"


def start(
    model: str | int, fmt: str, file_type: str = gguf_file.DEFAULT_TYPE, started_by: str = "", run_here: bool = False
) -> Job:
    """Queue an export of `model` (name, id or reference); refused at once, in words, when it cannot be done."""
    access.check("deploy")
    if fmt not in FORMATS:
        raise UserFacingError(f"Unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}.")
    entry = lifecycle.get(model)
    folder = embedded.model_path(export.refuse_unless_local(entry))
    if fmt == "adapter" and not export.is_adapter(folder):
        raise UserFacingError(
            f"{entry.name} is a full model, not an adapter: export its merged weights, GGUF or Ollama instead."
        )
    params = {"model_id": entry.id, "format": fmt}
    label = FORMATS[fmt].split(" (")[0]
    if fmt in ("gguf", "ollama"):
        if file_type not in gguf_file.TYPES:
            raise UserFacingError(f"Unknown GGUF type {file_type!r}: choose one of {', '.join(gguf_file.TYPES)}.")
        gguf_file.check_architecture(figures.adapter_base_folder(folder) if export.is_adapter(folder) else folder)
        params["file_type"] = file_type
        label += f" {file_type}"
    return jobs.submit("export", params, name=f"Export {entry.name}: {label}", started_by=started_by, run_here=run_here)


def run(ctx: JobContext, params: dict) -> None:
    entry = figures.get_entry(params["model_id"])
    fmt, file_type = params["format"], params.get("file_type")
    scratch = scratch_dir(ctx.job_id)
    shutil.rmtree(scratch, ignore_errors=True)  # what a killed attempt left
    scratch.mkdir(parents=True)
    began = time.monotonic()
    made: Path | None = None
    try:
        ctx.log(f"exporting {entry.name} as {fmt}" + (f" {file_type}" if file_type else ""))
        if fmt == "adapter":
            ctx.report_progress(0, 1, unit="steps", message="zipping the adapter", chart=False)
            made = export.export_adapter(entry.id, scratch)
            result = {}
        elif fmt == "merged":
            ctx.report_progress(0, 1, unit="steps", message="merging the adapter into its base", chart=False)
            made = export.export_merged(entry.id, scratch)
            result = {}
        else:
            made, result = _gguf_bundle(ctx, entry, file_type, with_modelfile=fmt == "ollama", scratch=scratch)
        if made is None or ctx.cancelled():
            if made is not None:
                storage.remove("exports", made.name)  # cancelled as it finished: the user asked for nothing left
            ctx.log("cancelled: nothing kept")
            return
        result.update(
            file=made.name, path=str(made), bytes=made.stat().st_size, seconds=round(time.monotonic() - began, 1),
            format=fmt, file_type=file_type, model=entry.name,
        )  # fmt: skip
        (ctx.folder / RESULT).write_text(json.dumps(result, indent=2), encoding="utf-8")
        storage.publish_report(ctx.job_id, ctx.folder / RESULT)
        ctx.report_progress(1, 1, unit="steps", message=f"{made.name}: {result['bytes'] / 1e6:.1f} MB", chart=False)
        ctx.log(f"wrote {made} ({result['bytes']} bytes) in {result['seconds']} s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _gguf_bundle(
    ctx: JobContext, entry: ModelEntry, file_type: str, with_modelfile: bool, scratch: Path
) -> tuple[Path | None, dict]:
    from transformers import AutoTokenizer

    folder = embedded.model_path(export.refuse_unless_local(entry))
    ctx.report_progress(0, 0, unit="steps", message="preparing the weights (merging the adapter)", chart=False)
    source = export.merged_weights(folder, scratch)
    if ctx.cancelled():
        return None, {}
    stem = f"{export.safe_name(entry)}-{file_type}"
    gguf_path = scratch / "gguf" / f"{stem}.gguf"
    gguf_path.parent.mkdir()

    def on_tensor(done: int, total: int, name: str) -> bool:
        ctx.report_progress(done, total + 2, unit="steps", message=f"writing {name}", chart=False)
        return not ctx.cancelled()

    try:
        written = gguf_file.write(source, gguf_path, file_type, name=entry.name, on_tensor=on_tensor)
    except InterruptedError:
        return None, {}
    ctx.log(f"wrote {written.tensors} tensors, {written.bytes} bytes; kept at F16: {written.fallbacks or 'none'}")
    ctx.report_progress(written.tensors, written.tensors + 2, message="checking the file against the model")
    check = gguf_check.verify(source, gguf_path, file_type)
    ctx.log(f"check: {check.as_dict()}")
    if not check.passed:
        raise UserFacingError(f"The {file_type} file failed its check and was not kept: {check.reason}.")
    if ctx.cancelled():
        return None, {}
    ctx.report_progress(written.tensors + 1, written.tensors + 2, message="packing the download")
    tokenizer = AutoTokenizer.from_pretrained(source)
    fmt = ollama.chat_format(tokenizer)
    commands = ollama.commands(entry.name)
    details = {
        "file": gguf_path.name,
        "file_type": file_type,
        "check": check.as_dict(),
        "ollama": commands if with_modelfile else None,
    }
    files: dict[str, Path | str] = {
        f"{stem}/{gguf_path.name}": gguf_path,
        f"{stem}/README.md": export.model_card(entry, gguf=details),
        f"{stem}/check.json": json.dumps(check.as_dict(), indent=2),
    }
    if with_modelfile:
        stops = ollama.stop_tokens(fmt, tokenizer.all_special_tokens)
        files[f"{stem}/Modelfile"] = ollama.modelfile(gguf_path.name, fmt, stops, entry.name)
    suffix = "-ollama" if with_modelfile else ""
    made = export.write_zip(f"{stem}{suffix}.zip", files, scratch)
    return made, {
        "check": check.as_dict(),
        "gguf_file": gguf_path.name,
        "gguf_bytes": written.bytes,
        "source_bytes": sum(p.stat().st_size for p in source.glob("*.safetensors")),
        "ollama": commands if with_modelfile else None,
        "llama_cpp": f"llama-server -m {gguf_path.name} --host 127.0.0.1 --port 8080",
    }


def tidy(job_id: int) -> None:
    """Stop hook: an export whose process died leaves no scratch files (its zip was never renamed in)."""
    shutil.rmtree(scratch_dir(job_id), ignore_errors=True)


def result(job_id: int) -> dict | None:
    """What export job `job_id` made (export.json), from the store, else its run folder here; None before."""
    path = storage.report(job_id, RESULT)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def latest(entry_id: int) -> ExportView | None:
    """The newest export job of model `entry_id`, with its progress, and what it made once done."""
    with session_scope() as session:
        found = [j for j in session.exec(select(Job).where(Job.kind == "export").order_by(Job.id.desc())).all()
                 if (j.params or {}).get("model_id") == entry_id]  # fmt: skip
    if not found:
        return None
    job = found[0]
    return ExportView(
        job_id=job.id,
        status=job.status,
        format=job.params.get("format", ""),
        file_type=job.params.get("file_type"),
        done=job.progress_done,
        total=job.progress_total,
        message=job.message,
        error=job.error,
        result=result(job.id) if job.status == "succeeded" else None,
    )
