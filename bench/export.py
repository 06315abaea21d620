"""GGUF export of the built-in model: time, size and agreement, against the plain safetensors save.

For each type (F16, Q8_0, Q4_1) the model is written as GGUF with the studio's writer, then loaded back
through transformers and compared with the source model on the check's fixed chat prompts. The baseline
is the same model written the usual way (`save_pretrained`, fp32 safetensors) in the same run.

    .venv/bin/python bench/export.py

Prints, per type: seconds to write (and its ratio to the safetensors save), the check's seconds, the file
size and its ratio to the safetensors weights, next-token agreement (near-ties counted as agreeing, and
exact), and the largest logit difference.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    import torch
    from transformers import AutoModelForCausalLM

    from pipeline.llm import embedded
    from pipeline.registry import gguf_check, gguf_file

    source = embedded.ensure_embedded_model()
    safetensors_bytes = sum(p.stat().st_size for p in source.glob("*.safetensors"))
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
        began = time.perf_counter()
        model.save_pretrained(scratch / "baseline")
        baseline_s = time.perf_counter() - began
        del model
        print(f"built-in model: {safetensors_bytes / 1e6:.0f} MB of fp32 safetensors; "
              f"save_pretrained (baseline) {baseline_s:.1f} s")  # fmt: skip
        print("| type | write s (× save_pretrained) | check s | size MB (× safetensors) | same next token | exact "
              "| max logit diff | passes |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        for file_type in gguf_file.TYPES:
            began = time.perf_counter()
            written = gguf_file.write(source, scratch / f"model-{file_type}.gguf", file_type)
            write_s = time.perf_counter() - began
            began = time.perf_counter()
            check = gguf_check.verify(source, written.path, file_type)
            check_s = time.perf_counter() - began
            print(
                f"| {file_type} | {write_s:.1f} ({write_s / baseline_s:.2f}×) | {check_s:.0f} | "
                f"{written.bytes / 1e6:.0f} ({written.bytes / safetensors_bytes:.3f}×) | "
                f"{check.top1_agreement:.1%} | {check.exact_top1:.1%} | {check.max_logit_difference:.3g} | "
                f"{'yes' if check.passed else 'no: ' + check.reason} |"
            )
            written.path.unlink()
        print(f"({check.positions} next-token positions over {len(gguf_check.PROBES)} fixed chat prompts)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
