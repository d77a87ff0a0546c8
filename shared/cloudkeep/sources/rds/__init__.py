"""RDS source: native, tagged DB (or Aurora cluster) snapshots, made across invocations.

Nothing is read row by row: a snapshot of an RDS database is RDS's own snapshot. The job
(``cloudkeep.jobs``) starts ``CreateDBSnapshot`` / ``CreateDBClusterSnapshot``; later runs poll it;
once it is available and the policy has ``copy_to``, they start a copy into another region (and
account, through ``account_role_arn``, with a KMS key there) and poll that; then the manifest is
committed with every snapshot's ARN. Every snapshot cloudkeep makes is tagged
``cloudkeep:dataset`` / ``cloudkeep:snapshot`` / ``cloudkeep:managed``; retention deletes only
snapshots with those tags (never a snapshot someone else took), and ``verify --level drill``
restores a temporary instance from the snapshot, waits until it is available and deletes it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ... import extras
from ...capabilities import Description, NativeCheck, NativeRestore, NativeRetention
from ...clouds.aws import client_config
from ...errors import RestoreError, SourceError
from .. import JobContext, JobPoll, NamesTargets, NativeJobSource, NativeOutcome
from .drill import RdsDrill, primary
from .errors import _FAILED, _MISSING, _errors

if TYPE_CHECKING:
    from ...manifest import Manifest
    from .. import JobContext, JobPoll, NativeOutcome
    from .spec import RdsSourceSpec

log = logging.getLogger(__name__)

TAG_DATASET = "cloudkeep:dataset"
TAG_SNAPSHOT = "cloudkeep:snapshot"
TAG_MANAGED = "cloudkeep:managed"
ClientFactory = Callable[[str, "str | None"], Any]


def snapshot_identifier(dataset: str, snapshot_id: str) -> str:
    """RDS snapshot ids: letters, digits and single hyphens, starting with a letter."""
    slug = re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", dataset.lower())).strip("-") or "dataset"
    return f"cloudkeep-{slug}-{snapshot_id.lower()}"[:255].rstrip("-")


def _default_clients() -> ClientFactory:
    cache: dict[tuple[str, str | None], Any] = {}
    lock = threading.Lock()

    def make(region: str, role_arn: str | None) -> Any:
        with lock:
            key = (region, role_arn)
            if key not in cache:
                with extras.translated():  # not installed: one line naming the extra
                    import boto3

                session = boto3.session.Session()
                if role_arn:  # another account: act through a role there
                    creds = session.client("sts", region_name=region,
                                           config=client_config()).assume_role(
                        RoleArn=role_arn, RoleSessionName="cloudkeep-rds-copy")["Credentials"]
                    session = boto3.session.Session(
                        aws_access_key_id=creds["AccessKeyId"],
                        aws_secret_access_key=creds["SecretAccessKey"],
                        aws_session_token=creds["SessionToken"])
                cache[key] = session.client("rds", region_name=region, config=client_config())
            return cache[key]

    return make


class RdsSource(RdsDrill, NativeJobSource, NativeCheck, NativeRestore, NativeRetention, NamesTargets):
    kind = "rds"

    def __init__(self, region: str, *, instance: str | None = None, cluster: str | None = None,
                 copy_to: dict[str, Any] | None = None, clients: ClientFactory | None = None) -> None:
        if (instance is None) == (cluster is None):
            raise SourceError("an RDS source needs exactly one of instance or cluster")
        self.region = region
        self.instance = instance
        self.cluster = cluster
        self.copy_to = dict(copy_to) if copy_to else None
        self._clients = clients or _default_clients()

    @classmethod
    def from_spec(cls, spec: RdsSourceSpec) -> RdsSource:
        copy = spec.copy_to.model_dump() if spec.copy_to else None
        return cls(spec.region, instance=spec.instance, cluster=spec.cluster, copy_to=copy)

    def client(self, region: str | None = None, role_arn: str | None = None) -> Any:
        return self._clients(region or self.region, role_arn)

    @property
    def target(self) -> str:
        return "cluster" if self.cluster else "instance"

    @property
    def name(self) -> str:
        return str(self.cluster or self.instance)

    # ------------------------------------------------------------------ the Source protocol

    def describe(self) -> Description:
        client = self.client()
        with _errors(f"describing RDS {self.target} {self.name}"):
            if self.cluster:
                db = client.describe_db_clusters(DBClusterIdentifier=self.cluster)["DBClusters"][0]
                out = {"cluster": self.cluster, "arn": db.get("DBClusterArn"),
                       "instance_class": db.get("DBClusterInstanceClass")}
            else:
                db = client.describe_db_instances(DBInstanceIdentifier=self.instance)["DBInstances"][0]
                out = {"instance": self.instance, "arn": db.get("DBInstanceArn"),
                       "instance_class": db.get("DBInstanceClass"),
                       "allocated_storage": db.get("AllocatedStorage")}
        out |= {"type": "rds", "region": self.region, "engine": db.get("Engine"),
                "engine_version": db.get("EngineVersion"),
                "storage_encrypted": db.get("StorageEncrypted"), "kms_key_id": db.get("KmsKeyId")}
        if self.copy_to:
            out["copy_to"] = {k: v for k, v in self.copy_to.items() if v}
        return Description({k: v for k, v in out.items() if v is not None})

    def plan_segments(self, described: dict[str, Any]) -> int:
        return 1

    def read_segment(self, segment: int, total: int) -> Any:
        raise SourceError("an RDS database is backed up by native snapshots, not read item by item")

    def target_problem(self, target: str, manifest: Manifest) -> str | None:
        """A restore target is a new DB instance (or cluster) identifier (RDS's rules)."""
        if len(target) > 63 or not re.fullmatch(r"[A-Za-z](?:-?[A-Za-z0-9])*", target):
            return (f"an RDS DB {'cluster' if self.cluster else 'instance'} identifier has 1 to 63 "
                    "letters, digits or hyphens, starts with a letter, has no '--' and does not "
                    "end with '-'")
        return None

    def open_restore(self, target: str, recorded: dict[str, Any], *, overwrite: bool) -> Any:
        raise RestoreError("an RDS snapshot is restored by RDS itself (see restore_native)")

    def scan_digest(self, target: str) -> tuple[int, str]:
        raise SourceError("RDS databases have no content digest")

    # ------------------------------------------------------------------ the native job

    def native_method(self) -> str | None:
        return "snapshot"

    def _tags(self, dataset: str, snapshot_id: str) -> list[dict[str, str]]:
        return [{"Key": TAG_DATASET, "Value": dataset}, {"Key": TAG_SNAPSHOT, "Value": snapshot_id},
                {"Key": TAG_MANAGED, "Value": "true"}]

    def start_job(self, ctx: JobContext) -> dict[str, Any]:
        described = self.describe().identity
        ident = snapshot_identifier(ctx.dataset, ctx.snapshot_id)
        tags = self._tags(ctx.dataset, ctx.snapshot_id)
        client = self.client()
        existing = self._snapshot({"region": self.region, "identifier": ident})
        if existing is not None:
            # Made by an earlier attempt of this snapshot (a crash before its record was written,
            # or a failed one): adopt it while it may still become available, else replace it.
            status = str(existing.get("Status", "")).lower()
            arn = existing.get("DBClusterSnapshotArn") or existing.get("DBSnapshotArn")
            record = {"role": "primary", "region": self.region, "identifier": ident, "arn": arn}
            if status not in _FAILED:
                log.info("adopting RDS snapshot %s of an earlier attempt", arn)
                return {"kind": "rds", "phase": "snapshot", "described": described, "snapshots": [record]}
            self._delete(record)
        with _errors(f"snapshotting RDS {self.target} {self.name}"):
            if self.cluster:
                snap = client.create_db_cluster_snapshot(
                    DBClusterIdentifier=self.cluster, DBClusterSnapshotIdentifier=ident, Tags=tags,
                )["DBClusterSnapshot"]
                arn = snap["DBClusterSnapshotArn"]
            else:
                snap = client.create_db_snapshot(
                    DBInstanceIdentifier=self.instance, DBSnapshotIdentifier=ident, Tags=tags,
                )["DBSnapshot"]
                arn = snap["DBSnapshotArn"]
        log.info("started RDS snapshot %s of %s %s", arn, self.target, self.name)
        return {"kind": "rds", "phase": "snapshot", "described": described, "snapshots": [
            {"role": "primary", "region": self.region, "identifier": ident, "arn": arn}]}

    def _snapshot(self, record: dict[str, Any]) -> dict[str, Any] | None:
        """The snapshot a record names, as RDS describes it; None if it is gone."""
        from botocore.exceptions import ClientError

        client = self.client(record["region"], record.get("role_arn"))
        try:
            with _errors(f"reading RDS snapshot {record['identifier']}", passthrough=_MISSING):
                if self.cluster:
                    return dict(client.describe_db_cluster_snapshots(
                        DBClusterSnapshotIdentifier=record["identifier"])["DBClusterSnapshots"][0])
                return dict(client.describe_db_snapshots(
                    DBSnapshotIdentifier=record["identifier"])["DBSnapshots"][0])
        except ClientError:
            return None

    def poll_job(self, ctx: JobContext, job: dict[str, Any]) -> JobPoll:
        current = job["snapshots"][-1]
        snap = self._snapshot(current)
        if snap is None:
            return JobPoll("failed", job, f"RDS snapshot {current['arn']} disappeared")
        status = str(snap.get("Status", "")).lower()
        if status in _FAILED:
            return JobPoll("failed", job, f"RDS snapshot {current['arn']} is {status}")
        if status != "available":
            return JobPoll("running", job, f"{current['role']} snapshot {status} "
                                           f"({snap.get('PercentProgress', 0)}%)")
        if job["phase"] == "snapshot" and self.copy_to:
            job = dict(job, phase="copy", snapshots=[*job["snapshots"], self._start_copy(ctx, current)])
            return JobPoll("running", job, f"copying to {self.copy_to['region']}")
        return JobPoll("done", job)

    def _start_copy(self, ctx: JobContext, source: dict[str, Any]) -> dict[str, Any]:
        assert self.copy_to is not None
        region = self.copy_to["region"]
        role = self.copy_to.get("account_role_arn")
        kms = self.copy_to.get("kms_key_id")
        if role:  # the destination account copies a snapshot it may restore
            account = role.split(":")[4]
            with _errors(f"sharing RDS snapshot {source['identifier']} with account {account}"):
                if self.cluster:
                    self.client().modify_db_cluster_snapshot_attribute(
                        DBClusterSnapshotIdentifier=source["identifier"], AttributeName="restore",
                        ValuesToAdd=[account])
                else:
                    self.client().modify_db_snapshot_attribute(
                        DBSnapshotIdentifier=source["identifier"], AttributeName="restore",
                        ValuesToAdd=[account])
        params: dict[str, Any] = {"Tags": self._tags(ctx.dataset, ctx.snapshot_id)}
        if kms:
            params["KmsKeyId"] = kms
        if region != self.region:
            params["SourceRegion"] = self.region  # boto3 signs the pre-signed URL RDS needs
        client = self.client(region, role)
        out: dict[str, Any] = {"role": "copy", "region": region, "identifier": source["identifier"]}
        if role:
            out["role_arn"] = role
        if kms:
            out["kms_key_id"] = kms
        existing = self._snapshot(out)
        if existing is not None and str(existing.get("Status", "")).lower() not in _FAILED:
            out["arn"] = existing.get("DBClusterSnapshotArn") or existing.get("DBSnapshotArn")
            log.info("adopting RDS snapshot copy %s of an earlier attempt", out["arn"])
            return out
        if existing is not None:
            self._delete(out | {"arn": existing.get("DBClusterSnapshotArn") or existing.get("DBSnapshotArn")})
        with _errors(f"copying RDS snapshot {source['identifier']} to {region}"):
            if self.cluster:
                snap = client.copy_db_cluster_snapshot(
                    SourceDBClusterSnapshotIdentifier=source["arn"],
                    TargetDBClusterSnapshotIdentifier=source["identifier"], **params)["DBClusterSnapshot"]
                arn = snap["DBClusterSnapshotArn"]
            else:
                snap = client.copy_db_snapshot(
                    SourceDBSnapshotIdentifier=source["arn"],
                    TargetDBSnapshotIdentifier=source["identifier"], **params)["DBSnapshot"]
                arn = snap["DBSnapshotArn"]
        log.info("copying RDS snapshot %s to %s", source["arn"], arn)
        return out | {"arn": arn}

    def finish_job(self, ctx: JobContext, job: dict[str, Any]) -> NativeOutcome:
        primary = self._snapshot(job["snapshots"][0]) or {}
        at = primary.get("SnapshotCreateTime") or ctx.started_at
        described = dict(job["described"]) | {
            "method": "snapshot", "consistency": {"mode": "point-in-time", "time": at}}
        native = {"kind": f"rds-{self.target}-snapshot", "target": self.target, "name": self.name,
                  "snapshots": job["snapshots"], "snapshot_arns": [s["arn"] for s in job["snapshots"]],
                  "tags": {t["Key"]: t["Value"] for t in self._tags(ctx.dataset, ctx.snapshot_id)}}
        return NativeOutcome(described=described, native=native)

    # ------------------------------------------------------------------ retention

    def _tags_of(self, record: dict[str, Any]) -> dict[str, str]:
        client = self.client(record["region"], record.get("role_arn"))
        with _errors(f"reading the tags of {record['arn']}"):
            tags = client.list_tags_for_resource(ResourceName=record["arn"]).get("TagList", [])
        return {t["Key"]: t["Value"] for t in tags}

    def _delete(self, record: dict[str, Any]) -> bool:
        from botocore.exceptions import ClientError

        client = self.client(record["region"], record.get("role_arn"))
        try:
            with _errors(f"deleting RDS snapshot {record['arn']}", passthrough=_MISSING):
                if self.cluster:
                    client.delete_db_cluster_snapshot(DBClusterSnapshotIdentifier=record["identifier"])
                else:
                    client.delete_db_snapshot(DBSnapshotIdentifier=record["identifier"])
        except ClientError:
            return False
        log.info("deleted RDS snapshot %s", record["arn"])
        return True

    def delete_native(self, dataset: str, snapshot_id: str, native: dict[str, Any]) -> list[str]:
        """Delete the snapshots (and copies) a pruned snapshot recorded — each only if its tags
        say cloudkeep made it for this very snapshot."""
        deleted = []
        for record in native.get("snapshots", []):
            if self._snapshot(record) is None:
                continue
            tags = self._tags_of(record)
            if tags.get(TAG_DATASET) != dataset or tags.get(TAG_SNAPSHOT) != snapshot_id:
                log.warning("not deleting RDS snapshot %s: its tags do not name %s@%s", record["arn"],
                            dataset, snapshot_id)
                continue
            if self._delete(record):
                deleted.append(record["arn"])
        return deleted

    def sweep_native(self, dataset: str, keep: set[str], older_than: datetime) -> list[str]:
        """Delete manual snapshots of this database tagged by cloudkeep for ``dataset`` whose
        snapshot is neither committed nor pending (``keep``), made before ``older_than``."""
        places: list[tuple[str, str | None]] = [(self.region, None)]
        if self.copy_to:
            places.append((self.copy_to["region"], self.copy_to.get("account_role_arn")))
        deleted = []
        for region, role in places:
            for snap in self._manual_snapshots(region, role):
                arn = snap.get("DBClusterSnapshotArn") or snap.get("DBSnapshotArn")
                ident = snap.get("DBClusterSnapshotIdentifier") or snap.get("DBSnapshotIdentifier")
                record = {"region": region, "role_arn": role, "arn": arn, "identifier": ident}
                tags = ({t["Key"]: t["Value"] for t in snap["TagList"]} if snap.get("TagList")
                        else self._tags_of(record))
                created = snap.get("SnapshotCreateTime")
                if (tags.get(TAG_DATASET) != dataset or tags.get(TAG_MANAGED) != "true"
                        or tags.get(TAG_SNAPSHOT) in keep or created is None or created >= older_than):
                    continue
                if self._delete(record):
                    deleted.append(str(arn))
        return deleted

    def _manual_snapshots(self, region: str, role: str | None) -> list[dict[str, Any]]:
        client = self.client(region, role)
        out: list[dict[str, Any]] = []
        with _errors(f"listing RDS snapshots in {region}"):
            if self.cluster:
                pages = client.get_paginator("describe_db_cluster_snapshots").paginate(
                    DBClusterIdentifier=self.cluster, SnapshotType="manual")
                for page in pages:
                    out.extend(page.get("DBClusterSnapshots", []))
            else:
                pages = client.get_paginator("describe_db_snapshots").paginate(
                    DBInstanceIdentifier=self.instance, SnapshotType="manual")
                for page in pages:
                    out.extend(page.get("DBSnapshots", []))
        return out

    def check_native(self, manifest: Manifest) -> list[str]:
        """Problems with the snapshots a manifest records (gone, or not available)."""
        problems = []
        for record in (manifest.native or {}).get("snapshots", []):
            snap = self._snapshot(record)
            if snap is None:
                problems.append(f"RDS snapshot {record['arn']} no longer exists")
            elif str(snap.get("Status", "")).lower() != "available":
                problems.append(f"RDS snapshot {record['arn']} is {snap.get('Status')}")
        return problems

    # ------------------------------------------------------------------ restore and drill

    def restore_native(self, manifest: Manifest, target: str, *, overwrite: bool) -> dict[str, Any]:
        """Start restoring a new DB instance (or cluster) ``target`` from the primary snapshot;
        RDS makes it available some minutes later."""
        record = primary(manifest)
        client = self.client()
        with _errors(f"restoring RDS snapshot {record['arn']} into {target}"):
            if self.cluster:
                client.restore_db_cluster_from_snapshot(
                    DBClusterIdentifier=target, SnapshotIdentifier=record["identifier"],
                    Engine=manifest.source.get("engine"))
            else:
                client.restore_db_instance_from_db_snapshot(
                    DBInstanceIdentifier=target, DBSnapshotIdentifier=record["identifier"])
        return {"items": 0, "via": f"RDS restore of {record['arn']} (the {self.target} becomes "
                                   "available in a few minutes)"}
