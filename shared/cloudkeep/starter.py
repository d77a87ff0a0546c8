"""``cloudkeep init``: a commented starter policy, optionally with datasets proposed for what the
current credentials can see (DynamoDB tables, Firestore root collections, Cosmos DB containers).

Each cloud is tried only when it is configured in the environment, and never by probing a
metadata server: AWS when credentials or a profile are set (and a region is known), Google Cloud
when the Firestore emulator, a credentials file or gcloud's application-default login is there
(and a project is known), Azure when ``COSMOS_ENDPOINT`` is set. A cloud that fails is reported
with its error; the others are still proposed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from . import extras
from .clouds.aws import client_config
from .layout import DATASET_NAME_RE


@dataclass
class Proposal:
    """One dataset to propose: its name and its ``source:`` mapping."""

    name: str
    source: dict[str, Any]
    note: str = ""


@dataclass
class CloudResult:
    cloud: str
    attempted: bool
    detail: str = ""  # why not attempted, or where it looked
    error: str | None = None
    proposals: list[Proposal] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"cloud": self.cloud, "attempted": self.attempted, "detail": self.detail,
                "error": self.error,
                "datasets": [{"name": p.name, "source": p.source} for p in self.proposals]}


# ------------------------------------------------------------------------------ discovery


def _aws_configured(env: dict[str, str]) -> bool:
    if any(env.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
                                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                                "AWS_CONTAINER_CREDENTIALS_FULL_URI")):
        return True
    home = Path(env.get("HOME", "~")).expanduser()
    files = [env.get("AWS_SHARED_CREDENTIALS_FILE"), env.get("AWS_CONFIG_FILE"),
             str(home / ".aws" / "credentials"), str(home / ".aws" / "config")]
    return any(f and Path(f).is_file() for f in files)


def discover_aws(env: dict[str, str], region: str | None = None) -> CloudResult:
    region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not _aws_configured(env):
        return CloudResult("aws", False, "no AWS credentials or profile in the environment")
    if not region:
        return CloudResult("aws", False, "no region: set AWS_REGION or pass --aws-region")
    result = CloudResult("aws", True, f"DynamoDB tables in {region}")
    try:
        import boto3

        client = boto3.client("dynamodb", region_name=region,
                              config=client_config(read_timeout=15))
        for page in client.get_paginator("list_tables").paginate():
            for table in page.get("TableNames", []):
                result.proposals.append(Proposal(
                    table, {"type": "dynamodb", "table": table, "region": region}))
    except Exception as exc:  # noqa: BLE001 - any SDK failure is this cloud's problem only
        result.error = _one_line(exc)
    return result


def _gcp_configured(env: dict[str, str]) -> bool:
    if env.get("FIRESTORE_EMULATOR_HOST") or env.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return True
    home = Path(env.get("HOME", "~")).expanduser()
    return (home / ".config" / "gcloud" / "application_default_credentials.json").is_file()


def discover_gcp(env: dict[str, str], project: str | None = None) -> CloudResult:
    project = (project or env.get("GOOGLE_CLOUD_PROJECT") or env.get("GCLOUD_PROJECT")
               or env.get("CLOUDSDK_CORE_PROJECT"))
    if not _gcp_configured(env):
        return CloudResult("gcp", False, "no Google Cloud credentials (GOOGLE_APPLICATION_CREDENTIALS, "
                                         "gcloud auth application-default login) or emulator")
    if not project:
        return CloudResult("gcp", False, "no project: set GOOGLE_CLOUD_PROJECT or pass --gcp-project")
    result = CloudResult("gcp", True, f"Firestore root collections in project {project}")
    try:
        from google.cloud import firestore

        client = firestore.Client(project=project)
        for collection in sorted(c.id for c in client.collections(timeout=30)):
            result.proposals.append(Proposal(
                collection, {"type": "firestore", "project": project, "collections": [collection]}))
    except Exception as exc:  # noqa: BLE001 - reported per cloud, never fatal
        result.error = _one_line(exc)
    return result


def discover_azure(env: dict[str, str], endpoint: str | None = None) -> CloudResult:
    endpoint = endpoint or env.get("COSMOS_ENDPOINT")
    if not endpoint:
        return CloudResult("azure", False, "no Cosmos DB account: set COSMOS_ENDPOINT or pass "
                                           "--cosmos-endpoint")
    host = urlparse(endpoint).hostname or ""
    local = host in ("127.0.0.1", "localhost", "::1")  # an emulator: self-signed certificate
    result = CloudResult("azure", True, f"Cosmos DB containers at {endpoint}")
    try:
        from azure.cosmos import CosmosClient

        logging.getLogger("azure").setLevel(logging.ERROR)
        credential: Any = env.get("COSMOS_KEY")
        if not credential:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential(exclude_managed_identity_credential=True)
        if local:
            import urllib3

            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        client = CosmosClient(endpoint, credential=credential, connection_verify=not local,
                              connection_timeout=5, retry_total=1)
        for database in sorted(d["id"] for d in client.list_databases()):
            db = client.get_database_client(database)
            for container in sorted(c["id"] for c in db.list_containers()):
                source: dict[str, Any] = {"type": "cosmos", "endpoint": endpoint,
                                          "database": database, "container": container}
                if local:
                    source["verify_tls"] = False
                if not env.get("COSMOS_KEY"):
                    source["key_env"] = "COSMOS_KEY"
                result.proposals.append(Proposal(f"{database}-{container}", source))
    except Exception as exc:  # noqa: BLE001 - reported per cloud, never fatal
        result.error = _one_line(exc)
    return result


def discover(env: dict[str, str] | None = None, *, aws_region: str | None = None,
             gcp_project: str | None = None, cosmos_endpoint: str | None = None) -> list[CloudResult]:
    env = dict(os.environ if env is None else env)
    return [discover_aws(env, aws_region), discover_gcp(env, gcp_project),
            discover_azure(env, cosmos_endpoint)]


def _one_line(exc: BaseException) -> str:
    missing = extras.hint(exc)  # a cloud's SDK not installed: name the extra to install
    if missing is not None:
        return str(missing)
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"


# ------------------------------------------------------------------------------ the file


def dataset_name(raw: str, taken: set[str]) -> str:
    """A valid, unused dataset name for ``raw`` (a table, collection or container name)."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", raw).strip("-._") or "dataset"
    if not name[0].isalnum():
        name = "d" + name
    name = name[:120]
    candidate, n = name, 2
    while candidate in taken or not DATASET_NAME_RE.match(candidate):
        candidate = f"{name}-{n}"
        n += 1
    taken.add(candidate)
    return candidate


HEADER = """\
# cloudkeep policy — what to back up, how often, how long to keep it, and where.
# Reference: docs/policy-reference.md · check it: cloudkeep validate · see what is due: cloudkeep plan
# Editors can validate this file as you type against the JSON Schema (`cloudkeep schema`), e.g.
# with the YAML language server: put "# yaml-language-server: $schema=cloudkeep.schema.json" first.
version: 1
timezone: UTC                 # schedules, windows and retention periods are in this time zone

# Where snapshots go. Every dataset names one store; tiers may copy snapshots to more.
stores:
  local:
    type: file
    path: ./backups           # relative to this file; fine for a first try, not for production
  # vault:                    # S3 (Object Lock keeps snapshots from being deleted early)
  #   type: s3
  #   bucket: acme-backups
  #   region: eu-west-1
  #   object_lock: {mode: GOVERNANCE}
  # gcs-vault: {type: gcs, bucket: acme-backups}
  # blob-vault:               # Azure Blob; the connection string comes from the environment
  #   type: azure_blob
  #   container: backups
  #   account_url: https://acmebackups.blob.core.windows.net

# How often (cron in the time zone above, or rate(...)), how stale a dataset may get (rpo), and
# how many snapshots to keep per period (retention, as restic's forget).
tiers:
  critical:
    schedule: "0 * * * *"     # every hour
    rpo: 90m                  # alert when the newest snapshot is older than this
    retention: {hourly: 24, daily: 14, weekly: 8, monthly: 12}
    # verify: {drill: "0 4 * * 0"}   # a weekly restore drill measures the restore time (RTO)
  standard:
    schedule: "0 2 * * *"     # every night at 02:00
    window: "01:00-05:00"     # start only inside this window
    rpo: 26h
    retention: {daily: 7, weekly: 4, monthly: 6}

# Snapshots can be encrypted (envelope encryption; any one listed key can restore them):
# keys:
#   main: {provider: aws_kms, key_id: alias/cloudkeep, region: eu-west-1}
#   # or {provider: gcp_kms, key_name: projects/P/locations/L/keyRings/R/cryptoKeys/K},
#   #    {provider: azure_key_vault, key_url: https://VAULT.vault.azure.net/keys/NAME},
#   #    {provider: local, path: ./cloudkeep.key}   (keep a copy of the file off-site)
# encryption: {keys: [main]}
"""


def _flow(value: Any) -> str:
    """A value as YAML flow style (JSON is valid YAML; keys left bare where that is safe)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, ensure_ascii=False)


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) else json.dumps(key)


EXAMPLE_DATASETS = """\
# What to back up. Replace the example with your own (cloudkeep init --discover proposes some).
datasets:
  orders:
    source: {type: dynamodb, table: orders, region: eu-west-1}
    tier: critical
    store: local
  # profiles:
  #   source: {type: firestore, project: acme-prod, collections: [profiles]}
  #   tier: standard
  #   store: local
  # carts:
  #   source: {type: cosmos, endpoint: "https://acme.documents.azure.com:443/", database: shop,
  #            container: carts}       # key from $COSMOS_KEY, else a managed identity
  #   tier: standard
  #   store: local
"""


def render(results: list[CloudResult] | None = None) -> str:
    """The starter policy text; with discovery results, their proposals as datasets."""
    if results is None:
        return HEADER + "\n" + EXAMPLE_DATASETS
    lines = ["# Datasets proposed from what the current credentials can see (cloudkeep init",
             "# --discover). Each is on the standard tier: move the important ones to critical.",
             "datasets:"]
    taken: set[str] = set()
    any_dataset = False
    for result in results:
        label = {"aws": "DynamoDB", "gcp": "Firestore", "azure": "Cosmos DB"}[result.cloud]
        if not result.attempted:
            lines.append(f"  # {label}: not looked at: {result.detail}")
            continue
        if result.error:
            lines.append(f"  # {label}: could not list ({result.detail}): {result.error}")
            continue
        if not result.proposals:
            lines.append(f"  # {label}: nothing found ({result.detail})")
            continue
        lines.append(f"  # {label}: {result.detail}")
        for proposal in result.proposals:
            name = dataset_name(proposal.name, taken)
            lines += [f"  {_key(name)}:", f"    source: {_flow(proposal.source)}",
                      "    tier: standard", "    store: local"]
            any_dataset = True
    if not any_dataset:
        lines[2] = "datasets: {}   # nothing found to propose: add datasets here"
    return HEADER + "\n" + "\n".join(lines) + "\n"
