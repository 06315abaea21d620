"""The model card: README.md in every export, with Hugging Face's front matter and the studio's figures.

The front matter (YAML between `---` lines) is what the Hub reads: `library_name`, `base_model` and how
this model relates to it, `pipeline_tag`, `license`, `datasets`, `tags`. The text says what the model
learnt from, how it was trained, how it did (ratings with intervals, persona likelihood, prompt
fidelity where measured) and how to run it: with transformers, vLLM, llama.cpp or Ollama.
"""

from __future__ import annotations

import shlex

import yaml

from pipeline.db import session_scope
from pipeline.llm import embedded
from pipeline.models import Dataset, ModelEntry, Persona
from pipeline.registry import figures

# Where the built-in model comes from on the Hub, and its licence (the base of every local fine-tune here).
HUB_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
LICENSES = {"smollm2-135m-instruct": "apache-2.0"}
# What each export is to its base, in the Hub's words, and the library that loads it.
RELATIONS = {
    "adapter": ("adapter", "peft"),
    "merged": ("merge", "transformers"),
    "gguf": ("quantized", "gguf"),
    "finetune": ("finetune", None),  # a cloud fine-tune: weights at the provider
}


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _base_id(entry: ModelEntry) -> str:
    """The base model as the Hub knows it when it is the built-in one, else as the studio names it."""
    base = (entry.base_model or "").removeprefix("local/")
    return HUB_IDS.get(base, entry.base_model or "unknown")


def _export_kind(entry: ModelEntry, merged: bool, gguf: dict | None) -> str:
    if gguf:
        return "gguf"
    name = figures.local_name(entry)
    if name is None:
        return "finetune"
    adapter = (embedded.model_path(name) / "adapter_config.json").exists()
    return "adapter" if adapter and not merged else "merged"


def front_matter(entry: ModelEntry, export_kind: str, dataset: Dataset | None) -> str:
    """The card's YAML header for `export_kind` (adapter, merged, gguf)."""
    relation, library = RELATIONS[export_kind]
    base = (entry.base_model or "").removeprefix("local/")
    method = (entry.config or {}).get("method")
    header = {
        **({"library_name": library} if library else {}),
        "base_model": _base_id(entry),
        "base_model_relation": relation,
        "pipeline_tag": "text-generation",
        "license": LICENSES.get(base, "other"),
        "tags": [
            t
            for t in (
                "persona-studio",
                "persona",
                "lora" if export_kind == "adapter" else None,
                export_kind if export_kind == "gguf" else None,
                method,
            )
            if t
        ],  # fmt: skip
    }
    if dataset is not None:
        header["datasets"] = [dataset.name]
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n"


def _gguf_section(entry: ModelEntry, gguf: dict) -> list[str]:
    """How to run an exported GGUF: Ollama (with the Modelfile beside it) and llama.cpp, and its check."""
    check = gguf.get("check") or {}
    lines = [
        f"`{gguf['file']}` ({gguf['file_type']}) holds the weights with the adapter merged, the tokenizer, its "
        "special tokens and the chat template: it runs on its own.",
        "",
    ]
    if check:
        lines += [
            f"Checked after writing: loaded back with transformers, it picks the same next token as the source "
            f"model at {check['top1_agreement']:.1%} of {check['positions']} positions on fixed chat prompts "
            f"(needed: {check['min_top1']:.0%}); largest logit difference {check['max_logit_difference']:.3g}.",
            "",
        ]
    if gguf.get("ollama"):
        lines += [
            "### Ollama",
            "",
            "Unzip, open a terminal in the folder, then:",
            "",
            f"    {gguf['ollama']['create']}",
            f"    {gguf['ollama']['run']}",
            "",
            "The Modelfile has no SYSTEM line: the persona is in the weights.",
            "",
        ]
    lines += [
        "### llama.cpp",
        "",
        f"    llama-server -m {shlex.quote(gguf['file'])} --host 127.0.0.1 --port 8080",
        "",
        "An OpenAI-compatible server on this machine only (`--host 0.0.0.0` exposes it: put a key in front).",
    ]
    return lines


def _offline_lines(by_mode: dict) -> list[str]:
    """Persona likelihood and prompt fidelity, per prompt mode, where the evaluation measured them."""
    lines = []
    for mode, q in by_mode.items():
        likelihood, fidelity = q.get("persona_likelihood"), q.get("prompt_fidelity")
        if likelihood:
            lines.append(
                f"- Persona likelihood ({mode}): {likelihood['mean']:.3f} per token (95% {likelihood['lower']:.3f} – "
                f"{likelihood['upper']:.3f}) over {likelihood['examples']} held-out replies"
            )
        if fidelity and fidelity.get("gap_closed") is not None:
            lines.append(
                f"- Prompt fidelity ({mode}): closes {fidelity['gap_closed']:.0%} of the gap to its base with the "
                f"persona's prompt (95% {fidelity['gap_lower']:.0%} – {fidelity['gap_upper']:.0%}; KL "
                f"{fidelity['kl']:.3f} per token, {fidelity['prompts']} prompts)"
            )
    return ["", *lines] if lines else []


def _loading_section(entry: ModelEntry, folder_name: str, merged: bool) -> list[str]:
    from pipeline.registry import export

    if entry.backend in figures.CLOUD_BACKENDS:
        return [
            f"The weights stay at {export.PROVIDERS.get(entry.backend, entry.backend)}. In the studio, call it as "
            f"`{entry.reference}`; with the provider's SDK, use the model id after the provider prefix.",
        ]
    if entry.backend == "prompt":
        return [f"A prompt-only variant: call `{entry.reference}` with the persona's prompt version as system prompt."]
    if figures.local_name(entry) is None:
        return [f"Call it in the studio as `{entry.reference}`."]
    folder = embedded.model_path(figures.local_name(entry))
    if not folder.exists():
        return ["The model's files are no longer in the studio's models folder."]
    base = export._base_folder(entry)
    adapter = export.is_adapter(folder) and not merged
    lines = ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer"]
    if adapter:
        lines += [
            "from peft import PeftModel",
            "",
            f'base = AutoModelForCausalLM.from_pretrained("{base}")  # the base model folder',
            f'model = PeftModel.from_pretrained(base, "{folder_name}")  # this folder, unzipped',
            f'tokenizer = AutoTokenizer.from_pretrained("{folder_name}")',
        ]
    else:
        lines += [
            "",
            f'model = AutoModelForCausalLM.from_pretrained("{folder_name}")  # this folder, unzipped',
            f'tokenizer = AutoTokenizer.from_pretrained("{folder_name}")',
        ]
    lines += [
        'messages = [{"role": "user", "content": "Summarise this memo in two sentences: ..."}]',
        'inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",'
        " return_dict=True)",
        "output = model.generate(**inputs, max_new_tokens=128)",
        'print(tokenizer.decode(output[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True))',
        "```",
        "",
    ]
    if adapter:
        lines += [
            f"In `adapter_config.json`, `base_model_name_or_path` is `{base.name}`, relative to the studio's models "
            "folder; passing the base model explicitly, as above, is all PEFT needs.",
            "",
        ]
    serve = export.vllm_command(entry, adapter_path=f"./{folder_name}") if adapter else None
    if serve is None:
        lines += [
            "Serve it with vLLM (an OpenAI-compatible server):",
            "",
            f"    vllm serve {shlex.quote(folder_name)} --served-model-name {shlex.quote(entry.name)} "
            "--host 127.0.0.1 --port 8000",
        ]
    else:
        lines += ["Serve it with vLLM (an OpenAI-compatible server):", "", f"    {serve['command']}"]
    return lines


def model_card(
    entry: ModelEntry, *, merged: bool = False, folder_name: str | None = None, gguf: dict | None = None
) -> str:
    """The model card in Markdown: what the model is, what it learnt from, how it did, how to load it.

    `folder_name` is the folder the loading snippet points at (the unzipped export's); `merged` writes the
    snippet for merged weights instead of the adapter.
    """
    with session_scope() as session:
        persona = session.get(Persona, entry.persona_id) if entry.persona_id is not None else None
        dataset = session.get(Dataset, entry.dataset_id) if entry.dataset_id is not None else None
    from pipeline.registry import export

    folder_name = folder_name or export.safe_name(entry) + ("-merged" if merged else "")
    trained = figures.training(entry)
    lines = [
        front_matter(entry, _export_kind(entry, merged, gguf), dataset),
        f"# {entry.name}",
        "",
        f"- Model id in the studio: `{entry.reference}`",
        f"- Base model: `{entry.base_model or '–'}`",
        f"- Backend: {entry.backend or '–'}; status: {entry.status}",
        f"- Persona: {persona.name if persona else '–'}",
        f"- Registered: {entry.created_at:%Y-%m-%d %H:%M} UTC" if entry.created_at else "- Registered: –",
        "",
        "## Dataset",
        "",
    ]
    if dataset is not None:
        counts = dataset.counts or {}
        lines += [
            f"- Name: {dataset.name}",
            f"- Training examples: {_fmt(counts.get('train'))}; validation examples: {_fmt(counts.get('validation'))}",
            f"- Tokens: {_fmt(counts.get('tokens'))}",
            f"- Content hash: `{dataset.content_hash or '–'}`",
        ]
    else:
        lines.append("Not trained in the studio on a saved dataset.")
    lines += ["", "## Hyperparameters", ""]
    if entry.config:
        lines += ["| setting | value |", "|---|---|"]
        lines += [f"| {key} | {_fmt(value, 6) if not isinstance(value, list) else ', '.join(map(str, value))} |"
                  for key, value in entry.config.items()]  # fmt: skip
    else:
        lines.append("None recorded.")
    lines += ["", "## Training", ""]
    if trained:
        lines += [
            f"- Job: {trained['job_id']}; steps: {_fmt(trained['steps'])}",
            f"- Final training loss: {_fmt(trained['train_loss'])}",
            f"- Final validation loss: {_fmt(trained['val_loss'])}",
        ]
    else:
        lines.append("Not trained in the studio.")
    lines += ["", "## Evaluation", ""]
    by_mode = (entry.metrics or {}).get("quality") or {}
    if by_mode:
        lines += [
            "Pairwise judged against the other contestants, Bradley-Terry ratings (base model at 1000) with "
            "bootstrap 95% intervals.",
            "",
            "| prompt mode | rating | interval | win rate vs base | mean trait score | consistency | judge |",
            "|---|---|---|---|---|---|---|",
        ]
        for mode, q in by_mode.items():
            traits = [v for v in (q.get("trait_scores") or {}).values() if isinstance(v, int | float)]
            lines.append(
                f"| {mode} | {_fmt(q.get('rating'), 5)} | {_fmt(q.get('lower'), 5)} – {_fmt(q.get('upper'), 5)} "
                f"| {_fmt(q.get('win_rate_vs_base'), 3)} | {_fmt(sum(traits) / len(traits), 3) if traits else '–'} "
                f"| {_fmt(q.get('consistency'), 3)} | {q.get('judge') or '–'} |"
            )
        scores = {t: s for q in by_mode.values() for t, s in (q.get("trait_scores") or {}).items()}
        if scores:
            lines += ["", "Trait scores (1–5): " + ", ".join(f"{t} {_fmt(s, 3)}" for t, s in scores.items())]
        lines += _offline_lines(by_mode)
    else:
        lines.append("Not evaluated yet.")
    performance = (entry.metrics or {}).get("performance")
    if performance:
        lines += [
            "",
            "## Speed",
            "",
            f"{_fmt(performance.get('tokens_per_s'))} tokens/s; time to first token "
            f"{_fmt(performance.get('ttft_ms'))} ms; latency p50 {_fmt(performance.get('latency_p50_ms'))} ms, "
            f"p95 {_fmt(performance.get('latency_p95_ms'))} ms ({performance.get('prompts')} prompts, up to "
            f"{performance.get('max_tokens')} tokens, measured {performance.get('measured_at')}).",
        ]
    if gguf:
        lines += ["", "## How to run it", "", *_gguf_section(entry, gguf), ""]
    else:
        lines += ["", "## How to load it", "", *_loading_section(entry, folder_name, merged), ""]
    return "\n".join(lines)
