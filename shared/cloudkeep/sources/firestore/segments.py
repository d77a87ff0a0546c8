"""Firestore segments: the plan of a backup (root collections split into document-name ranges,
by a partition query or one keys-only pass), recorded for a later invocation, and the reading of
one range page by page with a cursor after every document."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from typing import Any

from ...capabilities import Description, pages_from_start
from ...errors import SourceError, SourceUnreachableError
from .codec import encode_document, name_order_key
from .errors import PartitionQueryUnavailable
from .reader import CALL_TIMEOUT, FirestoreReader

log = logging.getLogger(__name__)

PAGE_LINES = 500  # lines per page handed to the engine
PAGE_BYTES = 1024 * 1024
DOCS_PER_SEGMENT = 20_000  # above this, a root collection is split
MAX_SEGMENTS_PER_COLLECTION = 32


def _after_names(names: list[str]) -> Callable[[int], Any]:
    def after(index: int) -> dict[str, Any]:
        return {"after": names[index]}

    return after



class SegmentReader(FirestoreReader):
    """A backup's segments of one Firestore database (a base of
    :class:`~cloudkeep.sources.firestore.FirestoreSource`)."""

    def plan_segments(self, described: Description | dict[str, Any]) -> int:
        """One segment per root collection, and more for a large one (``segments`` in the
        policy, else one per ``DOCS_PER_SEGMENT`` documents, at most 32 per collection)."""
        if self._read_time is None:
            raise SourceError("internal error: plan_segments() before describe()")
        ranges: list[tuple[str, str | None, str | None]] = []
        for collection in self._collections_read:
            count = self._counts.get(collection)
            want = self.segments or (
                1 if not count else min(MAX_SEGMENTS_PER_COLLECTION, math.ceil(count / DOCS_PER_SEGMENT))
            )
            splits = self._split_points(collection, want, count) if want > 1 else []
            if want == 1:
                self.split_methods[collection] = "whole"
            bounds: list[str | None] = [None, *splits, None]
            ranges.extend((collection, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1))
            log.info("firestore %s: collection %s (%s documents) in %d segment(s) (%s)",
                     self.project, collection, "?" if count is None else count, len(bounds) - 1,
                     self.split_methods[collection])
        self._ranges = ranges
        return max(1, len(ranges))

    def read_segment(self, segment: int, total: int) -> Iterator[list[bytes]]:
        return pages_from_start(self, segment, total)

    def read_segment_from(
        self, segment: int, total: int, cursor: dict[str, Any] | None
    ) -> Iterator[tuple[list[bytes], Callable[[int], Any] | None]]:
        """Pages of one segment, each with the cursor after its i-th line: that document's
        name (reading goes on after it, in name order, at the run's read time)."""
        if self._ranges is None:
            raise SourceError("internal error: read_segment() before plan_segments()")
        if not self._ranges:  # no collection at all: one empty segment
            return
        if total != len(self._ranges):
            raise SourceError(f"internal error: {total} segments asked, {len(self._ranges)} planned")
        collection, low, high = self._ranges[segment]
        prefix = len(self.root) + 1
        after = str(cursor["after"]) if cursor and cursor.get("after") else None
        page: list[bytes] = []
        names: list[str] = []
        size = 0
        for doc in self._documents(collection, low, high, after=after):
            line = encode_document(doc, doc.name[prefix:])
            page.append(line)
            names.append(doc.name[prefix:])
            size += len(line)
            if len(page) >= PAGE_LINES or size >= PAGE_BYTES:
                yield page, _after_names(names)
                page, names, size = [], [], 0
        if page:
            yield page, _after_names(names)

    def plan_state(self) -> dict[str, Any]:
        """What a later invocation needs to read this very plan: the read time, the segments'
        name ranges."""
        if self._read_time is None or self._ranges is None:
            raise SourceError("internal error: plan_state() before plan_segments()")
        return {"read_time": list(self._read_time), "collections": list(self._collections_read),
                "ranges": [list(r) for r in self._ranges]}

    def resume_plan(self, state: dict[str, Any], segments: int) -> None:
        try:
            seconds, nanos = state["read_time"]
            ranges = [(str(c), lo, hi) for c, lo, hi in state["ranges"]]
            collections = [str(c) for c in state["collections"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceError(f"{self.where()}: unreadable recorded plan: {exc}") from exc
        if max(1, len(ranges)) != segments:
            raise SourceError(f"{self.where()}: the recorded plan has {len(ranges)} ranges, "
                              f"not {segments}")
        self._read_time = (int(seconds), int(nanos))
        self._ranges = ranges
        self._collections_read = collections

    def _count(self, collection: str) -> int | None:
        t = self._types()
        agg = t.firestore.RunAggregationQueryRequest.pb()(parent=self.root)
        agg.structured_aggregation_query.structured_query.CopyFrom(
            self._query(collection, None, True, None))
        aggregation = agg.structured_aggregation_query.aggregations.add()
        aggregation.alias = "n"
        aggregation.count.SetInParent()
        self._read_time_pb(agg)

        def count() -> int | None:
            for response in self._api.run_aggregation_query(
                request=t.firestore.RunAggregationQueryRequest.wrap(agg), metadata=self._metadata,
                retry=None, timeout=CALL_TIMEOUT,
            ):
                pb = t.firestore.RunAggregationQueryResponse.pb(response)
                if pb.HasField("result"):
                    return int(pb.result.aggregate_fields["n"].integer_value)
            return None

        try:
            return self._call(f"counting {collection}", count)
        except SourceUnreachableError:
            raise
        except SourceError as exc:  # e.g. a count too large for the deadline: plan without it
            log.warning("firestore: cannot count %s (%s); planning without the count", collection, exc)
            return None

    def _split_points(self, collection: str, want: int, count: int | None) -> list[str]:
        """Up to ``want - 1`` document names splitting ``collection`` into ranges."""
        try:
            points = self._partition_points(collection, want)
            self.split_methods[collection] = "partition query"
        except PartitionQueryUnavailable as exc:
            if count is None:
                self.split_methods[collection] = f"whole (no partition query: {exc}; no count)"
                return []
            points = self._sampled_points(collection, want, count)
            self.split_methods[collection] = "document-name ranges (partition query unavailable)"
        return points

    def _partition_points(self, collection: str, want: int) -> list[str]:
        from google.api_core import exceptions

        t = self._types()
        query = t.query.StructuredQuery.pb()()
        selector = query.from_.add()
        selector.collection_id = collection
        selector.all_descendants = True  # partition queries need a collection group
        order = query.order_by.add()
        order.field.field_path = "__name__"
        order.direction = t.query.StructuredQuery.Direction.ASCENDING
        request = t.firestore.PartitionQueryRequest.pb()(
            parent=self.root, structured_query=query, partition_count=want - 1)
        self._read_time_pb(request)

        def fetch() -> list[str]:
            pager = self._api.partition_query(
                request=t.firestore.PartitionQueryRequest.wrap(request), metadata=self._metadata,
                retry=None, timeout=CALL_TIMEOUT,
            )
            return [c.values[0].reference_value for c in pager if c.values]

        try:
            cursors = self._call(f"partitioning {collection}", fetch,
                                 passthrough=(exceptions.MethodNotImplemented,))
        except exceptions.MethodNotImplemented as exc:
            raise PartitionQueryUnavailable(exc.message) from exc
        prefix = len(self.root) + 1
        names = {c[prefix:] for c in cursors if c.startswith(self.root + "/")}
        # The collection group also holds same-named subcollections elsewhere: keep our range.
        names = {n for n in names if n.startswith(collection + "/")
                 and (self.recursive or n.count("/") == 1)}
        return sorted(names, key=name_order_key)

    def _sampled_points(self, collection: str, want: int, count: int) -> list[str]:
        """Every (count / want)-th name of one keys-only pass (at the run's read time)."""
        want = max(1, min(want, count))
        marks = sorted({round(i * count / want) for i in range(1, want)})
        points: list[str] = []
        if not marks:
            return points
        prefix = len(self.root) + 1
        for position, doc in enumerate(self._documents(collection, None, None, keys_only=True)):
            if position == marks[len(points)]:
                points.append(doc.name[prefix:])
                if len(points) == len(marks):
                    break
        return points

