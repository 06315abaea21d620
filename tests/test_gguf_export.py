"""GGUF and Ollama exports: the file is llama.cpp's own layout, loads back through transformers with the
same predictions, carries its tokenizer and chat template, comes with a Modelfile whose template renders
what the tokenizer renders, and an export that fails or is cancelled leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline import jobs
from pipeline.errors import UserFacingError
from pipeline.jobs import foreground, queue, runfolder
from pipeline.llm import embedded
from pipeline.registry import export, export_job, gguf_check, gguf_file, ollama
from tests import go_template
from tests.test_registry_figures import ADAPTER, add_entry, make_adapter, register_adapter
from tests.tiny_model import TINY

CONVERSATIONS = [
    [{"role": "user", "content": "Hello there."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Plan the offsite."}],
    [
        {"role": "user", "content": "Draft the memo."},
        {"role": "assistant", "content": "Here is a draft:\n\n- one\n- two"},
        {"role": "user", "content": "Shorter, please."},
    ],
]


@pytest.fixture
def adapter(models):
    make_adapter()
    return register_adapter()


def run_export(model, fmt: str, file_type: str = "Q8_0", on_progress=None):
    job = export_job.start(model, fmt, file_type, run_here=True)
    finished, _ = foreground.run(job, jobs.kind_function("export"), on_progress or (lambda *a: None))
    return finished


def left_in_exports() -> set[str]:
    root = export.exports_dir()
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_the_writer_reproduces_llama_cpps_own_file_of_the_built_in_model(models, tmp_path):
    """The built-in model ships as a Q4_1 GGUF written by llama.cpp's converter; the studio's weights were
    dequantized from it. Written back at Q4_1, every tensor (type, shape, bytes), token, token type and
    merge must come out as llama.cpp wrote them: the Q/K permutation and the vocabulary are llama.cpp's."""
    import gguf

    ours = gguf.GGUFReader(
        gguf_file.write(embedded.model_path(embedded.EMBEDDED_NAME), tmp_path / "m.gguf", "Q4_1").path
    )
    shipped = gguf.GGUFReader(embedded._gguf_folder() / embedded.GGUF_FILE)
    theirs = {t.name: t for t in shipped.tensors}
    assert {t.name for t in ours.tensors} == set(theirs) and len(theirs) == 272
    for tensor in ours.tensors:
        other = theirs[tensor.name]
        assert tensor.tensor_type == other.tensor_type, tensor.name
        assert np.array_equal(tensor.data, other.data), tensor.name
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.pre",
                "tokenizer.ggml.model", "tokenizer.chat_template", "tokenizer.ggml.eos_token_id",
                "llama.rope.freq_base", "llama.attention.head_count_kv", "general.file_type"):  # fmt: skip
        assert ours.fields[key].contents() == shipped.fields[key].contents(), key


@pytest.mark.parametrize("file_type", ["F16", "Q8_0"])
def test_a_gguf_of_the_tiny_model_loads_back_with_the_same_predictions(models, tmp_path, file_type):
    written = gguf_file.write(models / TINY, tmp_path / f"tiny-{file_type}.gguf", file_type)
    check = gguf_check.verify(models / TINY, written.path, file_type)
    assert check.passed and check.tokenizer_matches and check.reason == ""
    assert check.positions > 60 and check.top1_agreement >= gguf_check.MIN_TOP1[file_type]
    assert check.max_logit_difference < (0.01 if file_type == "F16" else 0.1)


def test_a_gguf_of_the_built_in_model_loads_back_within_tolerance(models, tmp_path):
    source = embedded.model_path(embedded.EMBEDDED_NAME)
    for file_type, size in (("F16", 0.51), ("Q8_0", 0.28)):
        written = gguf_file.write(source, tmp_path / f"{file_type}.gguf", file_type)
        assert (
            written.bytes < size * (source / "model.safetensors").stat().st_size
        )  # F16 half of fp32, Q8_0 a bit over a quarter
        check = gguf_check.verify(source, written.path, file_type)
        assert check.passed and check.tokenizer_matches, check
        written.path.unlink()


def test_the_modelfile_template_renders_what_the_chat_template_renders(models):
    from transformers import AutoTokenizer

    # the renderer itself, on a template in the form Ollama's own ChatML models ship
    chatml = "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
    assert go_template.render(chatml, [{"role": "user", "content": "Hi"}]) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    tokenizer = AutoTokenizer.from_pretrained(embedded.model_path(embedded.EMBEDDED_NAME))
    fmt = ollama.chat_format(tokenizer)
    text = ollama.modelfile("persona-Q8_0.gguf", fmt, ollama.stop_tokens(fmt, tokenizer.all_special_tokens), "p")
    template = text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    for messages in CONVERSATIONS:
        expected = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        assert go_template.render(template, messages) == expected
    assert "SmolLM" in go_template.render(template, CONVERSATIONS[0])  # the template's own default system turn
    assert "SYSTEM" not in text.replace("No SYSTEM line", "")
    assert 'PARAMETER stop "<|im_end|>"' in text and "FROM ./persona-Q8_0.gguf" in text
    assert ollama.commands("Collab Persona v2!") == {
        "create": "ollama create collab-persona-v2 -f Modelfile", "run": "ollama run collab-persona-v2"
    }  # fmt: skip


def test_an_ollama_export_of_an_adapter_is_a_complete_checked_bundle(adapter, models, tmp_path):
    seen = []
    finished = run_export(ADAPTER, "ollama", "Q8_0", on_progress=lambda d, t, m: seen.append((d, t, m)))
    assert finished.status == "succeeded", finished.error
    result = export_job.result(finished.id)
    stem = f"{ADAPTER}-Q8_0"
    archive = export.exports_dir() / f"{stem}-ollama.zip"
    assert result["path"] == str(archive) and result["bytes"] == archive.stat().st_size and result["seconds"] > 0
    assert result["check"]["passed"] and result["check"]["top1_agreement"] >= 0.93
    assert result["ollama"]["create"] == f"ollama create {ADAPTER} -f Modelfile"
    assert result["llama_cpp"] == f"llama-server -m {stem}.gguf --host 127.0.0.1 --port 8080"
    assert any("writing blk.0" in m for _, _, m in seen) and seen[-1][0] == seen[-1][1]  # progress to the end
    assert left_in_exports() == {archive.name}  # no scratch, no partial file

    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(tmp_path)
        assert set(bundle.namelist()) == {
            f"{stem}/{n}" for n in (f"{stem}.gguf", "README.md", "Modelfile", "check.json")
        }
    folder = tmp_path / stem
    card = (folder / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["base_model"] == f"local/{TINY}" and header["base_model_relation"] == "quantized"
    assert header["library_name"] == "gguf" and header["pipeline_tag"] == "text-generation"
    assert header["datasets"] == ["collab-train"] and "persona-studio" in header["tags"]
    assert f"ollama create {ADAPTER} -f Modelfile" in card and "llama-server -m" in card
    # the file in the bundle is the merged adapter: it predicts as the served adapter does
    served = embedded.load(ADAPTER)
    import torch
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=f"{stem}.gguf", dtype=torch.float32)
    ids = served.tokenizer("Summarise the memo", return_tensors="pt").input_ids
    with torch.inference_mode():
        assert torch.equal(loaded(ids).logits.argmax(-1), served.model(ids).logits.argmax(-1))
    assert "FROM ./" + f"{stem}.gguf" in (folder / "Modelfile").read_text()


def test_the_card_front_matter_names_the_base_for_each_export(adapter, models):
    for merged, relation, library in ((False, "adapter", "peft"), (True, "merge", "transformers")):
        header = yaml.safe_load(export.model_card(adapter, merged=merged).split("---\n")[1])
        assert (header["base_model_relation"], header["library_name"]) == (relation, library)
        assert header["base_model"] == f"local/{TINY}" and header["license"] == "other"
    builtin = add_entry(name=embedded.EMBEDDED_NAME, reference=f"local/{embedded.EMBEDDED_NAME}",
                        base_model=embedded.EMBEDDED_NAME, backend="embedded")  # fmt: skip
    header = yaml.safe_load(export.model_card(builtin).split("---\n")[1])
    assert header["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and header["license"] == "apache-2.0"
    assert "datasets" not in header


def test_measured_offline_figures_reach_the_card(models):
    make_adapter()
    quality = {"plain": {"rating": 1100.0, "lower": 1010.0, "upper": 1190.0,
                         "persona_likelihood": {"mean": -1.806, "lower": -1.9, "upper": -1.7, "examples": 8},
                         "prompt_fidelity": {"gap_closed": 0.73, "gap_lower": 0.69, "gap_upper": 0.77, "kl": 0.052,
                                             "prompts": 8}}}  # fmt: skip
    card = export.model_card(register_adapter(metrics={"quality": quality}))
    assert "Persona likelihood (plain): -1.806 per token (95% -1.900 – -1.700) over 8 held-out replies" in card
    assert "Prompt fidelity (plain): closes 73% of the gap" in card and "(95% 69% – 77%" in card


def test_exports_that_cannot_be_made_are_refused_before_a_job_starts(adapter, models):
    cloud = add_entry(name="together-persona", reference="together_ai/acct/Meta-Llama-3.1-8B-persona-abc",
                      backend="together", base_model="meta-llama/Meta-Llama-3.1-8B-Instruct")  # fmt: skip
    with pytest.raises(UserFacingError, match="together_ai/acct/Meta-Llama-3.1-8B-persona-abc"):
        export_job.start(cloud.name, "gguf")
    with pytest.raises(UserFacingError, match="full model, not an adapter"):
        export_job.start(add_tiny_entry().name, "adapter")
    with pytest.raises(UserFacingError, match="Unknown GGUF type 'Q2_K'"):
        export_job.start(ADAPTER, "gguf", "Q2_K")
    with pytest.raises(UserFacingError, match="Unknown export format"):
        export_job.start(ADAPTER, "onnx")
    assert [j for j in jobs.list_jobs() if j.kind == "export"] == []


def add_tiny_entry():
    return add_entry(name="tiny-base", reference=f"local/{TINY}", base_model=TINY, backend="local")


def test_a_cancelled_export_leaves_nothing_behind(adapter, models):
    def cancel_midway(done, total, message):
        if message.startswith("writing") and done == 5:
            os.kill(os.getpid(), signal.SIGTERM)  # what the monitor sends on cancel

    finished = run_export(ADAPTER, "gguf", "F16", on_progress=cancel_midway)
    assert finished.status == "cancelled"
    assert export_job.result(finished.id) is None and left_in_exports() == set()
    assert "cancelled: nothing kept" in Path(runfolder.run_dir(finished.id) / "log.txt").read_text()


def test_a_file_that_fails_its_check_is_not_kept(adapter, models, monkeypatch):
    monkeypatch.setitem(gguf_check.MIN_TOP1, "Q8_0", 1.01)  # no file can pass: the check must say so
    with pytest.raises(UserFacingError, match="failed its check"):  # the command line says it too
        run_export(ADAPTER, "gguf", "Q8_0")
    finished = export_job.latest(adapter.id)
    assert finished.status == "failed" and finished.result is None
    assert "failed its check and was not kept" in finished.error and "below the 101% needed" in finished.error
    assert left_in_exports() == set()


def test_a_killed_exports_scratch_is_tidied_by_the_stop_hook(adapter, models):
    job = export_job.start(ADAPTER, "gguf")
    scratch = export_job.scratch_dir(job.id)
    (scratch / "gguf").mkdir(parents=True)
    (scratch / "gguf" / "half.gguf").write_bytes(b"GGUF" + b"\0" * 64)  # what a SIGKILL mid-write leaves
    queue.after_stop("export", job.id)  # the monitor calls it when it records the death
    assert left_in_exports() == set()


def test_the_adapter_and_merged_exports_run_as_jobs(adapter, models):
    for fmt, name in (("adapter", f"{ADAPTER}-adapter.zip"), ("merged", f"{ADAPTER}-merged.zip")):
        finished = run_export(ADAPTER, fmt)
        assert finished.status == "succeeded", finished.error
        assert export_job.result(finished.id)["file"] == name
        view = export_job.latest(adapter.id)
        assert (view.job_id, view.status, view.format, view.result["file"]) == (finished.id, "succeeded", fmt, name)
    assert left_in_exports() == {f"{ADAPTER}-adapter.zip", f"{ADAPTER}-merged.zip"}
    assert json.loads((runfolder.run_dir(finished.id) / "export.json").read_text())["bytes"] > 0


def test_the_command_line_exports_for_ollama_and_says_how_to_run_it(adapter, models, capsys, tmp_path):
    from pipeline.__main__ import main

    assert main(["models", "export", ADAPTER, "--format", "ollama", "--type", "F16", "--json",
                 "--output", str(tmp_path)]) == 0  # fmt: skip
    shown = json.loads(capsys.readouterr().out)
    assert shown["path"] == str(tmp_path / f"{ADAPTER}-F16-ollama.zip") and Path(shown["path"]).exists()
    assert shown["check"]["passed"] and shown["file_type"] == "F16" and shown["gguf_bytes"] < shown["source_bytes"]
    assert main(["models", "export", ADAPTER, "--format", "gguf", "--type", "Q8_0"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().endswith(f"{ADAPTER}-Q8_0.zip")
    assert "checked: same next token as the model at" in captured.err and "llama-server -m" in captured.err
    assert "ollama create" not in captured.err  # a plain GGUF export has no Modelfile
    # 4 bits of a random tiny model's weights move its near-uniform predictions too far: refused, not kept
    assert main(["models", "export", ADAPTER, "--format", "gguf", "--type", "Q4_1"]) == 1
    assert "Q4_1 file failed its check and was not kept" in capsys.readouterr().err
    assert not (export.exports_dir() / f"{ADAPTER}-Q4_1.zip").exists()
