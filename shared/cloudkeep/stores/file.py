"""A store in a local folder.

Create-only writes are real: data goes to a temporary file opened with ``O_EXCL`` in the target
folder, is fsynced, then linked into place with ``link(2)``, which fails if the name exists — an
atomic create that never overwrites. Plain writes use ``rename(2)``, which is atomic too.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from ..errors import ObjectExistsError, ObjectNotFoundError, StoreError, StoreUnreachableError
from . import CHUNK, Data, ObjectInfo, StoreCapabilities, as_stream, check_key

_TMP_PREFIX = ".tmp-"


class FileStore:
    capabilities = StoreCapabilities(conditional_create=True, object_lock=False)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path)

    def describe(self) -> str:
        return f"file:{self.root}"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(
        self, key: str, data: Data, *, if_absent: bool = False, retain_until: datetime | None = None
    ) -> ObjectInfo:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnreachableError(f"cannot create folder {target.parent}: {exc.strerror}") from exc
        if if_absent and target.exists():
            raise ObjectExistsError(key)
        tmp = target.parent / f"{_TMP_PREFIX}{target.name}.{secrets.token_hex(6)}"
        size = 0
        try:
            fd = _create_exclusive(tmp)
            with os.fdopen(fd, "wb") as fh:
                stream = as_stream(data)
                while chunk := stream.read(CHUNK):
                    fh.write(chunk)
                    size += len(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            if if_absent:
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    raise ObjectExistsError(key) from None
                finally:
                    tmp.unlink(missing_ok=True)
            else:
                os.replace(tmp, target)
            _fsync_dir(target.parent)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write {target}: {exc.strerror or exc}") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return ObjectInfo(key, size, datetime.now(UTC))

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise ObjectNotFoundError(key) from None
        except OSError as exc:
            raise StoreError(f"cannot read {self._path(key)}: {exc.strerror}") from exc

    def get(self, key: str) -> bytes:
        with self.open(key) as fh:
            return fh.read()

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Walk only the deepest folder the prefix names, then filter by the rest of the prefix.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root / folder if folder else self.root
        if not base.is_dir():
            return
        found: list[ObjectInfo] = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in filenames:
                if name.startswith(_TMP_PREFIX):
                    continue
                key = name if rel_dir == "." else f"{rel_dir.replace(os.sep, '/')}/{name}"
                if not key.startswith(prefix):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                found.append(
                    ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))
                )
        found.sort(key=lambda info: info.key)
        yield from found

    def temporaries(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """The temporary files of writes that never finished (a process killed mid-write) under
        ``prefix``; never listed by ``list``. Prune removes them where no write can be under way."""
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root / folder if folder else self.root
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in sorted(filenames):
                if not name.startswith(_TMP_PREFIX):
                    continue
                key = name if rel_dir == "." else f"{rel_dir.replace(os.sep, '/')}/{name}"
                if not key.startswith(prefix):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue
                yield ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            path = self._path(key)
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StoreError(f"cannot delete {path}: {exc.strerror}") from exc
            self._prune_empty_dirs(path.parent)

    def _prune_empty_dirs(self, folder: Path) -> None:
        root = self.root.resolve()
        while folder.resolve() != root:
            try:
                folder.rmdir()
            except OSError:
                return  # not empty (or already gone): stop climbing
            folder = folder.parent


def _create_exclusive(tmp: Path) -> int:
    # A concurrent delete may remove the (empty) parent folder between mkdir and open: retry.
    for _ in range(5):
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileNotFoundError:
            tmp.parent.mkdir(parents=True, exist_ok=True)
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
