"""A missing cloud SDK becomes one line naming the extra to install.

cloudkeep's core (file store, local keys, encryption, the CLI) needs only its own dependencies;
each cloud's SDKs come with an extra (pyproject.toml): ``pip install 'cloudkeep[aws]'``,
``'cloudkeep[gcp]'``, ``'cloudkeep[azure]'``, ``'cloudkeep[all]'``. Adapters import their SDK
lazily, so a policy naming a cloud whose extra is not installed fails with a
``ModuleNotFoundError`` only when it is used. :func:`hint` turns that (or any error caused by it)
into :class:`MissingExtraError`, whose message is one line::

    google-cloud-storage is not installed (No module named 'google.cloud.storage'): pip install 'cloudkeep[gcp]'

Its exit code is 2 (:data:`~cloudkeep.errors.EXIT_USAGE`, "bad usage or configuration"): the
installation does not match the policy, and retrying will not help until the extra is installed.
The CLI and the function's ``invoke`` action call it where they turn an unexpected exception into
a message (:func:`translated` wraps a block). ``MODULES`` is also what ``tools/requirements.py``
checks every import of the package against, so a new SDK import cannot go undeclared.
"""

from __future__ import annotations

import linecache
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import ParamSpec, TypeVar

from .errors import EXIT_USAGE, CloudkeepError

_P = ParamSpec("_P")
_R = TypeVar("_R")

# Module prefix → (distribution that provides it, the extra that declares it; None = the core's).
MODULES: dict[str, tuple[str, str | None]] = {
    # the core's own dependencies
    "click": ("click", None),
    "croniter": ("croniter", None),
    "cryptography": ("cryptography", None),
    "pydantic": ("pydantic", None),
    "rich": ("rich", None),
    "yaml": ("PyYAML", None),
    "zstandard": ("zstandard", None),
    # AWS
    "boto3": ("boto3", "aws"),
    "botocore": ("botocore", "aws"),
    # Google Cloud
    "google.api_core": ("google-api-core", "gcp"),
    "google.auth": ("google-auth", "gcp"),
    "google.cloud.firestore": ("google-cloud-firestore", "gcp"),
    "google.cloud.firestore_v1": ("google-cloud-firestore", "gcp"),
    "google.cloud.firestore_admin_v1": ("google-cloud-firestore", "gcp"),
    "google.cloud.kms": ("google-cloud-kms", "gcp"),
    "google.cloud.kms_v1": ("google-cloud-kms", "gcp"),
    "google.cloud.pubsub": ("google-cloud-pubsub", "gcp"),
    "google.cloud.pubsub_v1": ("google-cloud-pubsub", "gcp"),
    "google.cloud.storage": ("google-cloud-storage", "gcp"),
    "google.events": ("google-events", "gcp"),  # Firestore document events (continuous capture)
    "google.protobuf": ("protobuf", "gcp"),
    "requests": ("requests", "gcp"),  # (Cosmos DB's transport too: see _extra_from_traceback)
    # Azure
    "azure.core": ("azure-core", "azure"),
    "azure.cosmos": ("azure-cosmos", "azure"),
    "azure.identity": ("azure-identity", "azure"),
    "azure.keyvault.keys": ("azure-keyvault-keys", "azure"),
    "azure.storage.blob": ("azure-storage-blob", "azure"),
    "azure.storage.queue": ("azure-storage-queue", "azure"),
    "urllib3": ("urllib3", "azure"),
    # the function runtimes (handlers/)
    "aws_lambda_powertools": ("aws-lambda-powertools", "aws-function"),
    "aws_xray_sdk": ("aws-xray-sdk", "aws-function"),
    "functions_framework": ("functions-framework", "gcp-function"),
    "azure.functions": ("azure-functions", "azure-function"),
}
# Namespace packages: when even the namespace is missing, the error names only it.
_NAMESPACES: dict[str, tuple[str, str | None]] = {
    "google": ("google-cloud-*", "gcp"), "google.cloud": ("google-cloud-*", "gcp"), "azure": ("azure-*", "azure"),
}
_IMPORT = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_][\w.]*)")
# Modules more than one cloud's SDK use: the extra follows the cloudkeep module that imported it.
_SHARED = frozenset({"requests", "urllib3"})
_CLOUD_OF_ADAPTER = (("azure", "azure"), ("cosmos", "azure"), ("gcs", "gcp"), ("gcp", "gcp"),
                     ("firestore", "gcp"), ("pubsub", "gcp"))


class MissingExtraError(CloudkeepError):
    """A cloud SDK (or another optional dependency) is not installed; names the extra."""

    exit_code = EXIT_USAGE

    def __init__(self, module: str, distribution: str, extra: str | None) -> None:
        self.module = module
        self.distribution = distribution
        self.extra = extra
        install = f"pip install 'cloudkeep[{extra}]'" if extra else f"pip install {distribution}"
        super().__init__(f"{distribution} is not installed (No module named {module!r}): {install}")


def distribution_of(module: str) -> tuple[str, str | None] | None:
    """``(distribution, extra)`` providing ``module`` (longest known prefix), or None."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        found = MODULES.get(".".join(parts[:end]))
        if found is not None:
            return found
    return None


def _missing_module(exc: BaseException) -> ModuleNotFoundError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ModuleNotFoundError) and current.name:
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _imported_module(missing: ModuleNotFoundError) -> str:
    """The full module the failing import statement named (``No module named 'google'`` comes
    from ``from google.cloud.storage import ...``): read from the innermost frame's source line."""
    name = missing.name or ""
    tb = missing.__traceback__
    frames = []
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    for filename, lineno in reversed(frames[-3:]):
        match = _IMPORT.match(linecache.getline(filename, lineno))
        if match and (match[1] == name or match[1].startswith(name + ".")):
            return match[1]
    return name


def _extra_from_traceback(exc: BaseException, default: str | None) -> str | None:
    """For a module several SDKs share: the cloud of the innermost cloudkeep adapter frame."""
    tb = exc.__traceback__
    found = default
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename.replace("\\", "/")
        if "/cloudkeep/" in filename:
            tail = filename.rsplit("/cloudkeep/", 1)[1]
            for word, extra in _CLOUD_OF_ADAPTER:
                if word in tail:
                    found = extra
                    break
        tb = tb.tb_next
    return found


def hint(exc: BaseException) -> MissingExtraError | None:
    """The one-line error for ``exc`` when it is (or was caused by) a missing module cloudkeep
    knows, naming the extra that installs it; None for anything else (a missing module that is
    none of cloudkeep's dependencies stays the bug it is)."""
    if isinstance(exc, MissingExtraError):
        return exc
    if type(exc).__module__.split(".")[0] == "click":  # the CLI's own control flow and usage errors
        return None
    missing = _missing_module(exc)
    if missing is None or missing.name is None:
        return None
    module = _imported_module(missing)
    owner = distribution_of(module) or _NAMESPACES.get(module)
    if owner is None:
        return None
    distribution, extra = owner
    if missing.name.split(".")[0] in _SHARED:
        extra = _extra_from_traceback(missing, extra)
    error = MissingExtraError(missing.name, distribution, extra)
    error.__cause__ = exc
    return error


@contextmanager
def translated() -> Iterator[None]:
    """Run a block; a missing SDK escaping it is raised as :class:`MissingExtraError` (from the
    original error); every other exception passes through unchanged."""
    try:
        yield
    except Exception as exc:
        error = hint(exc)
        if error is None:
            raise
        raise error from exc


def translating(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """``function`` run under :func:`translated`: the use cases of :mod:`cloudkeep.services`
    (the Python API) raise a missing SDK as :class:`MissingExtraError`, a CloudkeepError, as
    their page promises, rather than a bare ``ModuleNotFoundError``."""

    @wraps(function)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with translated():
            return function(*args, **kwargs)

    return wrapper
