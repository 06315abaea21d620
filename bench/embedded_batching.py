"""The embedded model's decoding throughput: requests one at a time against the same requests
arriving together (dynamic batching), on the same prompts and token budgets, in one run.

    .venv/bin/python bench/embedded_batching.py [--requests 8] [--tokens 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("STUDIO_MODELS_DIR", str(REPO / "data" / "models"))

from pipeline.llm import embedded  # noqa: E402

TOPICS = [
    "a missed deadline",
    "a budget cut",
    "a new hire",
    "a data breach",
    "a product launch",
    "a reorganisation",
    "a client complaint",
    "a supplier delay",
    "an audit",
    "a pricing change",
]


def prompts(count: int) -> list[list[dict]]:
    return [
        [{"role": "user", "content": f"Write a short memo to the team about {TOPICS[i % len(TOPICS)]}."}]
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    name = embedded.EMBEDDED_NAME
    embedded.generate(name, prompts(1)[0], max_tokens=4, temperature=0)  # load and warm up

    def ask(messages):
        return embedded.generate(name, messages, max_tokens=args.tokens, temperature=0)

    started = time.perf_counter()
    alone = [ask(m) for m in prompts(args.requests)]
    alone_s = time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(args.requests) as pool:
        together = list(pool.map(ask, prompts(args.requests)))
    together_s = time.perf_counter() - started

    alone_rate = sum(g.completion_tokens for g in alone) / alone_s
    together_rate = sum(g.completion_tokens for g in together) / together_s
    print(
        f"one at a time: {alone_rate:6.1f} tokens/s ({sum(g.completion_tokens for g in alone)} tokens, {alone_s:.1f} s)"
    )
    print(
        f"batched:       {together_rate:6.1f} tokens/s ({sum(g.completion_tokens for g in together)} tokens, "
        f"{together_s:.1f} s, batches of up to {max(g.batch_size for g in together)})"
    )
    print(f"ratio: {together_rate / alone_rate:.1f}x (target >= 2x)")


if __name__ == "__main__":
    main()
