"""Rules of the layout that keep the studio maintainable."""

from __future__ import annotations

import ast

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
