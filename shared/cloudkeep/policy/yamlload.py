"""Limits and line numbers of the YAML a policy is written in: a loader that refuses duplicate
keys, deep nesting and alias bombs before anything is expanded, and error messages at the most
useful place."""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import PolicyError
from ..specs import show as _show

# Every reader has limits: a policy is small, shallow, and its aliases are few.
MAX_POLICY_BYTES = 1 << 20
"""The largest policy file (local or remote) cloudkeep reads."""
MAX_YAML_DEPTH = 50
"""The deepest nesting of mappings and lists (aliases expanded) a policy may have."""
MAX_YAML_ALIASES = 100
"""How many aliases (``*name``) a policy may use."""
MAX_YAML_NODES = 200_000
"""How many values a policy may hold once its aliases are expanded (an alias bomb's 609 bytes
would expand to billions)."""


class _LimitError(yaml.YAMLError):
    """A policy crosses one of the loader's limits (depth, aliases, expanded size)."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (YAML allows them silently) and enforces
    the policy's limits while composing — before anything is expanded or constructed: nesting
    depth (aliases expanded), the number of aliases, the number of values once aliases are
    expanded, and aliases that refer to a node containing them (self-reference)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._open_anchors: set[str] = set()
        self._sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth), expanded

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        anchor = getattr(event, "anchor", None)
        if isinstance(event, yaml.AliasEvent):
            if anchor in self._open_anchors:
                raise _LimitError(f"alias *{anchor} refers to a node that contains it "
                                  "(a self-referencing alias)", event.start_mark)
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _LimitError(f"more than {MAX_YAML_ALIASES} aliases", event.start_mark)
            return super().compose_node(parent, index)  # type: ignore[no-untyped-call]
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _LimitError(f"nested more than {MAX_YAML_DEPTH} levels deep", event.start_mark)
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            node = super().compose_node(parent, index)  # type: ignore[no-untyped-call]
        finally:
            self._depth -= 1
            self._open_anchors.discard(anchor)  # type: ignore[arg-type]
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        measured = [self._sizes.get(id(child), (1, 1)) for child in children]
        values = 1 + sum(v for v, _ in measured)
        depth = 1 + max((d for _, d in measured), default=0)
        if values > MAX_YAML_NODES:
            raise _LimitError(f"more than {MAX_YAML_NODES} values once its aliases are expanded "
                              "(an alias bomb?)", event.start_mark)
        if depth > MAX_YAML_DEPTH:
            raise _LimitError(f"nested more than {MAX_YAML_DEPTH} levels deep once its aliases "
                              "are expanded", event.start_mark)
        self._sizes[id(node)] = (values, depth)
        return node


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first defined at line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,  # type: ignore[arg-type]
)


def parse_yaml(text: str, source: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    if len(text) > MAX_POLICY_BYTES:
        raise PolicyError([f"{source}: the policy is too large (more than {MAX_POLICY_BYTES} "
                           "bytes)"], source=source)
    try:
        loader = _UniqueKeyLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except _LimitError as exc:
        where = f"{source}:{exc.mark.line + 1}:{exc.mark.column + 1}" if exc.mark else source
        raise PolicyError([f"{where}: refused: {exc.message}"], source=source) from None
    except RecursionError:  # a last resort: the limits above keep nesting far from this
        raise PolicyError([f"{source}: refused: nested too deeply"], source=source) from None
    except yaml.MarkedYAMLError as exc:
        raise PolicyError([_yaml_error(exc, text, source)], source=source) from None
    except yaml.YAMLError as exc:
        raise PolicyError([f"{source}: YAML syntax error: {exc}"], source=source) from None
    if not isinstance(data, dict):
        kind = "empty" if data is None else "a list" if isinstance(data, list) else f"just {_show(data)}"
        raise PolicyError([f"{source}: the policy must be a mapping with version, stores, tiers "
                           f"and datasets; this file is {kind}"], source=source)
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _index_lines(node, (), lines)
    return data, lines


def _yaml_error(exc: yaml.MarkedYAMLError, text: str, source: str) -> str:
    """``file:line:column: YAML syntax error: ...`` at the most useful place.

    A problem found at the end of the input (an unclosed quote or bracket) is reported where the
    unclosed construct starts, not on the line after the last one.
    """
    problem, context = exc.problem or "", exc.context
    pmark, cmark = exc.problem_mark, exc.context_mark
    mark = pmark or cmark
    if cmark is not None and (pmark is None or pmark.index >= len(text.rstrip())):
        mark = cmark
    what = problem
    if context:
        if cmark is not None and mark is not None and cmark.line != mark.line:
            context = f"{context} (line {cmark.line + 1})"
        what = f"{context}{',' if problem.startswith('but') else ':'} {problem}"
    if mark is None:
        return f"{source}: YAML syntax error: {what}"
    line, column = mark.line + 1, mark.column + 1
    body = text.rstrip()
    if mark.index >= len(body):  # past the last character: name the last non-blank line
        line, column = body.count("\n") + 1, len(body.rsplit("\n", 1)[-1]) + 1
    return f"{source}:{line}:{column}: YAML syntax error: {what}"


def _index_lines(node: yaml.Node, path: tuple[str, ...], out: dict[tuple[str, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            sub = (*path, str(key_node.value))
            out[sub] = key_node.start_mark.line + 1
            _index_lines(value_node, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index_lines(item, (*path, str(i)), out)
