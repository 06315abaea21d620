"""A local Llama-family model folder written as one GGUF file, with the `gguf` package (llama.cpp's own).

The file is complete on its own: weights (F16, Q8_0 or Q4_1), the GPT-2-style BPE vocabulary with its
merges and token types, the special tokens and the chat template. What llama.cpp's converter does that
matters for the weights, and is done here too: Q and K projections are permuted into GGML's rotary layout
(transformers reverses the same permutation when it reads the file back), 1-D tensors (norms) stay F32,
and a matrix whose rows do not split into the quantization's blocks falls back to F16.

Written by hand on the `gguf` package rather than by running llama.cpp's `convert_hf_to_gguf.py`: that
script is not installed with the package, it would be a vendored copy to keep current, and the studio's
local models are one architecture (Llama, the built-in SmolLM2 family).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import UserFacingError

# The file types offered, with the tensor type of their matrices and llama.cpp's file-type code.
TYPES = {"F16": ("F16", "MOSTLY_F16"), "Q8_0": ("Q8_0", "MOSTLY_Q8_0"), "Q4_1": ("Q4_1", "MOSTLY_Q4_1")}
DEFAULT_TYPE = "Q8_0"
TYPE_LABELS = {
    "F16": "F16: full quality, half the size of the training weights",
    "Q8_0": "Q8_0: 8-bit, near full quality, about a quarter of the size",
    "Q4_1": "Q4_1: 4-bit, smallest, the least exact",
}
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)


@dataclass(frozen=True)
class Written:
    path: Path
    file_type: str
    tensors: int
    bytes: int
    fallbacks: list[str]  # matrices kept at F16 because their rows do not split into blocks


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """HF's rotary layout (halves) to GGML's (interleaved pairs), per head: llama.cpp's Q/K permutation."""
    rows = weights.shape[0]
    return weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def check_architecture(folder: Path) -> None:
    """Refuse, in words, a model this export cannot write (before a job is queued for it)."""
    _config(folder)


def _config(folder: Path) -> dict:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    architectures = config.get("architectures") or []
    if not any(a in SUPPORTED_ARCHITECTURES for a in architectures):
        raise UserFacingError(
            f"GGUF export covers Llama-family models (the built-in SmolLM2 and its fine-tunes); this model is "
            f"{', '.join(architectures) or 'of an unknown architecture'}. Export the merged weights instead."
        )
    return config


def _tokenizer_json(folder: Path) -> dict:
    path = folder / "tokenizer.json"
    if not path.exists():
        raise UserFacingError(f"{folder.name} has no tokenizer.json: a GGUF file needs the model's vocabulary.")
    data = json.loads(path.read_text(encoding="utf-8"))
    model = data.get("model") or {}
    if model.get("type") != "BPE" or (data.get("decoder") or {}).get("type") != "ByteLevel":
        raise UserFacingError(
            f"{folder.name}'s tokenizer is not a GPT-2-style byte-level BPE, the only kind this export writes."
        )
    return data


def _vocabulary(data: dict, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """Tokens in id order, their GGUF types, and the merges, as llama.cpp's BPE loader reads them."""
    import gguf

    by_id = {index: text for text, index in data["model"]["vocab"].items()}
    added = {item["id"]: item for item in data.get("added_tokens") or []}
    by_id.update({index: item["content"] for index, item in added.items()})
    tokens, types = [], []
    for index in range(vocab_size):
        if index not in by_id:  # the embedding has rows past the tokenizer's last token
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif index in added:
            tokens.append(by_id[index])
            types.append(gguf.TokenType.CONTROL if added[index].get("special") else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[index])
            types.append(gguf.TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"].get("merges") or []]
    return tokens, types, merges


def _pre_tokenizer(data: dict) -> str:
    """llama.cpp's name for the pre-tokenizer: SmolLM's GPT-2 regex, or plain GPT-2 for its look-alikes."""
    vocab = data["model"]["vocab"]
    return "smollm" if vocab.get("<|im_start|>") == 1 and vocab.get("<repo_name>") == 3 else "gpt2"


def _tensor_type(name: str, shape: tuple[int, ...], file_type: str) -> str:
    import gguf

    if len(shape) == 1 or file_type == "F16":
        return "F32" if len(shape) == 1 else "F16"
    block = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[file_type]][0]
    if shape[-1] % block:
        return "F16"
    if file_type == "Q4_1" and name == "token_embd.weight":
        return "Q8_0"  # tied to the output layer, where 4 bits cost most (llama.cpp keeps it wider too)
    return file_type


def write(
    folder: Path,
    target: Path,
    file_type: str = DEFAULT_TYPE,
    name: str = "",
    on_tensor: Callable[[int, int, str], bool] | None = None,
) -> Written:
    """Write the model in `folder` to `target` as GGUF. `on_tensor(done, total, name)` is told after each
    tensor; returning False stops (the caller removes the partial file)."""
    import gguf
    from safetensors import safe_open

    if file_type not in TYPES:
        raise UserFacingError(f"Unknown GGUF type {file_type!r}: choose one of {', '.join(TYPES)}.")
    config = _config(folder)
    tokenizer = _tokenizer_json(folder)
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise UserFacingError(f"{folder.name} has no safetensors weights to convert.")
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    head_dim = config.get("head_dim") or hidden // heads
    rope = config.get("rope_parameters") or {}
    rope_theta = rope.get("rope_theta") or config.get("rope_theta") or 10000.0
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, layers)

    writer = gguf.GGUFWriter(target, "llama")
    writer.add_name(name or folder.name)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope_theta))
    writer.add_layer_norm_rms_eps(float(config.get("rms_norm_eps", 1e-5)))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(gguf.LlamaFileType[TYPES[file_type][1]])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    tokens, types, merges = _vocabulary(tokenizer, config["vocab_size"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(tokenizer))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    # Merges, bos/eos/unk/pad ids and the chat template (tokenizer_config.json or chat_template.jinja).
    special = gguf.SpecialVocab(folder, load_merges=False, n_vocab=config["vocab_size"])
    special.merges = merges
    special.add_to_gguf(writer, quiet=True)
    if "bos" not in special.add_special_token:
        writer.add_add_bos_token(False)  # as llama.cpp writes it for this tokenizer: no BOS before a prompt
    writer.add_add_space_prefix(False)  # byte-level BPE: spaces are part of the tokens

    fallbacks: list[str] = []
    count = 0
    tied = config.get("tie_word_embeddings", False)
    handles = [safe_open(shard, framework="pt") for shard in shards]
    keys = [(handle, key) for handle in handles for key in handle.keys()]  # noqa: SIM118 - a safetensors handle, not a dict
    keys = [(h, k) for h, k in keys if not (tied and k == "lm_head.weight") and "rotary_emb" not in k]
    total = len(keys)
    for handle, key in keys:
        gguf_name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise UserFacingError(f"GGUF has no place for the tensor {key}: this model's layout is not Llama's.")
        data = handle.get_tensor(key).float().numpy()
        if key.endswith("q_proj.weight"):
            data = _permute(data, heads)
        elif key.endswith("k_proj.weight"):
            data = _permute(data, kv_heads)
        kind = _tensor_type(gguf_name, data.shape, file_type)
        if kind == "F16" and file_type != "F16" and len(data.shape) > 1:
            fallbacks.append(gguf_name)
        qtype = gguf.GGMLQuantizationType[kind]
        if kind == "F32":
            stored = data
        elif kind == "F16":
            stored = data.astype(np.float16)
        else:
            stored = gguf.quants.quantize(data, qtype)
        writer.add_tensor(gguf_name, stored, raw_dtype=qtype)
        count += 1
        if on_tensor is not None and on_tensor(count, total, gguf_name) is False:
            writer.close()
            raise InterruptedError("stopped")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Written(target, file_type, count, target.stat().st_size, fallbacks)
