"""MkDocs hooks: one source for each fact the site shows.

- The home page is the README (its ``docs/…`` links made relative to the site).
- The API page's ``[OAD(…)]`` reads ``build/openapi.json``, written here before each build
  from the routers (``openapi.handler.document``), the document ``GET /openapi.json`` serves.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OPENAPI = ROOT / "build" / "openapi.json"


def on_pre_build(config: Any) -> None:
    functions = str(ROOT / "functions")
    if functions not in sys.path:  # `make docs` builds again on every change
        sys.path.insert(0, functions)
    from openapi.handler import document

    OPENAPI.parent.mkdir(parents=True, exist_ok=True)
    OPENAPI.write_text(json.dumps(document(), indent=2))


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != "index.md":
        return markdown
    readme = (ROOT / "README.md").read_text()
    readme = readme.replace("](docs/)", "](index.md)").replace("](docs/", "](")
    readme = re.sub(r"\[`mkdocs\.yml`\]\(mkdocs\.yml\)", "`mkdocs.yml`", readme)
    return readme
