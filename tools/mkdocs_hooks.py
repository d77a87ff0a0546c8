"""mkdocs hooks for the documentation site (mkdocs.yml ``hooks:``).

The pages link to the JSON Schemas in the repository's ``schemas/`` folder as ``../schemas/...``
(so the links also work when the Markdown is read on its own). The site has no ``..``: the hooks
publish every ``schemas/*.json`` under ``schemas/`` of the site and point those links there, so
``mkdocs build --strict`` still checks that each linked schema exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"


def on_files(files: Files, config: Any) -> Files:
    """Add every schema file to the site, at ``schemas/NAME``."""
    for schema in sorted(SCHEMAS.glob("*.json")):
        files.append(File(f"schemas/{schema.name}", src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Point ``../schemas/`` links of a top-level page at the published copies."""
    if "/" in page.file.src_uri:
        return markdown
    return markdown.replace("](../schemas/", "](schemas/")
