"""Where a DynamoDB stream's events come from (event-driven capture, issue #21)."""

from __future__ import annotations


def stream_origin(arn: str) -> str | None:
    """``dynamodb:<table>`` (:meth:`DynamoDBSourceSpec.event_origin`) of a stream or table ARN
    (``arn:aws:dynamodb:<region>:<account>:table/<name>/stream/<label>``); None for another ARN.
    The region is left out: an event source mapping reads streams of its own region."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "dynamodb" or not parts[5].startswith("table/"):
        return None
    table = parts[5][len("table/"):].split("/", 1)[0]
    return f"dynamodb:{table}" if table else None
