"""Varied sample DynamoDB items, for the demo, the tests and the bench (deterministic by seed)."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

ORDERS_TABLE_SCHEMA: dict[str, Any] = {
    "KeySchema": [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ],
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
        {"AttributeName": "status", "AttributeType": "S"},
    ],
    "BillingMode": "PAY_PER_REQUEST",
    "GlobalSecondaryIndexes": [
        {
            "IndexName": "by_status",
            "KeySchema": [
                {"AttributeName": "status", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }
    ],
}

_WORDS = ["ámbar", "Zürich", "東京", "café", "naïve", "señor", "🚀", "plain", "order", "κόσμε"]


def order_item(i: int, rng: random.Random) -> dict[str, Any]:
    """A varied item in boto3 *resource* form (Decimal numbers, bytes, sets)."""
    item: dict[str, Any] = {
        "pk": f"customer#{i % 97:03d}",
        "sk": f"order#{i:08d}",
        "status": rng.choice(["new", "paid", "shipped", "returned"]),
        "total": Decimal(f"{rng.randint(0, 10**6)}.{rng.randint(0, 99):02d}"),
        "note": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(0, 6))),
        "paid": rng.random() < 0.5,
        "lines": [
            {"sku": f"sku-{rng.randint(1, 500)}", "qty": rng.randint(1, 9), "price": Decimal("19.99")}
            for _ in range(rng.randint(0, 3))
        ],
    }
    if i % 3 == 0:
        item["tags"] = {rng.choice(_WORDS) for _ in range(rng.randint(1, 4))}
    if i % 5 == 0:
        item["scores"] = {Decimal(rng.randint(-1000, 1000)) for _ in range(3)}
    if i % 7 == 0:
        item["blob"] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))) + b"\x00"
    if i % 11 == 0:
        item["coupon"] = None
    if i % 13 == 0:
        item["big"] = Decimal("9" * 38)
    return item


def bench_item(i: int, rng: random.Random) -> dict[str, Any]:
    """An item of about 400 bytes of JSON."""
    return {
        "pk": f"user#{i:08d}",
        "sk": "profile",
        "name": f"user {i} " + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(20)),
        "email": f"user{i}@example.com",
        "age": rng.randint(18, 90),
        "balance": Decimal(f"{rng.randint(0, 10**7)}.{rng.randint(0, 99):02d}"),
        "active": rng.random() < 0.8,
        "bio": " ".join(rng.choice(_WORDS) for _ in range(12)),
        "tags": {f"t{rng.randint(0, 50)}" for _ in range(3)},
        "address": {"street": f"{rng.randint(1, 999)} Main St", "city": rng.choice(_WORDS), "zip": f"{rng.randint(10000, 99999)}"},
    }


def seed(table: Any, count: int, make: Any = order_item, seed_value: int = 7) -> None:
    rng = random.Random(seed_value)
    with table.batch_writer() as batch:
        for i in range(count):
            batch.put_item(Item=make(i, rng))
