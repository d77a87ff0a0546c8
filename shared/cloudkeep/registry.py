"""Type name → the adapter's policy spec class: the one table of every source, store and key
provider type.

The spec class is the adapter's face to the core: ``spec.open()`` builds the adapter (its
implementation and cloud SDK are imported then, not before), and what the core needs to know of
a type is a method or ClassVar of the class. The policy model builds its unions from these
tables; code that only has a manifest asks :func:`source_spec` with the manifest's type name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .keys.aws_kms import AwsKmsKeySpec
from .keys.azure_key_vault import AzureKeyVaultKeySpec
from .keys.gcp_kms import GcpKmsKeySpec
from .keys.local import LocalKeySpec
from .sources.cosmos.spec import CosmosSourceSpec
from .sources.dynamodb.spec import DynamoDBSourceSpec
from .sources.firestore.spec import FirestoreSourceSpec
from .sources.rds.spec import RdsSourceSpec
from .sources.s3.spec import S3SourceSpec
from .specs import KeyModel, SourceModel, StoreModel, UrlStoreModel
from .stores.azure_blob import AzureBlobStoreSpec
from .stores.file import FileStoreSpec
from .stores.gcs import GcsStoreSpec
from .stores.s3 import S3StoreSpec

if TYPE_CHECKING:
    from .sources import Source
    from .stores import Store

# In the order the policy's JSON schema lists them.
SOURCES: dict[str, type[SourceModel]] = {cls.type_name(): cls for cls in (
    DynamoDBSourceSpec, FirestoreSourceSpec, CosmosSourceSpec, S3SourceSpec, RdsSourceSpec)}
STORES: dict[str, type[StoreModel]] = {cls.type_name(): cls for cls in (
    FileStoreSpec, S3StoreSpec, GcsStoreSpec, AzureBlobStoreSpec)}
KEYS: dict[str, type[KeyModel]] = {cls.type_name(): cls for cls in (
    AwsKmsKeySpec, GcpKmsKeySpec, AzureKeyVaultKeySpec, LocalKeySpec)}

URL_SCHEMES: dict[str, type[UrlStoreModel]] = {
    cls.URL_SHAPE.partition("://")[0]: cls for cls in STORES.values() if issubclass(cls, UrlStoreModel)}
"""Policy URL scheme (``s3``, ``gs``, ``az``) → the store type that reads it."""


def source_spec(type_name: object) -> type[SourceModel] | None:
    """The spec class of source type ``type_name`` (e.g. a manifest's ``source.type``), or
    None for a type this cloudkeep does not know."""
    return SOURCES.get(str(type_name))


def line_check(type_name: object) -> Callable[[Any], str | None]:
    """What checks one decoded line of a part of a ``type_name`` snapshot (any JSON object for
    a type this cloudkeep does not know)."""
    return (source_spec(type_name) or SourceModel).check_line


def store_spec(type_name: object) -> type[StoreModel] | None:
    """The spec class of store type ``type_name``, or None."""
    return STORES.get(str(type_name))


def key_spec(provider: object) -> type[KeyModel] | None:
    """The spec class of key provider ``provider``, or None."""
    return KEYS.get(str(provider))


def open_store(spec: StoreModel) -> Store:
    """Build the Store a policy store spec describes."""
    return spec.open()


def open_source(spec: SourceModel) -> Source:
    """Build the Source a policy source spec describes."""
    return spec.open()


class _StoresOf(Protocol):
    @property
    def stores(self) -> Mapping[str, StoreModel]: ...

    def dataset(self, name: str) -> Any: ...


def store_for_dataset(policy: _StoresOf, dataset: str) -> Store:
    """The store ``dataset``'s snapshots are written to."""
    return open_store(policy.stores[policy.dataset(dataset).store])
