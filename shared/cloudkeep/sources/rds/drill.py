"""RDS restore drills: a temporary instance (or cluster) restored from a snapshot, waited for,
checked and deleted."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...capabilities import Drillable
from ...errors import RestoreError
from .errors import _FAILED, _errors

if TYPE_CHECKING:
    from ...manifest import Manifest

log = logging.getLogger(__name__)

TAG_DRILL = "cloudkeep:drill"


def primary(manifest: Manifest) -> dict[str, Any]:
    records = (manifest.native or {}).get("snapshots") or []
    if not records:
        raise RestoreError(f"{manifest.dataset}@{manifest.snapshot_id} records no RDS snapshot")
    return dict(records[0])


class RdsDrill(Drillable):
    """The drill half of :class:`~cloudkeep.sources.rds.RdsSource` (a mixin: it uses the
    source's client and database)."""

    cluster: str | None

    if TYPE_CHECKING:
        def client(self, region: str | None = None, role_arn: str | None = None) -> Any: ...

        @property
        def target(self) -> str: ...

    def drill(self, manifest: Manifest, *, poll_interval: float = 30.0, timeout: float = 3 * 3600.0,
              sleep: Callable[[float], None] = time.sleep,
              on_available: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Restore a temporary instance (or cluster) from the snapshot, wait until it is
        available, then delete it — also when anything fails. Returns what happened, with every
        problem."""
        record = primary(manifest)
        name = f"ck-drill-{secrets.token_hex(4)}"
        client = self.client()
        problems: list[str] = []
        created = False
        started = time.monotonic()
        status = None
        try:
            tags = [{"Key": TAG_DRILL, "Value": f"{manifest.dataset}@{manifest.snapshot_id}"}]
            with _errors(f"restoring drill {self.target} {name} from {record['arn']}"):
                if self.cluster:
                    client.restore_db_cluster_from_snapshot(
                        DBClusterIdentifier=name, SnapshotIdentifier=record["identifier"],
                        Engine=manifest.source.get("engine"), Tags=tags)
                else:
                    client.restore_db_instance_from_db_snapshot(
                        DBInstanceIdentifier=name, DBSnapshotIdentifier=record["identifier"],
                        PubliclyAccessible=False, Tags=tags)
            created = True
            deadline = time.monotonic() + timeout
            while True:
                status = self._status(client, name)
                if status == "available":
                    break
                if status in _FAILED or status in ("inaccessible-encryption-credentials", "storage-full"):
                    problems.append(f"drill {self.target} {name} is {status}")
                    break
                if time.monotonic() + poll_interval > deadline:
                    problems.append(f"drill {self.target} {name} not available after {timeout:.0f}s "
                                    f"(status {status})")
                    break
                sleep(poll_interval)
            if status == "available" and on_available is not None:
                on_available(name)
        except Exception as exc:  # noqa: BLE001 - every problem goes into the report
            problems.append(f"drill failed: {exc}")
        finally:
            if created:
                try:
                    with _errors(f"deleting drill {self.target} {name}"):
                        if self.cluster:
                            client.delete_db_cluster(DBClusterIdentifier=name, SkipFinalSnapshot=True)
                        else:
                            client.delete_db_instance(DBInstanceIdentifier=name, SkipFinalSnapshot=True,
                                                      DeleteAutomatedBackups=True)
                    log.info("drill: deleted temporary %s %s", self.target, name)
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"could not delete the drill {self.target} {name}: {exc} — "
                                    "delete it by hand")
        return {"ok": not problems, "restored": name, "target": self.target, "from": record["arn"],
                "status": status, "deleted": created, "seconds": round(time.monotonic() - started, 3),
                "problems": problems}

    def _status(self, client: Any, name: str) -> str:
        with _errors(f"reading drill {self.target} {name}"):
            if self.cluster:
                return str(client.describe_db_clusters(DBClusterIdentifier=name)["DBClusters"][0]["Status"])
            return str(client.describe_db_instances(
                DBInstanceIdentifier=name)["DBInstances"][0]["DBInstanceStatus"])
