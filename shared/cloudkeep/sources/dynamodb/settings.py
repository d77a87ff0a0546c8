"""A DynamoDB table's settings: read at backup time into the manifest (``source["settings"]``),
applied to a restored table in order, read back for a drill's comparison.

Recorded (each a JSON value, or ``"unreadable: <reason>"`` when the backup identity may not read
it — the backup goes on):

- ``sse``: ``"AWS owned"`` or ``{"SSEType": "KMS", "KMSMasterKeyArn": ...}`` (the key's ARN or
  alias as DescribeTable reports it)
- ``on_demand_throughput``: ``{"table": {...}, "indexes": {name: {...}}}`` (OnDemandThroughput of
  the table and its GSIs; ``null`` when not set)
- ``stream``: ``{"StreamEnabled": bool, "StreamViewType": ...}``
- ``ttl``: ``{"enabled": bool, "attribute": name or null}``
- ``pitr``: ``{"enabled": bool}`` (and ``recovery_period_days`` when reported)
- ``contributor_insights``: ``{"table": "ENABLED"|"DISABLED", "indexes": {name: ...}}``
- ``tags``: ``{key: value}``
- ``resource_policy``: the policy document (JSON text) or ``null``
- ``auto_scaling``: ``{"targets": [...], "policies": [...]}`` of Application Auto Scaling, on the
  table and its GSIs, with resources named relative to the table (``table``, ``index/NAME``)
- ``deletion_protection``: bool

A restore applies them in that order after the items are written (deletion protection last, so a
failed restore can still be dropped), waiting after each table update until the table and every
index are ACTIVE. DynamoDB Local lacks PITR, contributor insights, resource policies and Application
Auto Scaling: those are listed as not applied, with the service's answer.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from ...clouds.aws import client
from ...errors import CloudkeepError
from ...restore_settings import UNREADABLE, unreadable

log = logging.getLogger(__name__)

ORDER = ("sse", "on_demand_throughput", "stream", "ttl", "pitr", "contributor_insights", "tags",
         "resource_policy", "auto_scaling", "deletion_protection")
DATA_SETTINGS = frozenset({"sse", "ttl"})
AWS_OWNED = "AWS owned"
#: The highest capacity an auto-scaling target is registered with (DynamoDB's default per-table
#: quota of read or write capacity units): above it a recorded target is refused, not applied.
MAX_CAPACITY = 40_000
ACTIVE_TIMEOUT = 3600.0  # seconds a restored table may take to become ACTIVE after an update


def _reason(exc: BaseException) -> str:
    """A one-line reason from a botocore or cloudkeep error (its code and message)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        code, message = error.get("Code", ""), str(error.get("Message", ""))
        if "<html" in message.lower() or "<!doctype" in message.lower():
            message = "the service answered with an error page (not supported here?)"
        return f"{code}: {message}".strip(": ")[:300]
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _guard(read: Callable[[], Any]) -> Any:
    """``read()``, or the ``unreadable: <reason>`` text when the service refuses or lacks it."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return read()
    except (ClientError, BotoCoreError, CloudkeepError) as exc:
        return unreadable(_reason(exc))


def autoscaling_client(region: str) -> Any | None:
    """An Application Auto Scaling client next to ``dynamodb``'s endpoint, or None when DynamoDB
    is reached at an endpoint of its own (DynamoDB Local) and nothing says where Application Auto
    Scaling is for it (``AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING`` or ``AWS_ENDPOINT_URL``)."""
    if os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") and not (
            os.environ.get("AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING")
            or os.environ.get("AWS_ENDPOINT_URL")):
        return None
    return client("application-autoscaling", region)


# ------------------------------------------------------------------------------------- reading


def capture(dynamodb: Any, table: Mapping[str, Any], region: str) -> dict[str, Any]:
    """Every setting of ``table`` (DescribeTable's ``Table``) in recorded form. Never raises for
    one setting: what cannot be read is recorded as ``unreadable: <reason>``."""
    name, arn = str(table["TableName"]), str(table.get("TableArn") or "")
    gsis = [str(g["IndexName"]) for g in table.get("GlobalSecondaryIndexes", [])]
    out: dict[str, Any] = {
        "sse": _sse_of(table),
        "on_demand_throughput": _on_demand_of(table),
        "stream": _stream_of(table),
        "ttl": _guard(lambda: _ttl(dynamodb, name)),
        "pitr": _guard(lambda: _pitr(dynamodb, name)),
        "contributor_insights": _guard(lambda: _insights(dynamodb, name, gsis)),
        "tags": _guard(lambda: _tags(dynamodb, arn)),
        "resource_policy": _guard(lambda: _policy(dynamodb, arn)),
        "auto_scaling": _guard(lambda: _scaling(autoscaling_client(region), name, gsis)),
        "deletion_protection": bool(table.get("DeletionProtectionEnabled", False)),
    }
    return out


def _sse_of(table: Mapping[str, Any]) -> Any:
    sse = table.get("SSEDescription") or {}
    if sse.get("Status") in ("ENABLED", "ENABLING", "UPDATING") and sse.get("SSEType") == "KMS":
        return {"SSEType": "KMS", "KMSMasterKeyArn": sse.get("KMSMasterKeyArn")}
    return AWS_OWNED


def _on_demand_of(table: Mapping[str, Any]) -> Any:
    indexes = {str(g["IndexName"]): g["OnDemandThroughput"]
               for g in table.get("GlobalSecondaryIndexes", []) if g.get("OnDemandThroughput")}
    if not table.get("OnDemandThroughput") and not indexes:
        return None
    return {"table": table.get("OnDemandThroughput"), "indexes": indexes}


def _stream_of(table: Mapping[str, Any]) -> dict[str, Any]:
    spec = table.get("StreamSpecification") or {}
    if not spec.get("StreamEnabled"):
        return {"StreamEnabled": False}
    return {"StreamEnabled": True, "StreamViewType": spec.get("StreamViewType")}


def _ttl(dynamodb: Any, name: str) -> dict[str, Any]:
    desc = dynamodb.describe_time_to_live(TableName=name).get("TimeToLiveDescription") or {}
    enabled = desc.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
    return {"enabled": enabled, "attribute": desc.get("AttributeName") if enabled else None}


def _pitr(dynamodb: Any, name: str) -> dict[str, Any]:
    desc = dynamodb.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    pitr = desc.get("PointInTimeRecoveryDescription") or {}
    out: dict[str, Any] = {"enabled": pitr.get("PointInTimeRecoveryStatus") == "ENABLED"}
    if out["enabled"] and pitr.get("RecoveryPeriodInDays"):
        out["recovery_period_days"] = int(pitr["RecoveryPeriodInDays"])
    return out


def _insights(dynamodb: Any, name: str, gsis: list[str]) -> dict[str, Any]:
    def status(**index: str) -> str:
        desc = dynamodb.describe_contributor_insights(TableName=name, **index)
        return "ENABLED" if desc.get("ContributorInsightsStatus") in ("ENABLED", "ENABLING") else "DISABLED"

    return {"table": status(), "indexes": {g: status(IndexName=g) for g in gsis}}


def _tags(dynamodb: Any, arn: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    params: dict[str, Any] = {"ResourceArn": arn}
    while True:
        page = dynamodb.list_tags_of_resource(**params)
        tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
        if not page.get("NextToken"):
            return dict(sorted(tags.items()))
        params["NextToken"] = page["NextToken"]


def _policy(dynamodb: Any, arn: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        return str(dynamodb.get_resource_policy(ResourceArn=arn)["Policy"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "PolicyNotFoundException":
            return None
        raise


def _relative(resource_id: str, name: str) -> str:
    """``table/NAME`` → ``table``; ``table/NAME/index/G`` → ``index/G``."""
    head = f"table/{name}"
    return "table" if resource_id == head else resource_id[len(head) + 1:]


def _scaling(aas: Any, name: str, gsis: list[str]) -> dict[str, Any]:
    if aas is None:
        raise CloudkeepError("Application Auto Scaling has no endpoint next to this DynamoDB "
                             "endpoint (set AWS_ENDPOINT_URL_APPLICATION_AUTO_SCALING)")
    ids = [f"table/{name}"] + [f"table/{name}/index/{g}" for g in gsis]
    targets: list[dict[str, Any]] = []
    policies: list[dict[str, Any]] = []
    for resource in ids:
        for page in aas.get_paginator("describe_scalable_targets").paginate(
                ServiceNamespace="dynamodb", ResourceIds=[resource]):
            for t in page.get("ScalableTargets", []):
                if t.get("ResourceId") != resource:  # only this resource's (moto matches loosely)
                    continue
                targets.append({"resource": _relative(t["ResourceId"], name),
                                "dimension": t["ScalableDimension"],
                                "min": int(t["MinCapacity"]), "max": int(t["MaxCapacity"])})
        for page in aas.get_paginator("describe_scaling_policies").paginate(
                ServiceNamespace="dynamodb", ResourceId=resource):
            for p in page.get("ScalingPolicies", []):
                if p.get("ResourceId") != resource:
                    continue
                entry: dict[str, Any] = {"name": p["PolicyName"],
                                         "resource": _relative(p["ResourceId"], name),
                                         "dimension": p["ScalableDimension"], "type": p["PolicyType"]}
                for key in ("TargetTrackingScalingPolicyConfiguration",
                            "StepScalingPolicyConfiguration"):
                    if p.get(key):
                        entry[key] = p[key]
                policies.append(entry)
    def order(entry: dict[str, Any]) -> tuple[str, str, str]:
        return str(entry["resource"]), str(entry["dimension"]), str(entry.get("name", ""))

    return {"targets": sorted(targets, key=order), "policies": sorted(policies, key=order)}


def read(dynamodb: Any, target: str, region: str, recorded: Mapping[str, Any]) -> dict[str, Any]:
    """The live settings of table ``target`` in recorded form; the resource policy's mentions of
    the target's ARN read as the recorded source table's, so the two compare."""
    table = dynamodb.describe_table(TableName=target)["Table"]
    out = capture(dynamodb, table, region)
    policy = out.get("resource_policy")
    source_arn = str(recorded.get("table_arn") or "")
    if isinstance(policy, str) and source_arn and table.get("TableArn"):
        out["resource_policy"] = policy.replace(str(table["TableArn"]), source_arn)
    return out


# ------------------------------------------------------------------------------------ applying


def creation_settings(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """The CreateTable parameters of the recorded settings it takes itself (KMS encryption,
    on-demand throughput limits of an on-demand table); the others are applied after the data."""
    settings = recorded.get("settings")
    if not isinstance(settings, dict):
        return {}
    out: dict[str, Any] = {}
    sse = settings.get("sse")
    if isinstance(sse, dict) and sse.get("SSEType") == "KMS":
        out["SSESpecification"] = {"Enabled": True, "SSEType": "KMS"} | (
            {"KMSMasterKeyId": sse["KMSMasterKeyArn"]} if sse.get("KMSMasterKeyArn") else {})
    on_demand = settings.get("on_demand_throughput")
    if (recorded.get("billing_mode") == "PAY_PER_REQUEST" and isinstance(on_demand, dict)
            and isinstance(on_demand.get("table"), dict)):
        out["OnDemandThroughput"] = on_demand["table"]
    return out


def wait_active(dynamodb: Any, target: str, *, timeout: float = ACTIVE_TIMEOUT) -> None:
    """Return once table ``target`` and all its global secondary indexes are ACTIVE (polling
    DescribeTable with a growing delay up to 5 s); CloudkeepError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        table = dynamodb.describe_table(TableName=target)["Table"]
        states = [table.get("TableStatus")] + [
            g.get("IndexStatus") for g in table.get("GlobalSecondaryIndexes", [])]
        if all(s == "ACTIVE" for s in states):
            return
        if time.monotonic() > deadline:
            raise CloudkeepError(f"table {target} is still not ACTIVE ({states}) after "
                                 f"{timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def apply(dynamodb: Any, target: str, region: str, settings: Mapping[str, Any],
          recorded: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """Apply ``settings`` to table ``target`` in :data:`ORDER`; ``(name, None)`` for each applied
    (or already so), ``(name, reason)`` for each that could not be. Waits for ACTIVE after each
    table update."""
    from botocore.exceptions import BotoCoreError, ClientError

    table = dynamodb.describe_table(TableName=target)["Table"]
    arn = str(table["TableArn"])
    gsis = [str(g["IndexName"]) for g in table.get("GlobalSecondaryIndexes", [])]
    steps: dict[str, Callable[[Any], str | None]] = {
        "sse": lambda v: _apply_sse(dynamodb, target, table, v),
        "on_demand_throughput": lambda v: _apply_on_demand(dynamodb, target, table, v),
        "stream": lambda v: _apply_stream(dynamodb, target, table, v),
        "ttl": lambda v: _apply_ttl(dynamodb, target, v, _key_attributes(table)),
        "pitr": lambda v: _apply_pitr(dynamodb, target, v),
        "contributor_insights": lambda v: _apply_insights(dynamodb, target, gsis, v),
        "tags": lambda v: _apply_tags(dynamodb, arn, v),
        "resource_policy": lambda v: _apply_policy(dynamodb, arn, recorded, v),
        "auto_scaling": lambda v: _apply_scaling(autoscaling_client(region), target, gsis, v),
        "deletion_protection": lambda v: _apply_protection(dynamodb, target, table, v),
    }
    out: list[tuple[str, str | None]] = []
    for name in ORDER + tuple(sorted(set(settings) - set(ORDER))):
        if name not in settings:
            continue
        step = steps.get(name)
        if step is None:
            out.append((name, "this version of cloudkeep does not know how to apply it"))
            continue
        try:
            why = step(settings[name])
            if why is None:
                wait_active(dynamodb, target)
        except (ClientError, BotoCoreError, CloudkeepError) as exc:
            why = f"{name} could not be applied: {_reason(exc)}"
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a damaged record
            why = f"the manifest's record of {name} is not usable ({type(exc).__name__}: {exc})"
        out.append((name, why))
    # what the target reports now: a setting the service accepted but did not keep is not applied
    live = _guard(lambda: read(dynamodb, target, region, recorded))
    checked: list[tuple[str, str | None]] = []
    for name, why in out:
        have = live.get(name) if isinstance(live, dict) else None
        if why is None and have is not None and not _unreadable(have) and \
                _canonical(have) != _canonical(settings[name]):
            why = (f"the target reports {_canonical(have)[:200]} after the update, "
                   f"not {_canonical(settings[name])[:200]}")
        if why is not None:
            log.warning("restore into %s: setting %s not applied: %s", target, name, why)
        checked.append((name, why))
    return checked


def _unreadable(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(UNREADABLE)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _apply_sse(dynamodb: Any, target: str, table: Mapping[str, Any], value: Any) -> str | None:
    if _sse_of(table) == value:
        return None
    if value == AWS_OWNED:
        dynamodb.update_table(TableName=target, SSESpecification={"Enabled": False})
    else:
        spec: dict[str, Any] = {"Enabled": True, "SSEType": "KMS"}
        if value.get("KMSMasterKeyArn"):
            spec["KMSMasterKeyId"] = value["KMSMasterKeyArn"]
        dynamodb.update_table(TableName=target, SSESpecification=spec)
    return None


def _apply_on_demand(dynamodb: Any, target: str, table: Mapping[str, Any], value: Any) -> str | None:
    if value is None or _on_demand_of(table) == value:
        return None
    if value.get("table"):
        dynamodb.update_table(TableName=target, OnDemandThroughput=value["table"])
        wait_active(dynamodb, target)
    for index, limits in (value.get("indexes") or {}).items():
        dynamodb.update_table(TableName=target, GlobalSecondaryIndexUpdates=[
            {"Update": {"IndexName": index, "OnDemandThroughput": limits}}])
        wait_active(dynamodb, target)
    return None


def _apply_stream(dynamodb: Any, target: str, table: Mapping[str, Any], value: Any) -> str | None:
    have = _stream_of(table)
    if have == value:
        return None
    if have.get("StreamEnabled"):  # another view type: a stream is switched off, then on again
        dynamodb.update_table(TableName=target, StreamSpecification={"StreamEnabled": False})
        wait_active(dynamodb, target)
    if value.get("StreamEnabled"):
        dynamodb.update_table(TableName=target, StreamSpecification=dict(value))
    return None


def _key_attributes(table: Mapping[str, Any]) -> set[str]:
    """The attributes that key the table or any of its indexes."""
    schemas = [table.get("KeySchema") or []] + [
        i.get("KeySchema") or [] for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes")
        for i in table.get(kind) or []]
    return {str(k["AttributeName"]) for schema in schemas for k in schema}


def _apply_ttl(dynamodb: Any, target: str, value: Any, keys: set[str]) -> str | None:
    if value.get("enabled") and value.get("attribute") in keys:
        # a TTL on a key attribute would expire (delete) restored items by their key: never a
        # source's real setting worth the risk (a damaged or forged record)
        return (f"the recorded TTL attribute {str(value['attribute'])[:100]!r} is a key attribute "
                "of the restored table; a TTL on it could delete restored items, so it was not set")
    have = _ttl(dynamodb, target)
    if have == value:
        return None
    if have["enabled"]:
        dynamodb.update_time_to_live(TableName=target, TimeToLiveSpecification={
            "Enabled": False, "AttributeName": have["attribute"]})
    if value.get("enabled"):
        dynamodb.update_time_to_live(TableName=target, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": value["attribute"]})
    return None


def _apply_pitr(dynamodb: Any, target: str, value: Any) -> str | None:
    spec: dict[str, Any] = {"PointInTimeRecoveryEnabled": bool(value.get("enabled"))}
    if value.get("enabled") and value.get("recovery_period_days"):
        spec["RecoveryPeriodInDays"] = int(value["recovery_period_days"])
    dynamodb.update_continuous_backups(TableName=target, PointInTimeRecoverySpecification=spec)
    return None


def _apply_insights(dynamodb: Any, target: str, gsis: list[str], value: Any) -> str | None:
    def action(state: Any) -> str:
        return "ENABLE" if state == "ENABLED" else "DISABLE"

    dynamodb.update_contributor_insights(TableName=target,
                                         ContributorInsightsAction=action(value.get("table")))
    for index, state in (value.get("indexes") or {}).items():
        if index in gsis:
            dynamodb.update_contributor_insights(TableName=target, IndexName=index,
                                                 ContributorInsightsAction=action(state))
    return None


def _apply_tags(dynamodb: Any, arn: str, value: Any) -> str | None:
    tags = [{"Key": k, "Value": v} for k, v in sorted(value.items()) if not k.startswith("aws:")]
    for start in range(0, len(tags), 50):
        dynamodb.tag_resource(ResourceArn=arn, Tags=tags[start:start + 50])
    reserved = sorted(k for k in value if k.startswith("aws:"))
    if reserved:
        return f"tags {', '.join(reserved)} are AWS's own and cannot be set (the others were)"
    return None


def _apply_policy(dynamodb: Any, arn: str, recorded: Mapping[str, Any], value: Any) -> str | None:
    if value is None:
        return None
    policy = str(value)
    source_arn = str(recorded.get("table_arn") or "")
    if source_arn:
        policy = policy.replace(source_arn, arn)  # the policy now names the restored table
    json.loads(policy)  # a damaged recorded policy fails here, as not applied
    dynamodb.put_resource_policy(ResourceArn=arn, Policy=policy)
    return None


def _apply_scaling(aas: Any, target: str, gsis: list[str], value: Any) -> str | None:
    targets = value.get("targets") or []
    policies = value.get("policies") or []
    if not targets and not policies:
        return None
    for t in targets:  # a damaged or forged record must not scale a table to absurd capacity
        low, high = int(t["min"]), int(t["max"])
        if not 1 <= low <= high <= MAX_CAPACITY:
            return (f"the recorded auto-scaling capacities ({low}..{high} for {str(t['resource'])[:100]}) "
                    f"are outside 1..{MAX_CAPACITY}; nothing was registered")
    if aas is None:
        return ("Application Auto Scaling has no endpoint next to this DynamoDB endpoint; "
                "register the targets and policies by hand")
    missing = []

    def resource(rel: str) -> str | None:
        if rel == "table":
            return f"table/{target}"
        if rel.startswith("index/") and rel[len("index/"):] in gsis:
            return f"table/{target}/{rel}"
        missing.append(rel)
        return None

    for t in targets:
        rid = resource(str(t["resource"]))
        if rid:
            aas.register_scalable_target(ServiceNamespace="dynamodb", ResourceId=rid,
                                         ScalableDimension=t["dimension"],
                                         MinCapacity=int(t["min"]), MaxCapacity=int(t["max"]))
    for p in policies:
        rid = resource(str(p["resource"]))
        if rid:
            extra = {k: p[k] for k in ("TargetTrackingScalingPolicyConfiguration",
                                       "StepScalingPolicyConfiguration") if k in p}
            aas.put_scaling_policy(PolicyName=p["name"], ServiceNamespace="dynamodb",
                                   ResourceId=rid, ScalableDimension=p["dimension"],
                                   PolicyType=p["type"], **extra)
    if missing:
        return f"the restored table has no {', '.join(sorted(set(missing)))} to scale"
    return None


def _apply_protection(dynamodb: Any, target: str, table: Mapping[str, Any], value: Any) -> str | None:
    if bool(table.get("DeletionProtectionEnabled", False)) != bool(value):
        dynamodb.update_table(TableName=target, DeletionProtectionEnabled=bool(value))
    return None


def release(dynamodb: Any, target: str, region: str) -> None:
    """Undo what would keep a drill's scratch table or its traces: deletion protection off, its
    Application Auto Scaling targets deregistered (best effort: errors are logged)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        table = dynamodb.describe_table(TableName=target)["Table"]
        if table.get("DeletionProtectionEnabled"):
            dynamodb.update_table(TableName=target, DeletionProtectionEnabled=False)
            wait_active(dynamodb, target)
        aas = autoscaling_client(region)
        gsis = [str(g["IndexName"]) for g in table.get("GlobalSecondaryIndexes", [])]
        if aas is not None:
            for resource in [f"table/{target}"] + [f"table/{target}/index/{g}" for g in gsis]:
                found = aas.describe_scalable_targets(ServiceNamespace="dynamodb",
                                                      ResourceIds=[resource])
                for t in found.get("ScalableTargets", []):
                    if t.get("ResourceId") != resource:
                        continue
                    aas.deregister_scalable_target(ServiceNamespace="dynamodb", ResourceId=resource,
                                                   ScalableDimension=t["ScalableDimension"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            log.warning("releasing scratch table %s: %s", target, _reason(exc))
    except (BotoCoreError, CloudkeepError) as exc:
        log.warning("releasing scratch table %s: %s", target, _reason(exc))
