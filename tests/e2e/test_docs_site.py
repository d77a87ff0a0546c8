"""Docs for newcomers (issue 20.8): a short README, a documentation site that builds strictly, the
architecture and contributing guides, and a changelog whose newest version is the package's."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

import cloudkeep

# the repository root, wherever the tiers put this file
ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
DOCS = ROOT / "docs"
VENV_BIN = Path(sys.executable).parent
VERSION_HEADING = re.compile(r"^## \[(\d+\.\d+\.\d+)\](?: - (\d{4}-\d{2}-\d{2}))?\s*$", re.M)


def test_readme_is_at_most_15000_characters() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text) <= 15_000, f"README.md has {len(text)} characters"
    for needed in ("make demo", "cloudkeep[aws]", "cloudkeep[gcp]", "cloudkeep[azure]",
                   "cloudkeep[all]", "```yaml", "ARCHITECTURE.md", "CONTRIBUTING.md"):
        assert needed in text


def test_the_changelogs_newest_version_is_the_package_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert changelog.startswith("# Changelog\n")
    assert "## [Unreleased]" in changelog
    versions = VERSION_HEADING.findall(changelog)
    assert versions, "no '## [X.Y.Z] - YYYY-MM-DD' heading in CHANGELOG.md"
    newest, date = versions[0]
    assert date, f"the newest version {newest} has no release date"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert newest == cloudkeep.__version__ == pyproject["project"]["version"]
    # newest first, each version once
    numbers = [tuple(int(n) for n in v.split(".")) for v, _ in versions]
    assert numbers == sorted(set(numbers), reverse=True)


def test_cli_version_is_the_package_version() -> None:
    done = subprocess.run([str(VENV_BIN / "cloudkeep"), "--version"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == cloudkeep.__version__


def test_every_docs_page_is_in_the_site_nav() -> None:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=yaml.BaseLoader)

    def pages(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [p for item in node for p in pages(item)]
        if isinstance(node, dict):
            return [p for value in node.values() for p in pages(value)]
        return []

    in_nav = pages(config["nav"])
    assert len(in_nav) == len(set(in_nav))
    root_pages = ["ARCHITECTURE.md", "CONTRIBUTING.md", "CHANGELOG.md"]
    assert sorted(in_nav) == sorted([p.name for p in DOCS.glob("*.md")] + root_pages)
    assert config["theme"]["name"] == "material" and config["strict"] == "true"


def test_the_site_builds_strictly_and_a_broken_link_fails(tmp_path: Path) -> None:
    mkdocs = str(VENV_BIN / "mkdocs")
    env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "NO_MKDOCS_2_WARNING": "1"}
    built = subprocess.run([mkdocs, "build", "--strict", "--quiet", "-d", str(tmp_path / "site")],
                           cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert built.returncode == 0, built.stdout + built.stderr
    for page in DOCS.glob("*.md"):
        assert (tmp_path / "site" / page.with_suffix(".html").name).is_file()
    assert (tmp_path / "site" / "schemas" / "policy.schema.json").is_file()
    # the same configuration over a copy of the docs with one broken anchor must fail
    copy = tmp_path / "copy"
    (copy / "docs").mkdir(parents=True)
    for page in DOCS.glob("*.md"):
        (copy / "docs" / page.name).write_text(page.read_text(encoding="utf-8"), encoding="utf-8")
    with (copy / "docs" / "cli.md").open("a", encoding="utf-8") as f:
        f.write("\n[nowhere](aws.md#no-such-section)\n")
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    (copy / "mkdocs.yml").write_text(config.replace("tools/mkdocs_hooks.py",
                                                    str(ROOT / "tools" / "mkdocs_hooks.py")))
    broken = subprocess.run([mkdocs, "build", "--strict", "-d", str(tmp_path / "site2")],
                            cwd=copy, capture_output=True, text=True, timeout=300, env=env)
    assert broken.returncode != 0
    assert "no-such-section" in broken.stdout + broken.stderr


def test_architecture_and_contributing_exist_and_their_links_resolve() -> None:
    architecture = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    for layer in ("Base", "Adapters", "Registry", "Policy", "Core", "Services", "Front ends"):
        assert re.search(rf"^#+ .*{layer}", architecture, re.M), layer
    contributing = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    for needed in ("tests/unit", "tests/contract", "tests/functional", "tests/e2e",
                   "spec.py", "registry", "extras"):
        assert needed in contributing, needed
    broken = []
    for page in (ROOT / "ARCHITECTURE.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md"):
        text = re.sub(r"`[^`\n]*`", "", page.read_text(encoding="utf-8"))
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" not in target and not (ROOT / target).exists():
                broken.append(f"{page.name}: {target}")
    assert broken == []
