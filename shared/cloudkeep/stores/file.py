"""A store in a local folder.

Create-only writes are real: data goes to a temporary file opened with ``O_EXCL`` in the target
folder, is fsynced, then linked into place with ``link(2)``, which fails if the name exists — an
atomic create that never overwrites. Plain writes use ``rename(2)``, which is atomic too.

The store never leaves its root. Every operation walks from the root one folder at a time,
opening each with ``O_NOFOLLOW | O_DIRECTORY`` relative to the folder before it (``openat``
style), and opens, stats, links, renames and unlinks names relative to that folder's descriptor
without following a final symbolic link. So a symbolic link anywhere under the root — to a
file or to a folder, planted before or during an operation — is never followed: ``open`` refuses
it, ``stat`` and ``list`` do not see it (``list`` does not descend into linked folders either),
``delete`` removes at most the link itself, never what it points to, and ``put`` never writes
through it. Only regular files are objects (a FIFO or a device under the root is refused without
blocking). The root itself may be a symbolic link: it is the operator's choice of folder.
"""

from __future__ import annotations

import builtins
import errno
import logging
import os
import secrets
import stat as statmod
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, ClassVar, Literal, Self

from pydantic import Field, field_validator

from ..errors import ObjectExistsError, ObjectNotFoundError, StoreError, StoreUnreachableError
from ..specs import StoreLocation, StoreModel
from . import CHUNK, BaseStore, Data, ObjectInfo, StoreCapabilities, as_stream, check_key

log = logging.getLogger(__name__)

_TMP_PREFIX = ".tmp-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_LINKED = (errno.ELOOP, errno.ENOTDIR)  # what O_NOFOLLOW | O_DIRECTORY answers for a link


class _Outside(Exception):
    """A path component is a symbolic link (or not a folder): the key is not in the store."""


class FileStore(BaseStore):
    capabilities = StoreCapabilities(conditional_create=True, object_lock=False)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path)

    def describe(self) -> str:
        return f"file:{self.root}"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    # ------------------------------------------------------------------ walking without links

    def _folders(self, parts: list[str], *, create: bool) -> list[int]:
        """Descriptors of the root and of each folder in ``parts`` below it, each opened without
        following a link. Raises FileNotFoundError (a folder is missing and ``create`` is off)
        or :class:`_Outside` (a component is a link or a file). The caller closes them."""
        if create:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnreachableError(f"cannot create folder {self.root}: {exc.strerror}") from exc
        fds = [os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))]
        try:
            for name in parts:
                try:
                    fds.append(os.open(name, _DIR_FLAGS, dir_fd=fds[-1]))
                    continue
                except FileNotFoundError:
                    if not create:
                        raise
                except OSError as exc:
                    if exc.errno in _LINKED:
                        raise _Outside(name) from None
                    raise
                try:
                    os.mkdir(name, 0o755, dir_fd=fds[-1])
                except FileExistsError:
                    pass  # a concurrent writer made it
                except OSError as exc:
                    raise StoreUnreachableError(
                        f"cannot create folder {self.root.joinpath(*parts)}: {exc.strerror}") from exc
                try:
                    fds.append(os.open(name, _DIR_FLAGS, dir_fd=fds[-1]))
                except OSError as exc:
                    if exc.errno in _LINKED:
                        raise _Outside(name) from None
                    raise
            return fds
        except BaseException:
            _close(fds)
            raise

    # ------------------------------------------------------------------------------ operations

    def put(
        self, key: str, data: Data, *, if_absent: bool = False, retain_until: datetime | None = None
    ) -> ObjectInfo:
        target = self._path(key)
        *folders, name = key.split("/")
        tmp = f"{_TMP_PREFIX}{name}.{secrets.token_hex(6)}"
        size = 0
        fds: list[int] = []
        try:
            fds, fd = self._create_tmp(folders, tmp, key)
            here = fds[-1]
            if if_absent and _lexists(name, here):
                os.close(fd)
                _unlink_quietly(tmp, here)
                raise ObjectExistsError(key)
            try:
                with os.fdopen(fd, "wb") as fh:
                    stream = as_stream(data)
                    while chunk := stream.read(CHUNK):
                        fh.write(chunk)
                        size += len(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
                if if_absent:
                    try:  # link(2) neither overwrites nor follows an existing name
                        os.link(tmp, name, src_dir_fd=here, dst_dir_fd=here, follow_symlinks=False)
                    except FileExistsError:
                        raise ObjectExistsError(key) from None
                    finally:
                        _unlink_quietly(tmp, here)
                else:
                    os.replace(tmp, name, src_dir_fd=here, dst_dir_fd=here)  # replaces a link itself
                os.fsync(here)
            except OSError as exc:
                _unlink_quietly(tmp, here)
                raise StoreError(f"cannot write {target}: {exc.strerror or exc}") from exc
            except BaseException:
                _unlink_quietly(tmp, here)
                raise
        except _Outside as exc:
            raise StoreError(f"cannot write {target}: {exc} is a symbolic link or not a folder; "
                             "the store never writes outside its root") from None
        finally:
            _close(fds)
        return ObjectInfo(key, size, datetime.now(UTC))

    def _create_tmp(self, folders: list[str], tmp: str, key: str) -> tuple[list[int], int]:
        # A concurrent delete may remove an (empty) folder between opening it and creating the
        # temporary file in it: walk again.
        for attempt in range(5):
            fds = self._folders(folders, create=True)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | getattr(os, "O_CLOEXEC", 0), 0o600, dir_fd=fds[-1])
                return fds, fd
            except FileNotFoundError:
                _close(fds)
                if attempt == 4:
                    raise StoreError(f"cannot write {self._path(key)}: its folder keeps "
                                     "disappearing") from None
            except OSError as exc:
                _close(fds)
                raise StoreError(f"cannot write {self._path(key)}: {exc.strerror}") from exc
        raise AssertionError("unreachable")

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        *folders, name = key.split("/")
        try:
            fds = self._folders(folders, create=False)
        except (FileNotFoundError, _Outside):
            raise ObjectNotFoundError(key) from None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror}") from exc
        try:
            # O_NONBLOCK: a FIFO planted under the root must not block the open
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                         | getattr(os, "O_CLOEXEC", 0), dir_fd=fds[-1])
        except FileNotFoundError:
            raise ObjectNotFoundError(key) from None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreError(f"cannot read {path}: it is a symbolic link; the store never "
                                 "follows links") from None
            raise StoreError(f"cannot read {path}: {exc.strerror}") from exc
        finally:
            _close(fds)
        if not statmod.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StoreError(f"cannot read {path}: not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    def get(self, key: str) -> bytes:
        with self.open(key) as fh:
            return fh.read()

    def stat(self, key: str) -> ObjectInfo | None:
        check_key(key)
        *folders, name = key.split("/")
        try:
            fds = self._folders(folders, create=False)
        except (FileNotFoundError, _Outside):
            return None
        try:
            st = os.stat(name, dir_fd=fds[-1], follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            _close(fds)
        if not statmod.S_ISREG(st.st_mode):
            return None  # a link, a folder, a FIFO: not an object
        return ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Walk only the deepest folder the prefix names, then filter by the rest of the prefix.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        parts = folder.split("/") if folder else []
        if any(p in ("", ".", "..") for p in parts):
            return
        try:
            fds = self._folders(parts, create=False)
        except (FileNotFoundError, NotADirectoryError, _Outside):
            return
        found: list[ObjectInfo] = []
        try:
            _walk(fds[-1], folder, prefix, found)
        finally:
            _close(fds)
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

    def delete_batch(self, keys: builtins.list[str]) -> builtins.list[str]:
        """Unlink each key's file (never following a link) and the folders it leaves empty."""
        for key in keys:
            path = self._path(key)
            *folders, name = key.split("/")
            try:
                fds = self._folders(folders, create=False)
            except FileNotFoundError:
                continue
            except _Outside as exc:
                log.warning("not deleting %s: %s is a symbolic link or not a folder (the store "
                            "never leaves its root)", path, exc)
                continue
            try:
                try:
                    os.unlink(name, dir_fd=fds[-1])  # never follows: removes at most a link
                except FileNotFoundError:
                    continue
                except IsADirectoryError:
                    raise StoreError(f"cannot delete {path}: it is a folder") from None
                except OSError as exc:
                    raise StoreError(f"cannot delete {path}: {exc.strerror}") from exc
                _prune_empty_dirs(fds, folders)
            finally:
                _close(fds)
        return []


def _walk(fd: int, rel: str, prefix: str, found: list[ObjectInfo]) -> None:
    """Regular files under the folder ``fd`` (at ``rel``); links are neither reported nor
    followed, linked folders not entered."""
    with os.scandir(fd) as entries:
        listing = list(entries)
    for entry in sorted(listing, key=lambda e: e.name):
        key = f"{rel}/{entry.name}" if rel else entry.name
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if statmod.S_ISDIR(st.st_mode):
            if not (key + "/").startswith(prefix) and not prefix.startswith(key + "/"):
                continue
            try:
                sub = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue  # gone, or swapped for a link since it was listed: not entered
            try:
                _walk(sub, key, prefix, found)
            finally:
                os.close(sub)
        elif statmod.S_ISREG(st.st_mode):
            if entry.name.startswith(_TMP_PREFIX) or not key.startswith(prefix):
                continue
            found.append(ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))


def _prune_empty_dirs(fds: list[int], folders: list[str]) -> None:
    """Remove the now empty folders of a deleted key, deepest first, never the root."""
    for depth in range(len(folders), 0, -1):
        try:
            os.rmdir(folders[depth - 1], dir_fd=fds[depth - 1])
        except OSError:
            return  # not empty (or already gone): stop climbing


def _lexists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _close(fds: list[int]) -> None:
    for fd in reversed(fds):
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()


# --------------------------------------------------------------------------------------------
# The policy spec (s20-policy)


class FileStoreSpec(StoreModel):
    """A folder on local disk (or a mounted volume). Relative paths are relative to the policy."""

    HAS_REGION: ClassVar[bool] = False
    DEFAULT_CLASS: ClassVar[str] = "local"

    type: Literal["file"]
    path: str = Field(min_length=1)

    @field_validator("path")
    @classmethod
    def _plain_path(cls, value: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("a folder path may not contain control characters (e.g. a NUL byte)")
        return value

    def location(self) -> StoreLocation:
        """The folder, resolved: relative to the policy's folder, ``~`` expanded, symbolic
        links and ``..`` resolved."""
        return StoreLocation("file", "", "", os.path.realpath(os.path.expanduser(self.path)))

    def resolve_paths(self, resolve: Callable[[str], str]) -> Self:
        return self.model_copy(update={"path": resolve(self.path)})

    def open(self) -> FileStore:
        return FileStore(self.path)
