"""Where the local trainer runs and at what precision."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@dataclass(frozen=True)
class Hardware:
    device: str  # cuda | cpu
    bf16: bool
    description: str  # for engineers: device and precision

    @property
    def in_words(self) -> str:
        """Where training runs, for someone who is not an engineer."""
        if self.device == "cuda":
            return "this computer's graphics card"
        return "this computer's processor (no graphics card: slower, but it works)"


@lru_cache(maxsize=1)
def detect() -> Hardware:
    import torch

    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        return Hardware("cuda", bf16, f"CUDA: {torch.cuda.get_device_name(0)}" + (", bf16" if bf16 else ", fp32"))
    # bf16 on a CPU pays only with AMX or AVX512-BF16 units; elsewhere it is emulated and slower
    flags = _cpu_flags()
    bf16 = bool({"amx_bf16", "avx512_bf16"} & flags)
    return Hardware("cpu", bf16, f"CPU ({torch.get_num_threads()} threads)" + (", bf16 (AMX)" if bf16 else ", fp32"))


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()
