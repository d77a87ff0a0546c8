"""``--where``: a small filter language on an item's attributes (partial restore).

Grammar (keywords are case-insensitive)::

    expr       := term ("or" term)*
    term       := factor ("and" factor)*
    factor     := "not" factor | "(" expr ")" | test
    test       := path op literal | path "startswith" string | path "exists"
    op         := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    path       := name ("." name | "[" digits "]")*
    name       := [A-Za-z_][A-Za-z0-9_$-]*  |  `any text, with \\` and \\\\ escaped`
    literal    := string | number | "true" | "false" | "null"
    string     := "..." | '...'     (backslash escapes: \\" \\' \\\\ \\n \\t)
    number     := -?digits[.digits][e[+-]digits]

A test is evaluated on the *fields* of an item (``SourceModel.item_fields``: plain JSON-like
values — numbers as :class:`~decimal.Decimal`). A test on an attribute the item lacks, or on a
value of another kind than the literal (a number against a string), is false — so is ``!=``;
``not (a = 1)`` is true for an item without ``a``. Numbers compare by value, strings by their
code points. Nothing is evaluated as code: the parser builds a small tree, with limits on the
text's length, the nesting depth and the number of tests.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import UsageError

MAX_CHARS = 4096
MAX_DEPTH = 32
MAX_TESTS = 128

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<op><=|>=|!=|<>|==|=|<|>)
  | (?P<punct>[().\[\]])
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<quoted>`(?:[^`\\]|\\.)*`)
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_$\-]*)
""", re.VERBOSE | re.DOTALL)
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "t": "\t", "`": "`"}
_KEYWORDS = {"and", "or", "not", "startswith", "exists", "true", "false", "null"}
_MISSING = object()


@dataclass(frozen=True)
class Token:
    kind: str  # op, punct, string, quoted, number, word, end
    text: str
    at: int  # 1-based character position


@dataclass(frozen=True)
class Test:
    path: tuple[str | int, ...]
    op: str  # = != < <= > >= startswith exists
    value: Any = None

    def matches(self, fields: Mapping[str, Any]) -> bool:
        found = _lookup(fields, self.path)
        if found is _MISSING:
            return False
        if self.op == "exists":
            return True
        have, want = _scalar(found), self.value
        if self.op == "startswith":
            return isinstance(have, str) and have.startswith(want)
        if not _same_kind(have, want):
            return False
        if self.op == "=":
            return have is None if want is None else bool(have == want)
        if self.op == "!=":
            return have is not None if want is None else bool(have != want)
        if want is None or isinstance(want, bool):
            return False  # null and booleans have no order
        return bool({"<": have < want, "<=": have <= want, ">": have > want,
                     ">=": have >= want}[self.op])


@dataclass(frozen=True)
class Not:
    inner: Expr

    def matches(self, fields: Mapping[str, Any]) -> bool:
        return not self.inner.matches(fields)


@dataclass(frozen=True)
class All:
    parts: tuple[Expr, ...]

    def matches(self, fields: Mapping[str, Any]) -> bool:
        return all(p.matches(fields) for p in self.parts)


@dataclass(frozen=True)
class Any_:
    parts: tuple[Expr, ...]

    def matches(self, fields: Mapping[str, Any]) -> bool:
        return any(p.matches(fields) for p in self.parts)


Expr = Test | Not | All | Any_


def parse(text: str, *, where: str = "--where") -> Expr:
    """The tree of a where-expression; a one-line UsageError ``bad --where: ... (at character
    N)`` for anything outside the grammar or its limits."""
    if len(text) > MAX_CHARS:
        raise UsageError(f"bad {where}: an expression is at most {MAX_CHARS} characters")
    if not text.strip():
        raise UsageError(f"bad {where}: the expression is empty")
    return _Parser(_tokens(text, where), where).parse()


def _tokens(text: str, where: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise UsageError(f"bad {where}: unexpected {text[pos]!r} at character {pos + 1}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(Token(kind, m.group(), pos + 1))
        pos = m.end()
    out.append(Token("end", "", len(text) + 1))
    return out


def _unquote(text: str) -> str:
    body, out, i = text[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            out.append(_ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


class _Parser:
    def __init__(self, tokens: list[Token], where: str) -> None:
        self.tokens = tokens
        self.i = 0
        self.where = where
        self.tests = 0

    def fail(self, what: str, token: Token | None = None) -> UsageError:
        token = token or self.peek()
        shown = "the end" if token.kind == "end" else repr(token.text)
        return UsageError(f"bad {self.where}: {what}, found {shown} at character {token.at}")

    def peek(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token.kind == "word" and token.text.lower() == word:
            self.i += 1
            return True
        return False

    def parse(self) -> Expr:
        expr = self.expr(0)
        if self.peek().kind != "end":
            raise self.fail("expected 'and', 'or' or the end")
        return expr

    def expr(self, depth: int) -> Expr:
        if depth > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH} levels")
        parts = [self.term(depth)]
        while self.keyword("or"):
            parts.append(self.term(depth))
        return parts[0] if len(parts) == 1 else Any_(tuple(parts))

    def term(self, depth: int) -> Expr:
        parts = [self.factor(depth)]
        while self.keyword("and"):
            parts.append(self.factor(depth))
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def factor(self, depth: int) -> Expr:
        if depth > MAX_DEPTH:
            raise self.fail(f"nested deeper than {MAX_DEPTH} levels")
        if self.keyword("not"):
            return Not(self.factor(depth + 1))
        if self.peek().text == "(" and self.peek().kind == "punct":
            self.take()
            inner = self.expr(depth + 1)
            if self.take().text != ")":
                self.i -= 1
                raise self.fail("expected ')'")
            return inner
        return self.test()

    def test(self) -> Test:
        self.tests += 1
        if self.tests > MAX_TESTS:
            raise self.fail(f"more than {MAX_TESTS} tests")
        path = self.path()
        if self.keyword("exists"):
            return Test(path, "exists")
        if self.keyword("startswith"):
            token = self.take()
            if token.kind != "string":
                raise self.fail("startswith takes a quoted string", token)
            return Test(path, "startswith", _unquote(token.text))
        token = self.take()
        if token.kind != "op":
            raise self.fail("expected a comparison (=, !=, <, <=, >, >=), startswith or exists",
                            token)
        op = {"==": "=", "<>": "!="}.get(token.text, token.text)
        return Test(path, op, self.literal())

    def path(self) -> tuple[str | int, ...]:
        out: list[str | int] = [self.name()]
        while self.peek().kind == "punct" and self.peek().text in ".[":
            if self.take().text == ".":
                out.append(self.name())
            else:
                token = self.take()
                if token.kind != "number" or not token.text.isdigit():
                    raise self.fail("expected a list index", token)
                if self.take().text != "]":
                    self.i -= 1
                    raise self.fail("expected ']'")
                out.append(int(token.text))
        return tuple(out)

    def name(self) -> str:
        token = self.take()
        if token.kind == "quoted":
            return _unquote(token.text)
        if token.kind == "word" and token.text.lower() not in _KEYWORDS:
            return token.text
        raise self.fail("expected an attribute name (write `name` for a name like a keyword)",
                        token)

    def literal(self) -> Any:
        token = self.take()
        if token.kind == "string":
            return _unquote(token.text)
        if token.kind == "number":
            try:
                return Decimal(token.text)
            except InvalidOperation:
                raise self.fail("bad number", token) from None
        if token.kind == "word" and token.text.lower() in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[token.text.lower()]
        raise self.fail("expected a value (a quoted string, a number, true, false or null)", token)


def _lookup(value: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        if isinstance(step, int):
            if not isinstance(value, list) or step >= len(value):
                return _MISSING
            value = value[step]
        elif isinstance(value, Mapping) and step in value:
            value = value[step]
        else:
            return _MISSING
    return value


def _scalar(value: Any) -> Any:
    """A number of the item as a Decimal (booleans stay booleans)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else value
    return value


def _same_kind(have: Any, want: Any) -> bool:
    """Whether an item's value and a literal can be compared (null: with anything present)."""
    if want is None:
        return True
    if isinstance(want, bool):
        return isinstance(have, bool)
    if isinstance(want, Decimal):  # NaN (a forged line's {"N": "NaN"}) compares with nothing
        return isinstance(have, Decimal) and have.is_finite()
    return isinstance(have, str)
