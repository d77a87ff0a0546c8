"""mkdocs hooks for the documentation site (mkdocs.yml ``hooks:``).

The site is ``docs/`` plus a few files of the repository's root, and each page's links are
written so that they also work where the Markdown is read on its own (a checkout, the repository's
web view): ``docs/`` pages link to ``../schemas/*.json`` and ``../ARCHITECTURE.md``, root pages to
``docs/NAME.md``. The site has no ``..`` and no ``docs/``: these hooks publish the schemas under
``schemas/`` and the root pages (:data:`ROOT_PAGES`) next to the ``docs/`` pages, and rewrite those
links to point there — so ``mkdocs build --strict`` still checks every one of them (a missing
target or anchor fails the build).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
#: Pages of the repository's root that are also pages of the site.
ROOT_PAGES = ("ARCHITECTURE.md", "CONTRIBUTING.md", "CHANGELOG.md")
_UP = re.compile(r"\]\(\.\./((?:schemas/[\w.-]+\.json)|" +
                 "|".join(re.escape(p) for p in ROOT_PAGES) + r")")


def on_files(files: Files, config: Any) -> Files:
    """Add the schemas (at ``schemas/NAME``) and the root pages to the site."""
    for schema in sorted(SCHEMAS.glob("*.json")):
        files.append(File(f"schemas/{schema.name}", src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    for page in ROOT_PAGES:
        files.append(File(page, src_dir=str(ROOT), dest_dir=config["site_dir"],
                          use_directory_urls=config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Point a root page's ``docs/`` links, and a ``docs/`` page's ``../`` links to the schemas
    and the root pages, at their places in the site."""
    if page.file.src_uri in ROOT_PAGES:
        return markdown.replace("](docs/", "](")
    if "/" in page.file.src_uri:
        return markdown
    return _UP.sub(r"](\1", markdown)
