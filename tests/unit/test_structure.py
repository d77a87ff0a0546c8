"""The structure ARCHITECTURE.md promises, checked on the source tree (issue #20).

- no import cycle among ``cloudkeep`` modules (every import counts: module level, inside a
  function, under ``TYPE_CHECKING``), and no cloudkeep import inside a function (only a cloud
  SDK is imported lazily);
- no module over 600 lines;
- outside the adapters (``sources/``, ``stores/``, ``keys/``, ``queues/``, ``clouds/``) no
  ``getattr``/``hasattr`` on a source, store or spec, no comparison with an adapter's type name,
  no ``isinstance`` of an adapter class: the core asks ``capabilities.able()`` and spec methods.

Each detector is first shown to catch a planted example, so a test cannot pass by seeing nothing.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "shared" / "cloudkeep"
ADAPTER_DIRS = ("sources", "stores", "keys", "queues", "clouds")
MAX_LINES = 600
TYPE_NAMES = {"dynamodb", "s3", "rds", "firestore", "cosmos", "file", "gcs", "azure_blob", "memory",
              "aws_kms", "gcp_kms", "azure_key_vault", "sqs", "pubsub", "azure_queue"}
ADAPTER_ARG = re.compile(r"(source|store|spec|writer|adapter)", re.IGNORECASE)
ADAPTER_CLASS = re.compile(r"^[A-Z]\w*(Source|Store|Spec|Keyring|Queue)$")


def _modules(root: Path = PACKAGE) -> dict[str, Path]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                candidate = f"{module}.{alias.name}"
                targets.append(candidate if candidate in known else module)
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter
                counter += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return out


def _core_files() -> Iterator[tuple[str, Path]]:
    for name, path in _modules().items():
        if name.split(".")[1:2] and name.split(".")[1] in ADAPTER_DIRS:
            continue
        yield name, path


def _probes(tree: ast.AST) -> Iterator[str]:
    """getattr/hasattr on something named like a source, store or spec."""
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr") and node.args
                and ADAPTER_ARG.search(ast.unparse(node.args[0]))):
            yield f"line {node.lineno}: {ast.unparse(node)}"


def _type_comparisons(tree: ast.AST) -> Iterator[str]:
    """A comparison with an adapter's type name (``kind == "s3"``, ``type in ("rds", ...)``)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        values: list[ast.expr] = [node.left, *node.comparators]
        for value in values:
            consts = value.elts if isinstance(value, ast.Tuple | ast.List | ast.Set) else [value]
            if any(isinstance(c, ast.Constant) and c.value in TYPE_NAMES for c in consts):
                yield f"line {node.lineno}: {ast.unparse(node)}"
                break


def _adapter_isinstance(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "isinstance" and len(node.args) == 2):
            kinds = node.args[1].elts if isinstance(node.args[1], ast.Tuple) else [node.args[1]]
            for kind in kinds:
                name = kind.attr if isinstance(kind, ast.Attribute) else getattr(kind, "id", "")
                if ADAPTER_CLASS.match(name) and name not in ("FencedStore",):
                    yield f"line {node.lineno}: {ast.unparse(node)}"


def _hidden_imports(tree: ast.AST) -> Iterator[str]:
    """An import of a cloudkeep module inside a function (a cloud SDK may be imported lazily
    there; cloudkeep's own modules are imported at the top, so the graph shows every edge)."""
    def visit(node: ast.AST, inside: bool) -> Iterator[str]:
        for child in ast.iter_child_nodes(node):
            here = inside or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if here and isinstance(child, ast.ImportFrom) and (
                    child.level or (child.module or "").split(".")[0] == "cloudkeep"):
                yield f"line {child.lineno}: {ast.unparse(child)}"
            elif here and isinstance(child, ast.Import) and any(
                    a.name.split(".")[0] == "cloudkeep" for a in child.names):
                yield f"line {child.lineno}: {ast.unparse(child)}"
            yield from visit(child, here)

    return visit(tree, False)


def test_the_detectors_catch_planted_examples(tmp_path: Path) -> None:
    pkg = tmp_path / "cloudkeep"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    mods = _modules(pkg)
    graph = {name: _imports(name, path, mods) for name, path in mods.items()}
    assert _cycles(graph) == [["cloudkeep.a", "cloudkeep.b"]]
    planted = ast.parse("getattr(source, 'drill', None)\nif spec.type == 'rds': pass\n"
                        "isinstance(store, S3Store)\nhasattr(self.store, 'x')\n")
    assert len(list(_probes(planted))) == 2
    assert len(list(_type_comparisons(planted))) == 1
    assert len(list(_adapter_isinstance(planted))) == 1
    hidden = ast.parse("import boto3\nfrom . import a\ndef f():\n    import boto3\n    from .b import c\n"
                       "    import cloudkeep.x\n")
    assert len(list(_hidden_imports(hidden))) == 2


def test_no_import_cycle_among_cloudkeep_modules() -> None:
    mods = _modules()
    graph = {name: _imports(name, path, mods) for name, path in mods.items()}
    assert _cycles(graph) == []


def test_no_module_over_600_lines() -> None:
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_the_core_never_probes_or_names_an_adapter() -> None:
    found = {}
    for name, path in _core_files():
        if name == "cloudkeep.capabilities":
            continue  # the one place that asks an adapter what it can do
        tree = ast.parse(path.read_text(encoding="utf-8"))
        hits = [*_probes(tree), *_type_comparisons(tree), *_adapter_isinstance(tree)]
        if hits:
            found[name] = hits
    assert found == {}


def test_no_cloudkeep_import_hides_inside_a_function() -> None:
    found = {}
    for name, path in _modules().items():
        hits = list(_hidden_imports(ast.parse(path.read_text(encoding="utf-8"))))
        if hits:
            found[name] = hits
    assert found == {}
