"""An S3 bucket's settings: read at backup time into the manifest (``source["settings"]``),
applied to a restored bucket in order, read back for a drill's comparison.

Recorded (each a JSON value, or ``"unreadable: <reason>"`` when the backup identity may not read
it — the backup goes on): ``versioning`` (``Enabled``, ``Suspended`` or ``Disabled``),
``object_lock`` (GetObjectLockConfiguration's ``ObjectLockConfiguration`` or null),
``encryption`` (the default encryption rules or null), ``cors`` (CORS rules or null), ``tags``
(``{key: value}``), ``lifecycle`` (lifecycle rules or null).

They are bucket-wide: a restore applies them only to a target that is a whole bucket, in that
order (lifecycle last, once the objects are in). Restoring into ``BUCKET/PREFIX`` lists each as
not applicable there and leaves the bucket's own settings alone (a drill restores into a prefix of
the source bucket: its settings are never touched).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from ...errors import CloudkeepError
from ...restore_settings import NOT_HERE, UNREADABLE, unreadable

log = logging.getLogger(__name__)

ORDER = ("versioning", "object_lock", "encryption", "cors", "tags", "lifecycle")
DATA_SETTINGS = frozenset({"versioning", "object_lock", "encryption", "lifecycle"})
_ABSENT = {
    "lifecycle": "NoSuchLifecycleConfiguration",
    "encryption": "ServerSideEncryptionConfigurationNotFoundError",
    "tags": "NoSuchTagSet",
    "cors": "NoSuchCORSConfiguration",
    "object_lock": "ObjectLockConfigurationNotFoundError",
}


def _reason(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        return f"{error.get('Code', '')}: {error.get('Message', '')}".strip(": ")[:300]
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _read_one(client: Any, bucket: str, name: str) -> Any:
    """One setting of ``bucket`` in recorded form (None: not configured)."""
    from botocore.exceptions import ClientError

    calls: dict[str, Callable[[], Any]] = {
        "versioning": lambda: client.get_bucket_versioning(Bucket=bucket).get("Status") or "Disabled",
        "object_lock": lambda: client.get_object_lock_configuration(Bucket=bucket).get(
            "ObjectLockConfiguration"),
        "encryption": lambda: client.get_bucket_encryption(Bucket=bucket)[
            "ServerSideEncryptionConfiguration"].get("Rules"),
        "cors": lambda: client.get_bucket_cors(Bucket=bucket).get("CORSRules"),
        "tags": lambda: dict(sorted((t["Key"], t["Value"]) for t in client.get_bucket_tagging(
            Bucket=bucket).get("TagSet", []))),
        "lifecycle": lambda: client.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules"),
    }
    try:
        return calls[name]()
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == _ABSENT.get(name):
            return {} if name == "tags" else None
        raise


def capture(client: Any, bucket: str) -> dict[str, Any]:
    """Every bucket setting in recorded form; what cannot be read is ``unreadable: <reason>``."""
    from botocore.exceptions import BotoCoreError, ClientError

    out: dict[str, Any] = {}
    for name in ORDER:
        try:
            out[name] = _read_one(client, bucket, name)
        except (ClientError, BotoCoreError) as exc:
            out[name] = unreadable(_reason(exc))
    as_text: dict[str, Any] = json.loads(json.dumps(out, default=str))  # dates as text
    return as_text


def creates_locked(recorded: Mapping[str, Any]) -> bool:
    """Whether a bucket made for this restore must be created with Object Lock enabled (the
    recorded settings, as selected by ``--settings``, have it on)."""
    settings = recorded.get("settings")
    lock = settings.get("object_lock") if isinstance(settings, dict) else None
    return isinstance(lock, dict) and lock.get("ObjectLockEnabled") == "Enabled"


def apply(client: Any, bucket: str, prefix: str, settings: Mapping[str, Any],
          source_bucket: str | None) -> list[tuple[str, str | None]]:
    """Apply ``settings`` to ``bucket`` in :data:`ORDER` (``(name, None)`` applied, else the
    reason); with a ``prefix``, or into the source bucket itself, nothing is applied and each is
    listed as not applicable there."""
    from botocore.exceptions import BotoCoreError, ClientError

    names = [n for n in ORDER if n in settings] + sorted(set(settings) - set(ORDER))
    why_not = not_applicable(bucket, prefix, source_bucket)
    if why_not:
        return [(n, why_not) for n in names]
    out: list[tuple[str, str | None]] = []
    for name in names:
        value = settings[name]
        try:
            why = _apply_one(client, bucket, name, value)
        except (ClientError, BotoCoreError, CloudkeepError) as exc:
            why = f"{name} could not be applied: {_reason(exc)}"
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a damaged record
            why = f"the manifest's record of {name} is not usable ({type(exc).__name__}: {exc})"
        if why is None:
            try:
                have = _read_one(client, bucket, name)
                if _canonical(have) != _canonical(value):
                    why = (f"the bucket reports {_canonical(have)[:200]} after the update, not "
                           f"{_canonical(value)[:200]}")
            except (ClientError, BotoCoreError):
                pass  # applied, not confirmed: the restore identity may not read it
        if why is not None:
            log.warning("restore into s3://%s: setting %s not applied: %s", bucket, name, why)
        out.append((name, why))
    return out


def not_applicable(bucket: str, prefix: str, source_bucket: str | None) -> str | None:
    """Why bucket settings are not applied to target ``bucket``/``prefix`` (None: they are)."""
    if prefix or bucket == source_bucket:
        where = (f"the target is the prefix {prefix!r} of bucket {bucket!r}" if prefix
                 else f"the target is the source bucket {bucket!r}")
        return f"{NOT_HERE}{where}; bucket settings would change the whole bucket"
    return None


def _apply_one(client: Any, bucket: str, name: str, value: Any) -> str | None:
    if name == "versioning":
        if value in ("Enabled", "Suspended"):
            client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": value})
        elif _read_one(client, bucket, name) != "Disabled":
            return "versioning cannot be switched off once on (the target has it on)"
    elif name == "object_lock":
        if value:
            client.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration=value)
    elif name == "encryption":
        if value:
            client.put_bucket_encryption(Bucket=bucket,
                                         ServerSideEncryptionConfiguration={"Rules": value})
    elif name == "cors":
        if value:
            client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": value})
        else:
            client.delete_bucket_cors(Bucket=bucket)
    elif name == "tags":
        tags = [{"Key": k, "Value": v} for k, v in sorted(value.items()) if not k.startswith("aws:")]
        if tags:
            client.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags})
    elif name == "lifecycle":
        if value:
            client.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration={"Rules": value})
    else:
        return "this version of cloudkeep does not know how to apply it"
    return None


def read(client: Any, bucket: str) -> dict[str, Any]:
    """The live settings of ``bucket``, in recorded form."""
    return capture(client, bucket)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


__all__ = ["DATA_SETTINGS", "ORDER", "UNREADABLE", "apply", "capture", "creates_locked", "read"]
