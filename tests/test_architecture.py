"""Rules of the layout that keep the studio maintainable."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def test_nothing_under_pipeline_imports_streamlit():
    offenders = []
    for path in (REPO / "pipeline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == "streamlit" or n.startswith("streamlit.") for n in names):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_every_page_is_routed_by_the_app():
    app = (REPO / "app.py").read_text()
    pages = sorted(p.name for p in (REPO / "pages").glob("*.py") if p.name != "__init__.py")
    assert pages and all(f'"pages/{name}"' in app for name in pages)


HEAVY = ("litellm", "torch", "transformers")


def _python_json(args: list[str], timeout: float) -> dict:
    """Run `python -c ARGS` from the repository, fresh; the JSON its last line prints."""
    out = subprocess.run(
        [sys.executable, "-c", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


PROBE = """
import json, sys
from pipeline.__main__ import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "heavy": sorted(m for m in {heavy} if m in sys.modules)}))
"""


@pytest.mark.parametrize(
    "command",
    [
        ["jobs", "list"],
        ["jobs", "show", "1"],
        ["datasets", "list"],
        [
            "datasets",
            "validate",
            str(REPO / "tests/data/datasets/good_openai.jsonl"),
            "--base-model",
            "openai/gpt-4.1-mini",
        ],
        ["models", "list"],
        ["personas", "list"],
        ["review", "list"],
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_commands_that_call_no_model_import_neither_litellm_nor_torch(command):
    result = _python_json([PROBE.replace("{heavy}", repr(HEAVY)), *command], timeout=120)
    assert result["heavy"] == [], f"`{' '.join(command)}` imported {result['heavy']}"


LOCAL_CHAT = """
import json, sys
from pipeline.llm import gateway
reply = gateway.chat([{"role": "user", "content": "Say hello."}], "local/smollm2-135m-instruct",
                     max_tokens=4, cache=False, record=False)
print(json.dumps({"text": reply.text, "tokens": reply.completion_tokens, "litellm": "litellm" in sys.modules}))
"""


@pytest.mark.slow
def test_a_call_to_the_built_in_model_answers_without_importing_litellm():
    # Every job process on the built-in model would otherwise wait seconds for litellm before its first token.
    result = _python_json([LOCAL_CHAT], timeout=300)
    assert result["text"] and 0 < result["tokens"] <= 4
    assert result["litellm"] is False
