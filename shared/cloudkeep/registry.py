"""Type name → implementation, imported on first use so only the needed cloud SDK is loaded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from .policy import Policy
    from .sources import Source
    from .stores import Store


def open_store(spec: Any) -> Store:
    """Build the Store a policy store spec describes."""
    kind = spec.type
    if kind == "file":
        from .stores.file import FileStore

        return FileStore(spec.path)
    if kind == "s3":
        from .stores.s3 import S3Store

        return S3Store.from_spec(spec)
    if kind == "gcs":
        from .stores.gcs import GcsStore

        return cast("Store", GcsStore.from_spec(spec))
    if kind == "azure_blob":
        from .stores.azure_blob import AzureBlobStore

        return cast("Store", AzureBlobStore.from_spec(spec))
    raise ValueError(f"unknown store type {kind!r}")  # unreachable: the policy was validated


def open_source(spec: Any) -> Source:
    """Build the Source a policy source spec describes."""
    kind = spec.type
    if kind == "dynamodb":
        from .sources.dynamodb import DynamoDBSource

        return DynamoDBSource.from_spec(spec)
    if kind == "firestore":
        from .sources.firestore import FirestoreSource

        return cast("Source", FirestoreSource.from_spec(spec))
    if kind == "cosmos":
        from .sources.cosmos import CosmosSource

        return cast("Source", CosmosSource.from_spec(spec))
    if kind == "s3":
        from .sources.s3 import S3Source

        return cast("Source", S3Source.from_spec(spec))
    if kind == "rds":
        from .sources.rds import RdsSource

        return cast("Source", RdsSource.from_spec(spec))
    raise ValueError(f"unknown source type {kind!r}")  # unreachable: the policy was validated


def store_for_dataset(policy: Policy, dataset: str) -> Store:
    return open_store(policy.stores[policy.dataset(dataset).store])
