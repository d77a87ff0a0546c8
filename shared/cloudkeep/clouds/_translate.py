"""The context manager every cloud's adapters use to turn an SDK exception into a cloudkeep error.

The per-cloud modules (``gcp.py``, ``azure.py``) say what an SDK exception *is*; each adapter says
what it *means* for it (its own message and exit code) in a function given to :class:`translating`.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from ..errors import CloudkeepError

#: An adapter's reading of a foreign exception: the error to raise instead, or None to let it be.
Translate = Callable[[BaseException], BaseException | None]


class translating:
    """``with translating(fn):`` — an exception raised inside is handed to ``fn``; what ``fn``
    returns is raised in its place (``from`` it). CloudkeepErrors, exceptions of the
    ``passthrough`` types (the caller handles them) and exceptions ``fn`` answers None for
    propagate unchanged. ``chain=False`` raises the translation ``from None`` (the SDK's
    exception is left out of a traceback)."""

    def __init__(self, translate: Translate, passthrough: tuple[type[BaseException], ...] = (), *,
                 chain: bool = True) -> None:
        self.translate = translate
        self.passthrough = passthrough
        self.chain = chain

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not isinstance(exc, Exception) or isinstance(exc, (CloudkeepError, *self.passthrough)):
            return
        mapped = self.translate(exc)
        if mapped is not None:
            raise mapped from (exc if self.chain else None)
