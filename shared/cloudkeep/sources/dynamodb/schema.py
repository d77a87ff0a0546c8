"""A DynamoDB table's schema as a manifest records it (``source``), and back to CreateTable."""

from __future__ import annotations

from typing import Any

_INDEX_FIELDS = ("IndexName", "KeySchema", "Projection")


def _throughput(value: dict[str, Any] | None) -> dict[str, int]:
    value = value or {}
    return {"ReadCapacityUnits": int(value.get("ReadCapacityUnits") or 1),
            "WriteCapacityUnits": int(value.get("WriteCapacityUnits") or 1)}


def _indexes(indexes: list[dict[str, Any]], throughput: dict[str, Any] | None = None,
             *, provisioned: bool = False) -> list[dict[str, Any]]:
    """Indexes reduced to what CreateTable takes; with ``provisioned``, each with its own
    ProvisionedThroughput (else ``throughput``)."""
    out = []
    for index in indexes:
        entry = {k: index[k] for k in _INDEX_FIELDS}
        if provisioned:
            entry["ProvisionedThroughput"] = index.get("ProvisionedThroughput", throughput)
        out.append(entry)
    return out


def schema_of(table: dict[str, Any]) -> dict[str, Any]:
    """What a manifest records of a table (DescribeTable's ``Table``): enough to recreate it."""
    billing = (table.get("BillingModeSummary") or {}).get("BillingMode", "PROVISIONED")
    out: dict[str, Any] = {
        "table": table["TableName"],
        "table_arn": table.get("TableArn"),
        "key_schema": table["KeySchema"],
        "attribute_definitions": table["AttributeDefinitions"],
        "billing_mode": billing,
        "item_count_estimate": table.get("ItemCount"),
        "table_size_bytes": table.get("TableSizeBytes"),
    }
    provisioned = billing == "PROVISIONED"
    if provisioned:
        out["provisioned_throughput"] = _throughput(table.get("ProvisionedThroughput"))
    gsis = [{k: gsi[k] for k in _INDEX_FIELDS}
            | ({"ProvisionedThroughput": _throughput(gsi.get("ProvisionedThroughput"))} if provisioned else {})
            for gsi in table.get("GlobalSecondaryIndexes", [])]
    if gsis:
        out["global_secondary_indexes"] = gsis
    lsis = _indexes(table.get("LocalSecondaryIndexes", []))
    if lsis:
        out["local_secondary_indexes"] = lsis
    table_class = (table.get("TableClassSummary") or {}).get("TableClass")
    if table_class:
        out["table_class"] = table_class
    return out


def create_params(target: str, recorded: dict[str, Any]) -> dict[str, Any]:
    """CreateTable's parameters for a table named ``target`` with the ``recorded`` schema."""
    billing = recorded.get("billing_mode", "PAY_PER_REQUEST")
    params: dict[str, Any] = {
        "TableName": target,
        "KeySchema": recorded["key_schema"],
        "AttributeDefinitions": recorded["attribute_definitions"],
        "BillingMode": billing,
    }
    throughput = recorded.get("provisioned_throughput")
    if billing == "PROVISIONED":
        params["ProvisionedThroughput"] = throughput
    gsis = _indexes(recorded.get("global_secondary_indexes", []), throughput,
                    provisioned=billing == "PROVISIONED")
    if gsis:
        params["GlobalSecondaryIndexes"] = gsis
    lsis = _indexes(recorded.get("local_secondary_indexes", []))
    if lsis:
        params["LocalSecondaryIndexes"] = lsis
    if recorded.get("table_class"):
        params["TableClass"] = recorded["table_class"]
    return params


def key_signature(schema: dict[str, Any]) -> str:
    """``name TYPE HASH, name TYPE RANGE`` of a recorded schema (to compare two tables' keys)."""
    types = {a["AttributeName"]: a["AttributeType"] for a in schema["attribute_definitions"]}
    keys = sorted(schema["key_schema"], key=lambda k: k["KeyType"])  # HASH before RANGE
    return ", ".join(f"{k['AttributeName']} {types.get(k['AttributeName'], '?')} {k['KeyType']}" for k in keys)
