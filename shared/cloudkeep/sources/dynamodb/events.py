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


LOCAL_REGION = "ddblocal"  # the region DynamoDB Local puts in its ARNs (whatever the client's)


def stream_region_matches(arn: str, region: str) -> bool:
    """Whether a stream or table ARN is in ``region`` (a dataset's): a table of the same name
    in another region is another table, whose changes must not enter this dataset's log.
    DynamoDB Local's ARNs name no real region and match any."""
    parts = arn.split(":", 5)
    return len(parts) == 6 and parts[3] in (region, LOCAL_REGION)
