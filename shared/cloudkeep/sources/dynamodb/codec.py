"""DynamoDB items ⇄ snapshot lines, and Scan pages read without botocore's parsing.

Items are written as DynamoDB JSON lines ``{"Item": {...}}`` — the same lines as DynamoDB's own
export to S3 — with numbers kept as strings, binary as base64, and set members sorted so that a
line is canonical (DynamoDB does not keep set order).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

from ... import extras
from ...clouds.aws import Access, botocore_session, client_config


def make_client(region: str, pool: int = 32, access: Access | None = None) -> Any:
    """A DynamoDB client whose Scan responses skip botocore's parsing (see ``_raw_scan``), with
    the credentials of ``access`` when given (another account: ``cloudkeep.place``).

    Built from a botocore session: boto3 adds nothing here but import time."""
    with extras.translated():  # not installed: one line naming the extra (a CloudkeepError)
        import botocore.session

    # timeouts and the retry budget (AWS_MAX_ATTEMPTS / AWS_RETRY_MODE override): clouds/aws.py
    config = client_config(max_pool_connections=pool)
    session = (botocore_session(access, region) if access is not None and not access.is_default()
               else botocore.session.get_session())
    client = session.create_client("dynamodb", region_name=region, config=config)
    client.meta.events.register("before-parse.dynamodb.Scan", _raw_scan)
    return client


def _raw_scan(response_dict: dict[str, Any], customized_response_dict: dict[str, Any],
              **_: Any) -> None:
    """Hand Scan's JSON body over as is instead of letting botocore walk it item by item.

    botocore's parsing is most of a backup's CPU time (about 90 µs per item, 5x the JSON
    decoding). The wire form is already what a snapshot stores — typed attribute values with
    numbers as strings and binary as base64 — so items are taken from it unchanged, and one at a
    time (:class:`RawPage`): a page decoded whole takes about 13 times its 1 MB in objects, per
    segment read at once. Errors keep the normal path.
    """
    if response_dict.get("status_code") != 200:
        return
    text = response_dict["body"].decode("utf-8")
    at = text.find(_ITEMS_KEY)
    if at < 0:  # e.g. Select=COUNT, or another spacing: decode it whole
        body = json.loads(text)
        for key in ("Items", "Count", "ScannedCount", "LastEvaluatedKey"):
            if key in body:
                customized_response_dict[key] = body[key]
    else:
        # The page travels in a holder the reader empties: botocore's per-request objects form
        # reference cycles that live until a full garbage collection, with whatever they reach.
        customized_response_dict["_raw_page"] = [RawPage(text, at + len(_ITEMS_KEY) - 1)]
    response_dict["body"] = b"{}"


_ITEMS_KEY = '"Items":['  # a key: inside a JSON string the quotes would be escaped
_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _skip(text: str, pos: int) -> int:
    """``pos`` moved past JSON whitespace."""
    found = _WS.match(text, pos)
    return found.end() if found else pos


class RawPage:
    """A Scan response body whose items are decoded one at a time (the rest once they are)."""

    def __init__(self, text: str, bracket: int) -> None:
        self.text = text
        self.bracket = bracket  # index of the Items array's "["
        self.end: int | None = None  # index after its "]", once read

    def items(self) -> Iterator[dict[str, Any]]:
        text = self.text
        pos = _skip(text, self.bracket + 1)
        if text[pos] == "]":
            self.end = pos + 1
            return
        while True:
            item, pos = _DECODER.raw_decode(text, pos)
            yield item
            pos = _skip(text, pos)
            char = text[pos]
            pos = _skip(text, pos + 1)
            if char == "]":
                self.end = pos
                return
            if char != ",":
                raise ValueError(f"unexpected {char!r} in a Scan response at {pos}")

    def rest(self) -> dict[str, Any]:
        """Everything but the items (Count, LastEvaluatedKey, ...), after ``items()`` ran out."""
        if self.end is None:
            for _ in self.items():
                pass
        assert self.end is not None
        rest: dict[str, Any] = json.loads(self.text[: self.bracket] + "[]" + self.text[self.end :])
        return rest


def key_to_wire(key: dict[str, Any]) -> dict[str, Any]:
    """A key as JSON: binary parts as base64 text (as the raw wire form already has them)."""
    return {k: ({"B": b64(v["B"])} if "B" in v and not isinstance(v["B"], str) else v)
            for k, v in key.items()}


def key_from_wire(key: dict[str, Any]) -> dict[str, Any]:
    """A key for the client's ExclusiveStartKey: binary parts back to bytes."""
    return {k: ({"B": base64.b64decode(v["B"])} if "B" in v else v) for k, v in key.items()}


def b64(value: object) -> str:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot encode {type(value).__name__}")


_NESTED = frozenset(("M", "L", "SS", "NS", "BS"))


def _binary_key(value: bytes | str) -> bytes:
    """Binary set members sort by their bytes, whether parsed (bytes) or raw (base64 text)."""
    return base64.b64decode(value) if isinstance(value, str) else value


def _canon(value: dict[str, Any]) -> dict[str, Any]:
    kind = next(iter(value))
    if kind not in _NESTED:
        return value
    inner = value[kind]
    if kind == "M":
        return {"M": {k: _canon(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_canon(v) for v in inner]}
    if kind == "BS":
        return {kind: sorted(inner, key=_binary_key)}
    return {kind: sorted(inner)}


def encode_item(item: dict[str, Any]) -> bytes:
    """One canonical line for an item as the low-level client returns it."""
    canon = {k: (_canon(v) if next(iter(v)) in _NESTED else v) for k, v in item.items()}
    return json.dumps(
        {"Item": canon}, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=b64
    ).encode("utf-8")


def _decode_value(value: dict[str, Any]) -> dict[str, Any]:
    kind = next(iter(value))
    inner = value[kind]
    if kind == "B":
        return {"B": base64.b64decode(inner)}
    if kind == "BS":
        return {"BS": [base64.b64decode(b) for b in inner]}
    if kind == "M":
        return {"M": {k: _decode_value(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_decode_value(v) for v in inner]}
    return value


def decode_line(line: bytes) -> dict[str, Any]:
    """An item for the low-level client from one snapshot line (binary back to bytes)."""
    doc = json.loads(line)
    item = doc["Item"]
    if not isinstance(item, dict):
        raise ValueError("'Item' is not an object")
    return {k: _decode_value(v) for k, v in item.items()}


def key_id(key: dict[str, Any]) -> str:
    """A hashable form of a key (parsed or raw attribute values alike)."""
    return json.dumps({k: {t: (b64(v) if isinstance(v, (bytes, bytearray)) else v)
                           for t, v in value.items()} for k, value in key.items()}, sort_keys=True)
