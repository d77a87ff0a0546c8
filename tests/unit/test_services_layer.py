"""The use-case layer's place in the structure (issue 20): the front ends (the CLI package, the
function) call ``cloudkeep.services``; nothing below them imports a front end, and the services
never import the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import cloudkeep

ROOT = Path(cloudkeep.__file__).resolve().parent
FRONT_ENDS = ("cloudkeep.cli", "cloudkeep.function")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every cloudkeep module ``path`` imports (at the top or inside a function)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("cloudkeep")}


def within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_nothing_below_the_front_ends_imports_them() -> None:
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        name = module_name(path)
        if within(name, FRONT_ENDS):
            continue
        bad = sorted(m for m in imported(path) if within(m, FRONT_ENDS))
        if bad:
            offenders.append(f"{name} imports {', '.join(bad)}")
    assert offenders == []


def test_only_front_ends_import_the_services() -> None:
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        name = module_name(path)
        if within(name, (*FRONT_ENDS, "cloudkeep.services")):
            continue
        bad = sorted(m for m in imported(path) if within(m, ("cloudkeep.services",)))
        if bad:
            offenders.append(f"{name} imports {', '.join(bad)}")
    assert offenders == []


def test_the_cli_is_a_package_of_small_modules_that_call_the_services() -> None:
    modules = sorted((ROOT / "cli").glob("*.py"))
    assert {p.stem for p in modules} >= {"__init__", "app", "output", "run", "snapshots",
                                          "restore", "hold", "keys", "report", "policy"}
    assert not (ROOT / "cli.py").exists() and not (ROOT / "actions.py").exists()
    for path in modules:
        assert len(path.read_text().splitlines()) <= 600, path.name
    commands = [p for p in modules if p.stem not in ("__init__", "app", "output", "policy")]
    for path in commands:  # each command module reaches the core through the services
        assert "cloudkeep.services" in imported(path), path.name
