"""The floor for `make bench`: a bare parallel Scan of a table that discards every item.

Usage: bare_scan.py TABLE [SEGMENTS]  (endpoint, region and credentials come from the environment,
e.g. AWS_ENDPOINT_URL_DYNAMODB). Prints the number of items read.
"""

from __future__ import annotations

import os
import sys
import threading

import boto3
from botocore.config import Config


def main() -> int:
    table = sys.argv[1]
    total = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    client = boto3.client(
        "dynamodb",
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        config=Config(max_pool_connections=max(10, total)),
    )
    counts = [0] * total

    def scan(segment: int) -> None:
        params = {"TableName": table, "Segment": segment, "TotalSegments": total}
        while True:
            page = client.scan(**params)
            counts[segment] += len(page.get("Items", ()))
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            params["ExclusiveStartKey"] = last

    threads = [threading.Thread(target=scan, args=(s,)) for s in range(total)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(sum(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
