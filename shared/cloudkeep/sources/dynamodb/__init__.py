"""DynamoDB source: parallel segmented Scan out, parallel BatchWriteItem back in; native exports
and on-demand backups (``native.py``). The adapter is :class:`DynamoDBSource` (``source.py``)."""

from __future__ import annotations

from .codec import decode_line, encode_item, make_client
from .native import backup_name
from .restore import DynamoDBWriter
from .source import DynamoDBSource

__all__ = ["DynamoDBSource", "DynamoDBWriter", "backup_name", "decode_line", "encode_item", "make_client"]
