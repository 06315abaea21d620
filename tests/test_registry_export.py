"""Exporting models: the card, the adapter zip (reloads with transformers + peft), merged weights (a plain
transformers model), refusals for cloud models, and the vLLM command with its secrets.toml lines."""

from __future__ import annotations

import shutil
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml

from pipeline import settings
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.llm import catalog, embedded
from pipeline.models import ModelEntry
from pipeline.registry import export
from tests.conftest import write_secrets
from tests.test_registry_figures import ADAPTER, CONFIG, add_entry, make_adapter, register_adapter
from tests.tiny_model import TINY

QUALITY = {"plain": {"rating": 1042.5, "lower": 1001.0, "upper": 1080.0, "win_rate_vs_base": 0.56,
                     "trait_scores": {"warm": 4.2}, "consistency": 0.4, "judge": "openai/gpt-4.1-mini"}}  # fmt: skip


@pytest.fixture
def adapter(models) -> ModelEntry:
    make_adapter()
    return register_adapter(metrics={"quality": QUALITY})


def unzip(archive: Path, into: Path) -> Path:
    with zipfile.ZipFile(archive) as handle:
        handle.extractall(into)
    (root,) = list(into.iterdir())
    return root


def logits(model, tokenizer, text: str = "Summarise the memo"):
    import torch

    with torch.inference_mode():
        return model(**tokenizer(text, return_tensors="pt")).logits


def test_the_model_card_says_what_the_model_is_and_how_to_load_it(adapter):
    card = export.model_card(adapter)
    for expected in (f"# {ADAPTER}", f"`local/{TINY}`", "collab-train", "Training examples: 19", "Tokens: 4321",
                     "| lora_r | 4 |", "q_proj, v_proj", "Final training loss: 1.6", "Final validation loss: 1.85",
                     "| plain | 1042.5 | 1001 – 1080 |", "0.56", "warm 4.2", "PeftModel.from_pretrained", "vllm serve",
                     "--enable-lora"):  # fmt: skip
        assert expected in card, expected
    cloud = add_entry(
        name="gpt-persona", reference="openai/ft:gpt-4o-mini-2024-07-18:org:persona:abc", backend="openai"
    )
    card = export.model_card(cloud)
    assert "stay at OpenAI" in card and "Not trained in the studio" in card and "Not evaluated yet" in card


def test_the_adapter_export_holds_the_adapter_config_and_card_and_reloads(adapter, models, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = embedded.model_path(ADAPTER)
    # what training may leave beside the adapter stays out of the zip
    (folder / "merged").mkdir()
    (folder / "merged" / "config.json").write_text("{}")
    (folder / "checkpoint-2").mkdir()
    (folder / "checkpoint-2" / "optimizer.pt").write_bytes(b"x")

    archive = export.export_adapter(adapter.id)
    assert archive.parent == settings.data_dir() / "exports" and archive.name == f"{ADAPTER}-adapter.zip"
    names = set(zipfile.ZipFile(archive).namelist())
    adapter_files = {f"{ADAPTER}/{p.name}" for p in folder.iterdir() if p.is_file()}
    assert {f"{ADAPTER}/adapter_config.json", f"{ADAPTER}/adapter_model.safetensors"} <= adapter_files
    assert f"{ADAPTER}/tokenizer_config.json" in adapter_files
    assert names == adapter_files | {f"{ADAPTER}/training_config.yaml", f"{ADAPTER}/README.md"}

    unzipped = unzip(archive, tmp_path / "out")
    assert yaml.safe_load((unzipped / "training_config.yaml").read_text()) == CONFIG
    assert "# tiny-persona" in (unzipped / "README.md").read_text()
    # reloads outside the studio: a base model plus the unzipped folder, with transformers and peft
    base = AutoModelForCausalLM.from_pretrained(models / TINY, dtype=torch.float32)
    reloaded = PeftModel.from_pretrained(base, unzipped).eval()
    tokenizer = AutoTokenizer.from_pretrained(unzipped)
    served = embedded.load(ADAPTER)
    assert torch.allclose(logits(reloaded, tokenizer), logits(served.model, served.tokenizer), atol=1e-5)
    output = reloaded.generate(**tokenizer("Hello", return_tensors="pt"), max_new_tokens=4, do_sample=False)
    assert output.shape[1] > 1


def test_merged_export_is_a_plain_transformers_model(adapter, models, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    archive = export.export_merged(adapter.id)
    assert archive.name == f"{ADAPTER}-merged.zip"
    folder = unzip(archive, tmp_path / "merged")
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "training_config.yaml"} <= {
        p.name for p in folder.iterdir()
    }
    assert not (folder / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    served = embedded.load(ADAPTER)
    base = AutoModelForCausalLM.from_pretrained(models / TINY, dtype=torch.float32).eval()
    assert torch.allclose(logits(merged, tokenizer), logits(served.model, served.tokenizer), atol=1e-4)
    assert not torch.allclose(logits(merged, tokenizer), logits(base, tokenizer), atol=1e-4)  # the adapter is in it
    assert "AutoModelForCausalLM.from_pretrained" in (folder / "README.md").read_text()

    # merged weights training wrote are used as they are
    shutil.copytree(folder, embedded.model_path(ADAPTER) / "merged")
    (embedded.model_path(ADAPTER) / "merged" / "written-by-training.txt").write_text("yes")
    names = zipfile.ZipFile(export.export_merged(adapter.id)).namelist()
    assert f"{ADAPTER}-merged/written-by-training.txt" in names

    # a model without an adapter comes out as its folder is; it has no adapter to export
    plain = add_entry(name="tiny base", reference=f"local/{TINY}", base_model=TINY, backend="embedded")
    names = zipfile.ZipFile(export.export_merged(plain.id)).namelist()
    assert "tiny-base-merged/model.safetensors" in names
    with pytest.raises(UserFacingError, match="not an adapter"):
        export.export_adapter(plain.id)


def test_cloud_models_and_odd_names(adapter):
    cloud = add_entry(
        name="gpt-persona", reference="openai/ft:gpt-4o-mini-2024-07-18:org:persona:abc", backend="openai"
    )
    for fn in (export.export_adapter, export.export_merged):
        with pytest.raises(
            UserFacingError, match="stay at the provider.*openai/ft:gpt-4o-mini-2024-07-18:org:persona:abc"
        ):
            fn(cloud.id)
    together = add_entry(name="tg", reference="together_ai/me/Llama-3-8b-persona-1", backend="together")
    with pytest.raises(UserFacingError, match="together_ai/me/Llama-3-8b-persona-1"):
        export.export_adapter(together.id)
    with pytest.raises(UserFacingError, match="no model with id"):
        export.export_adapter(9999)
    # the zip's name is made from the registry name, never a path
    with session_scope() as session:
        row = session.get(ModelEntry, adapter.id)
        row.name = "../../Tiny persona: v2/"
        session.add(row)
    archive = export.export_adapter(adapter.id)
    assert archive.parent == settings.data_dir() / "exports" and archive.name == "Tiny-persona-v2-adapter.zip"


def test_the_vllm_command_serves_the_adapter_on_its_base_and_adds_it_to_the_studio(adapter, models):
    served = export.vllm_command(adapter, port=8123)
    command = served["command"]
    assert command.startswith(f"vllm serve {models / TINY} --enable-lora")
    assert f"--lora-modules {ADAPTER}={embedded.model_path(ADAPTER)}" in command
    # safe by default: the suggested server listens on this machine only
    assert command.endswith("--host 127.0.0.1 --port 8123") and "--max-lora-rank" not in command
    assert served["endpoint"] == "http://127.0.0.1:8123/v1" and served["model"] == ADAPTER
    # exposing it is a choice; the endpoint a client uses is then localhost
    shared = export.vllm_command(adapter, host="0.0.0.0", port=8123)
    assert shared["command"].endswith("--host 0.0.0.0 --port 8123")
    assert shared["endpoint"] == "http://localhost:8123/v1"
    # the snippet, pasted into secrets.toml, makes the server a model the studio can call
    write_secrets(served["secrets_snippet"])
    endpoint = settings.endpoints()[ADAPTER]
    assert (endpoint.api_base, endpoint.model) == ("http://127.0.0.1:8123/v1", ADAPTER)
    assert catalog.resolve(ADAPTER).call_kwargs["api_base"] == "http://127.0.0.1:8123/v1"
    assert tomllib.loads(served["secrets_snippet"])["endpoints"][ADAPTER]["model"] == ADAPTER

    elsewhere = export.vllm_command(adapter, host="10.0.0.5", adapter_path=Path("/srv/adapters/tiny"))
    assert f"--lora-modules {ADAPTER}=/srv/adapters/tiny" in elsewhere["command"]
    assert elsewhere["endpoint"] == "http://10.0.0.5:8000/v1"
    make_adapter("wide", r=64)
    wide = register_adapter("wide", dataset="wide-train")
    assert "--max-lora-rank 64" in export.vllm_command(wide)["command"]
    base = add_entry(name="tiny", reference=f"local/{TINY}", base_model=TINY, backend="embedded")
    assert export.vllm_command(base)["command"].startswith(f"vllm serve {models / TINY} --served-model-name tiny")
    cloud = add_entry(name="gpt-persona", reference="openai/gpt-4o-mini", backend="openai")
    with pytest.raises(UserFacingError, match="openai/gpt-4o-mini"):
        export.vllm_command(cloud)
