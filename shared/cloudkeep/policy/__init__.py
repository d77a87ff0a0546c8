"""The policy file: pydantic models, loading, and error reports that name every problem.

A policy names the stores backups go to, the tiers (schedule, RPO, retention) and the datasets.
Loading either returns a frozen, fully cross-checked :class:`Policy` or raises
:class:`~cloudkeep.errors.PolicyError` listing *every* problem as ``file:line: field.path: what``.

The package: :mod:`.schedules` (cron, rate, windows), :mod:`.model` (the models; source, store
and key specs come from the adapters through :mod:`cloudkeep.registry`), :mod:`.load` (reading
files and URLs, validating), :mod:`.yamlload` (the YAML limits and line numbers),
:mod:`.messages` (one line per problem), :mod:`.checks` (cross-checks). Every name is
re-exported here: ``from cloudkeep.policy import load_policy, parse_policy, Policy, ...``.
"""

from __future__ import annotations

from ..errors import PolicyError, UsageError
from ..keys.aws_kms import AwsKmsKeySpec
from ..keys.azure_key_vault import AzureKeyVaultKeySpec
from ..keys.gcp_kms import GcpKmsKeySpec
from ..keys.local import LocalKeySpec
from ..sources.cosmos.spec import CosmosSourceSpec
from ..sources.dynamodb.spec import DynamoDBSourceSpec
from ..sources.firestore.spec import FirestoreSourceSpec
from ..sources.rds.spec import RdsCopyTo, RdsSourceSpec
from ..sources.s3.spec import S3SourceSpec
from ..specs import (
    BUCKET_RE,
    DURATION_PATTERN,
    MAX_DURATION,
    Duration,
    Immutability,
    KeyModel,
    Model,
    ObjectLock,
    Offset,
    SourceModel,
    StoreLocation,
    StoreModel,
    format_duration,
    normalise_url,
    parse_duration,
    parse_offset,
)
from ..stores.azure_blob import AzureBlobStoreSpec, BlobImmutability
from ..stores.file import FileStoreSpec
from ..stores.gcs import GcsStoreSpec
from ..stores.s3 import S3StoreSpec
from .load import (
    DEFAULT_POLICY_FILE,
    POLICY_ENV,
    POLICY_URL_SCHEMES,
    LoadedPolicy,
    load_policy,
    parse_policy,
    resolve_policy_path,
)
from .model import (
    KEY_MODELS,
    KEY_PROVIDERS,
    NO_ENCRYPTION,
    NO_SIGNING,
    SOURCE_MODELS,
    SOURCE_TYPES,
    STORE_MODELS,
    STORE_TYPES,
    Alerts,
    ContinuousSpec,
    Dataset,
    Encryption,
    EncryptionSpec,
    KeySpec,
    Policy,
    PubSubAlerts,
    Residency,
    Retention,
    Signing,
    SigningSpec,
    SnsAlerts,
    SourceSpec,
    StoreSpec,
    Tier,
    VerifySchedule,
    WebhookAlerts,
)
from .schedules import Schedule, validate_schedule
from .yamlload import MAX_POLICY_BYTES, MAX_YAML_ALIASES, MAX_YAML_DEPTH, MAX_YAML_NODES

_BUCKET_RE = BUCKET_RE  # the name adapters used before cloudkeep.specs

__all__ = [
    "DEFAULT_POLICY_FILE", "DURATION_PATTERN", "KEY_MODELS", "KEY_PROVIDERS", "MAX_DURATION",
    "MAX_POLICY_BYTES", "MAX_YAML_ALIASES", "MAX_YAML_DEPTH", "MAX_YAML_NODES", "NO_ENCRYPTION",
    "NO_SIGNING", "POLICY_ENV", "POLICY_URL_SCHEMES", "SOURCE_MODELS", "SOURCE_TYPES",
    "STORE_MODELS", "STORE_TYPES", "Alerts", "AwsKmsKeySpec", "ContinuousSpec", "AzureBlobStoreSpec",
    "AzureKeyVaultKeySpec", "BlobImmutability", "CosmosSourceSpec", "Dataset",
    "DynamoDBSourceSpec", "Duration", "Encryption", "EncryptionSpec", "FileStoreSpec",
    "FirestoreSourceSpec", "GcpKmsKeySpec", "GcsStoreSpec", "Immutability", "KeyModel", "KeySpec",
    "LoadedPolicy", "LocalKeySpec", "Model", "ObjectLock", "Offset", "Policy", "PolicyError",
    "PubSubAlerts", "RdsCopyTo", "RdsSourceSpec", "Residency", "Retention", "S3SourceSpec",
    "S3StoreSpec", "Schedule", "Signing", "SigningSpec", "SnsAlerts", "SourceModel", "SourceSpec",
    "StoreLocation", "StoreModel", "StoreSpec", "Tier", "UsageError", "VerifySchedule",
    "WebhookAlerts", "format_duration", "load_policy", "normalise_url", "parse_duration",
    "parse_offset", "parse_policy", "resolve_policy_path", "validate_schedule",
]
