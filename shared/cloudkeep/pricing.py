"""Prices of storage: the table in the repository (``cloudkeep/prices.json``) and a policy's
overrides (``pricing:``, :class:`cloudkeep.storageclass.Pricing`).

``report`` turns bytes per storage class into a monthly cost with it; issue #25 (run cost)
reuses the same table and override key. Prices are per GB-month, with GB = 2^30 bytes (as the
clouds bill). A class the table does not know has no price: its cost is reported as unknown
(None), never guessed.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from .storageclass import Pricing

GB = 1 << 30


@cache
def table() -> dict[str, Any]:
    """The price table shipped with cloudkeep (read once)."""
    text = resources.files("cloudkeep").joinpath("prices.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def currency(overrides: Pricing | None = None) -> str:
    """The currency of the prices (a policy's override names its own)."""
    if overrides is not None and overrides.currency:
        return overrides.currency
    return str(table().get("currency", "USD"))


def storage_price(store_type: str, store_class: str, overrides: Pricing | None = None
                  ) -> float | None:
    """Price of one GB-month of ``store_class`` in a ``store_type`` store: the policy's
    override, else the table's, else None (unknown). When the override names a currency other
    than the table's, the table's prices are not in it: a price not overridden is then unknown
    (never mixed into a total in the wrong currency)."""
    if overrides is not None:
        given = overrides.storage_gb_month.get(store_type, {}).get(store_class)
        if given is not None:
            return float(given)
        if overrides.currency and overrides.currency != str(table().get("currency", "USD")):
            return None
    value = table().get("storage_gb_month", {}).get(store_type, {}).get(store_class)
    return None if value is None else float(value)


def summary_text(storage: dict[str, Any], human_bytes: Any) -> str:
    """One line of a report's ``storage`` entry: ``STANDARD 1.2 MiB, DEEP_ARCHIVE 3.0 GiB; about
    0.01 USD a month`` (``human_bytes`` formats sizes)."""
    cost = storage.get("monthly_cost")
    money = "unknown" if cost is None else f"{float(cost):.2f} {storage.get('currency', '')}".rstrip()
    classes = ", ".join(f"{c['class']} {human_bytes(c['bytes'])}" for c in storage.get("classes", []))
    return f"{classes or 'nothing stored'}; about {money} a month"


def monthly_storage(store_type: str, bytes_by_class: dict[str, int],
                    overrides: Pricing | None = None) -> dict[str, Any]:
    """``{"currency", "monthly_cost", "classes": [{"class", "bytes", "monthly_cost"}]}``: the
    cost of keeping these bytes a month; ``monthly_cost`` is None when a class has no price."""
    rows = []
    total: float | None = 0.0
    for name, size in sorted(bytes_by_class.items()):
        price = storage_price(store_type, name, overrides)
        cost = None if price is None else round(size / GB * price, 6)
        rows.append({"class": name, "bytes": size, "monthly_cost": cost})
        total = None if total is None or cost is None else total + cost
    return {"currency": currency(overrides),
            "monthly_cost": None if total is None else round(total, 6), "classes": rows}
