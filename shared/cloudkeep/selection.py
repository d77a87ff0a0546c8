"""Which items a partial restore takes: ``--keys FILE``, ``--key JSON`` (repeatable),
``--where EXPR`` (``cloudkeep.where``), parsed against the snapshot's source.

A :class:`SelectionRequest` is what the user asked (before the snapshot is known); a
:class:`Selection` is that request read against the snapshot's ``source`` (keys normalised with
``cloudkeep.itemkeys``). An item is selected when its key is one of the keys (if any were given)
*and* it matches the where-expression (if one was given); with neither, every item is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import where as where_expr
from .errors import UsageError
from .itemkeys import MAX_KEY_TEXT, key_bytes, parse_key, spec_for

MAX_KEYS = 1_000_000
"""Keys a selection holds at most (they are held in memory; select more with ``--where``)."""
MAX_KEYS_FILE_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class SelectionRequest:
    """A partial restore's selection as given: a keys file's path, keys (JSON text in the
    source's own form) and a where-expression."""

    keys_file: str | None = None
    keys: tuple[str, ...] = ()
    where: str | None = None

    @property
    def empty(self) -> bool:
        return self.keys_file is None and not self.keys and self.where is None

    def check(self) -> None:
        """UsageError for a request that cannot be read (before anything is): --keys together
        with --key, or a where-expression outside the grammar."""
        if self.keys_file is not None and self.keys:
            raise UsageError("give the keys either in a file (--keys FILE) or one by one "
                             "(--key JSON), not both")
        if len(self.keys) > MAX_KEYS:
            raise UsageError(f"too many --key options (at most {MAX_KEYS}; use --keys FILE)")
        if self.where is not None:
            where_expr.parse(self.where)


@dataclass
class Selection:
    """A request read against a snapshot: ``keys`` (``key_bytes`` → normalised key, in the
    order given; None: no key list) and the parsed where-expression."""

    request: SelectionRequest
    recorded: Mapping[str, Any]
    keys: dict[bytes, Any] | None = None
    where: where_expr.Expr | None = None
    keys_sha256: str | None = None  # of the keys file as read
    _spec: Any = field(default=None, repr=False)

    @classmethod
    def build(cls, request: SelectionRequest, recorded: Mapping[str, Any]) -> Selection:
        """Read ``request`` against the snapshot's ``source``: UsageError (exit 2) for a key
        that is not one of this source (naming the file and line, or the --key), a keys file
        that cannot be read or is over the limits, or a bad where-expression."""
        request.check()
        spec = spec_for(recorded)  # UsageError: a source that has no item keys
        selection = cls(request, recorded, _spec=spec)
        if request.where is not None:
            selection.where = where_expr.parse(request.where)
        if request.keys:
            selection.keys = {}
            for i, text in enumerate(request.keys, 1):
                key = parse_key(recorded, text, where=f"--key #{i}")
                selection.keys.setdefault(key_bytes(key), key)
        elif request.keys_file is not None:
            selection.keys, selection.keys_sha256 = _read_keys_file(recorded, request.keys_file)
        return selection

    def wants_key(self, kb: bytes) -> bool:
        """Whether an item with key bytes ``kb`` may be selected (by the key list)."""
        return self.keys is None or kb in self.keys

    def fields(self, doc: Any) -> Any:
        """The attributes of the item a decoded line holds (None: the line deletes an item)."""
        return self._spec.item_fields(doc, self.recorded)

    def matches(self, fields: Any) -> bool:
        """Whether an item's ``fields`` match the where-expression (always, without one)."""
        return self.where is None or self.where.matches(fields)

    def summary(self) -> dict[str, Any]:
        """What the audit log and the result record of the selection: how many keys, the keys
        file and its sha256, the where-expression (never the keys themselves)."""
        out: dict[str, Any] = {"keys": None if self.keys is None else len(self.keys)}
        if self.request.keys_file is not None:
            out["keys_file"] = self.request.keys_file
            out["keys_sha256"] = self.keys_sha256
        elif self.keys is not None:
            out["keys_sha256"] = hashlib.sha256(b"\n".join(self.keys)).hexdigest()
        out["where"] = self.request.where
        return out


def _read_keys_file(recorded: Mapping[str, Any], path: str) -> tuple[dict[bytes, Any], str]:
    """Keys of a file, one per line (blank lines and lines starting with ``#`` skipped), each
    error naming ``FILE:LINE``."""
    file = Path(path)
    try:
        if not file.is_file():
            raise UsageError(f"bad --keys {path}: not a file" if file.exists()
                             else f"bad --keys {path}: no such file")
        size = file.stat().st_size
        if size > MAX_KEYS_FILE_BYTES:
            raise UsageError(f"bad --keys {path}: {size} bytes, more than the "
                             f"{MAX_KEYS_FILE_BYTES} a keys file may have")
        stream = file.open("rb")
    except OSError as exc:
        raise UsageError(f"bad --keys {path}: {exc.strerror or exc}") from None
    keys: dict[bytes, Any] = {}
    sha = hashlib.sha256()
    read = 0
    with stream:  # a line is read at most one byte past the longest key (never whole)
        for number, raw in enumerate(iter(lambda: stream.readline(MAX_KEY_TEXT + 3), b""), 1):
            read += len(raw)
            sha.update(raw)
            if read > MAX_KEYS_FILE_BYTES:
                raise UsageError(f"bad --keys {path}: it grew past {MAX_KEYS_FILE_BYTES} bytes "
                                 "while it was read")
            if len(raw) > MAX_KEY_TEXT + 2:
                raise UsageError(f"bad key in {path}:{number}: a key is at most "
                                 f"{MAX_KEY_TEXT} characters")
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8").strip()
            except UnicodeDecodeError:
                raise UsageError(f"bad key in {path}:{number}: not UTF-8 text") from None
            if not text or text.startswith("#"):
                continue
            key = parse_key(recorded, text, where=f"key in {path}:{number}")
            keys.setdefault(key_bytes(key), key)
            if len(keys) > MAX_KEYS:
                raise UsageError(f"bad --keys {path}: more than {MAX_KEYS} keys (select more "
                                 "items with --where)")
    return keys, sha.hexdigest()
