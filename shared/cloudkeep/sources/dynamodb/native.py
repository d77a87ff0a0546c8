"""DynamoDB's native jobs (``cloudkeep.jobs``: started by one run, polled by the next ones, never
waited for in a sleeping function), and the native snapshots' restore, checks and retention.

- ``export``: ``ExportTableToPointInTime`` into the dataset's S3 store, under the snapshot's own
  folder; the export's gzip data files become the snapshot's parts (sizes, sha256, items, content
  digest), the export time its point-in-time consistency. The lines are the same as a scan's, so
  such a snapshot restores through the same path.
- ``native``: an on-demand ``CreateBackup`` named ``cloudkeep-<dataset>-<snapshot id>`` (and
  tagged where DynamoDB allows); retention deletes it with its snapshot; restore runs
  ``RestoreTableFromBackup`` into a new table.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ... import layout
from ...capabilities import Description, NativeCheck, NativeRestore, NativeRetention, ServerSideCopy, able
from ...codec import ContentDigest, HashingReader, PartLimitError, TruncatedPartError, iter_gzip_lines
from ...errors import RestoreError, SourceError
from ...manifest import Codec, PartEntry
from .. import JobContext, JobPoll, NativeJobSource, NativeOutcome
from .errors import _errors

if TYPE_CHECKING:
    from ...manifest import Manifest

log = logging.getLogger(__name__)

EXPORT_FOLDER = "export"
TAG_DATASET = "cloudkeep:dataset"
TAG_SNAPSHOT = "cloudkeep:snapshot"
_EXPORT_HINTS = {
    "PointInTimeRecoveryUnavailableException":
        "method: export needs point-in-time recovery on the table "
        "(aws dynamodb update-continuous-backups --point-in-time-recovery-specification "
        "PointInTimeRecoveryEnabled=true)",
}


def backup_name(dataset: str, snapshot_id: str) -> str:
    """The name of the on-demand backup cloudkeep makes for a snapshot (DynamoDB allows
    [a-zA-Z0-9_.-], up to 255 characters — a dataset name and a snapshot id fit)."""
    return f"cloudkeep-{dataset}-{snapshot_id}"


class NativeJobs(NativeJobSource, NativeRestore, NativeCheck, NativeRetention):
    """The native half of :class:`~cloudkeep.sources.dynamodb.DynamoDBSource` (a mixin: it uses
    the source's client, table and description)."""

    table: str
    region: str
    method: str

    if TYPE_CHECKING:
        @property
        def client(self) -> Any: ...

        def describe(self) -> Description: ...

        def _describe(self, table: str) -> dict[str, Any] | None: ...

        def scan_digest(self, target: str) -> tuple[int, str]: ...

    def native_method(self) -> str | None:
        return self.method if self.method in ("export", "native") else None

    def start_job(self, ctx: JobContext) -> dict[str, Any]:
        described = self.describe().identity
        if self.method == "export":
            return self._start_export(ctx, described)
        name = backup_name(ctx.dataset, ctx.snapshot_id)
        with _errors(f"creating backup {name} of {self.table}"):
            details = self.client.create_backup(TableName=self.table, BackupName=name)["BackupDetails"]
        arn = details["BackupArn"]
        tagged = self._tag(arn, ctx)
        log.info("started on-demand backup %s of %s", arn, self.table)
        return {"kind": "backup", "backup_arn": arn, "backup_name": name, "tagged": tagged,
                "described": described}

    def _start_export(self, ctx: JobContext, described: dict[str, Any]) -> dict[str, Any]:
        store = able(ctx.store, ServerSideCopy)
        if store is None:
            raise SourceError(
                f"dataset {ctx.dataset!r}: method: export writes DynamoDB's export into the store's "
                f"bucket, so the store must be of type s3 (it is {ctx.store.describe()})"
            )
        # A folder per attempt: a failed export's partial files never mix with the next one's.
        folder = (layout.snapshot_prefix(ctx.dataset, ctx.snapshot_id) + EXPORT_FOLDER + "/"
                  + ctx.started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ"))
        bucket, prefix = store.location(folder)
        token = str(uuid.uuid5(uuid.NAMESPACE_URL,
                               f"cloudkeep:{ctx.dataset}:{ctx.snapshot_id}:{ctx.started_at.isoformat()}"))
        with _errors(f"exporting {self.table}", hints=_EXPORT_HINTS):
            desc = self.client.export_table_to_point_in_time(
                TableArn=described["table_arn"], S3Bucket=bucket, S3Prefix=prefix,
                ExportFormat="DYNAMODB_JSON", ClientToken=token,
            )["ExportDescription"]
        log.info("started export %s of %s into s3://%s/%s", desc["ExportArn"], self.table,
                 bucket, prefix)
        return {"kind": "export", "export_arn": desc["ExportArn"], "s3_bucket": bucket,
                "s3_prefix": prefix, "folder": folder, "requested_at": ctx.started_at.isoformat(),
                "described": described}

    def _tag(self, arn: str, ctx: JobContext) -> bool:
        """Tag the backup (cloudkeep:dataset, cloudkeep:snapshot) where DynamoDB allows it; its
        name carries the same two facts either way, and retention matches on both."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.tag_resource(ResourceArn=arn, Tags=[
                {"Key": TAG_DATASET, "Value": ctx.dataset}, {"Key": TAG_SNAPSHOT, "Value": ctx.snapshot_id}])
            return True
        except (ClientError, BotoCoreError) as exc:
            log.info("backup %s not tagged (%s); it is known by its name", arn, exc)
            return False

    def poll_job(self, ctx: JobContext, job: dict[str, Any]) -> JobPoll:
        if job["kind"] == "export":
            with _errors(f"reading export {job['export_arn']}"):
                desc = self.client.describe_export(ExportArn=job["export_arn"])["ExportDescription"]
            status = desc.get("ExportStatus")
            if status == "COMPLETED":
                return JobPoll("done", job)
            if status == "FAILED":
                return JobPoll("failed", job, f"export {job['export_arn']} failed: "
                                f"{desc.get('FailureCode')}: {desc.get('FailureMessage')}")
            return JobPoll("running", job, f"export {status}")
        with _errors(f"reading backup {job['backup_arn']}"):
            details = self.client.describe_backup(
                BackupArn=job["backup_arn"])["BackupDescription"]["BackupDetails"]
        status = details.get("BackupStatus")
        if status == "AVAILABLE":
            return JobPoll("done", job)
        if status == "DELETED":
            return JobPoll("failed", job, f"backup {job['backup_arn']} was deleted before it was available")
        return JobPoll("running", job, f"backup {status}")

    def finish_job(self, ctx: JobContext, job: dict[str, Any]) -> NativeOutcome:
        described = dict(job["described"])
        if job["kind"] == "export":
            return self._finish_export(ctx, job, described)
        with _errors(f"reading backup {job['backup_arn']}"):
            desc = self.client.describe_backup(BackupArn=job["backup_arn"])["BackupDescription"]
        details = desc["BackupDetails"]
        created = details.get("BackupCreationDateTime") or ctx.started_at
        if isinstance(created, (int, float)):
            created = datetime.fromtimestamp(created, UTC)
        described |= {"method": "native", "consistency": {"mode": "point-in-time", "time": created}}
        native = {
            "kind": "dynamodb-backup", "backup_arn": details["BackupArn"],
            "backup_name": details.get("BackupName"), "size_bytes": details.get("BackupSizeBytes"),
            "item_count": (desc.get("SourceTableDetails") or {}).get("ItemCount"),
            "tags": {TAG_DATASET: ctx.dataset, TAG_SNAPSHOT: ctx.snapshot_id} if job.get("tagged") else {},
        }
        return NativeOutcome(described=described, native=native)

    def _finish_export(self, ctx: JobContext, job: dict[str, Any], described: dict[str, Any]) -> NativeOutcome:
        with _errors(f"reading export {job['export_arn']}"):
            desc = self.client.describe_export(ExportArn=job["export_arn"])["ExportDescription"]
        at = desc.get("ExportTime") or desc.get("StartTime") or job["requested_at"]
        snapshot_folder = layout.snapshot_prefix(ctx.dataset, ctx.snapshot_id)
        files = sorted((i.key, i.size) for i in ctx.store.list(job["folder"] + "/")
                       if "/data/" in i.key and not i.key.endswith("/"))
        parts: list[PartEntry] = []
        digest = ContentDigest()
        for index, (key, size) in enumerate(files):
            part_digest = ContentDigest()
            items = raw = 0
            with ctx.store.open(key) as stream:
                # No manifest yet to bound it: the listed size bounds the stored bytes, and a
                # line longer than any item stops the read (memory stays flat either way).
                hashing = HashingReader(stream, limit=size)
                try:
                    for line in iter_gzip_lines(hashing):  # type: ignore[arg-type]
                        raw += len(line) + 1  # every decompressed byte: verify caps at raw_bytes
                        if not line:
                            continue
                        part_digest.add_line(line)
                        items += 1
                    hashing.drain()
                    hashing.check_size()
                except (PartLimitError, TruncatedPartError) as exc:
                    raise SourceError(f"export {job['export_arn']}: data file {key}: {exc}; the "
                                      "snapshot is not committed") from None
            sha = hashing.sha256.hexdigest() if hashing.size else hashlib.sha256(b"").hexdigest()
            parts.append(PartEntry(name=key[len(snapshot_folder):], segment=0, index=index, items=items,
                                   raw_bytes=raw, stored_bytes=hashing.size, sha256=sha))
            digest.merge(part_digest)
        expected = desc.get("ItemCount")
        if expected is not None and int(expected) != digest.count:
            raise SourceError(
                f"export {job['export_arn']} reports {expected} items but its data files hold "
                f"{digest.count}; the snapshot is not committed"
            )
        described |= {"method": "export", "consistency": {"mode": "point-in-time", "time": at}}
        native = {"kind": "dynamodb-export", "export_arn": job["export_arn"],
                  "s3_uri": f"s3://{job['s3_bucket']}/{job['s3_prefix']}", "item_count": expected,
                  "billed_size_bytes": desc.get("BilledSizeBytes")}
        return NativeOutcome(described=described, native=native, parts=parts,
                             codec=Codec(compression="gzip", level=None), content_digest=digest.hexdigest())

    # ------------------------------------------------------- native restore and retention

    def restore_native(self, manifest: Manifest, target: str, *, overwrite: bool) -> dict[str, Any] | None:
        """RestoreTableFromBackup into a new table ``target`` (native snapshots only)."""
        if manifest.method != "native" or not manifest.native:
            return None
        arn = manifest.native["backup_arn"]
        if self._describe(target) is not None:
            raise RestoreError(
                f"table {target!r} exists: RestoreTableFromBackup creates the table itself, so a "
                "native snapshot restores only into a new table name"
                + (" (--overwrite cannot apply)" if overwrite else "")
            )
        with _errors(f"restoring backup {arn} into {target}"):
            self.client.restore_table_from_backup(TargetTableName=target, BackupArn=arn)
            self.client.get_waiter("table_exists").wait(
                TableName=target, WaiterConfig={"Delay": 5, "MaxAttempts": 720})
        items, _ = self.scan_digest(target)
        return {"items": items, "via": f"RestoreTableFromBackup {arn}"}

    def check_native(self, manifest: Manifest) -> list[str]:
        """Problems with what a native snapshot recorded (its backup gone or not available)."""
        if not manifest.native or manifest.native.get("kind") != "dynamodb-backup":
            return []
        from botocore.exceptions import ClientError

        arn = manifest.native["backup_arn"]
        try:
            with _errors(f"reading backup {arn}", passthrough={"BackupNotFoundException"}):
                details = self.client.describe_backup(BackupArn=arn)["BackupDescription"]["BackupDetails"]
        except ClientError:
            return [f"backup {arn} no longer exists"]
        status = details.get("BackupStatus")
        return [] if status == "AVAILABLE" else [f"backup {arn} is {status}"]

    def delete_native(self, dataset: str, snapshot_id: str, native: dict[str, Any]) -> list[str]:
        """Delete the backup a pruned snapshot recorded — only if its name says cloudkeep made it
        for this very snapshot."""
        if native.get("kind") != "dynamodb-backup":
            return []
        arn, name = native["backup_arn"], native.get("backup_name")
        if name != backup_name(dataset, snapshot_id):
            log.warning("not deleting backup %s: its name %r is not cloudkeep's for %s@%s", arn, name,
                        dataset, snapshot_id)
            return []
        return [arn] if self._delete_backup(arn) else []

    def sweep_native(self, dataset: str, keep: set[str], older_than: datetime) -> list[str]:
        """Delete cloudkeep's backups of ``dataset`` (known by name) whose snapshot is neither
        committed nor pending (``keep``) and that were made before ``older_than``."""
        head = f"cloudkeep-{dataset}-"
        deleted = []
        params: dict[str, Any] = {"TableName": self.table, "BackupType": "USER"}
        while True:
            with _errors(f"listing backups of {self.table}"):
                page = self.client.list_backups(**params)
            for summary in page.get("BackupSummaries", []):
                name = summary.get("BackupName", "")
                sid = name[len(head):] if name.startswith(head) else ""
                created = summary.get("BackupCreationDateTime")
                if (not layout.SNAPSHOT_ID_RE.match(sid) or sid in keep or created is None
                        or created >= older_than):
                    continue
                if self._delete_backup(summary["BackupArn"]):
                    deleted.append(summary["BackupArn"])
            last = page.get("LastEvaluatedBackupArn")
            if not last:
                return deleted
            params["ExclusiveStartBackupArn"] = last

    def _delete_backup(self, arn: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            with _errors(f"deleting backup {arn}", passthrough={"BackupNotFoundException"}):
                self.client.delete_backup(BackupArn=arn)
        except ClientError:
            return False
        log.info("deleted backup %s", arn)
        return True
