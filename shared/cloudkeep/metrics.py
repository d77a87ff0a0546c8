"""Metrics through one small protocol; one sink per platform.

Names (dimensions ``dataset`` and ``tier``): ``BackupSucceeded``, ``BackupFailed`` (counts),
``ItemsBackedUp`` (count), ``BytesStored`` (bytes), ``BackupDurationSeconds`` (seconds) per
backup; ``SnapshotAgeSeconds`` (seconds) and ``RpoBreached`` (0 or 1) per dataset on every tick
(the freshness watchdog); ``VerificationFailed`` (0 or 1) per verification
and ``RestoreDrillSeconds`` (seconds) per restore drill; for the
S3 source also ``BlobBytesCopied`` (bytes of object content copied) and ``ObjectsReused`` (count).
Continuous capture (issue #21), per ingested batch: ``CaptureLagSeconds`` (seconds from the newest
change's event time to its being written: the measured RPO), ``ChangesCaptured`` (count, new
to the log), ``BytesCaptured`` (bytes stored); ``CaptureGaps`` (count) per recorded gap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from .outcomes import RunResult
from .policy import Policy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    unit: str  # "Count", "Bytes", "Seconds"
    dimensions: dict[str, str]


class MetricsSink(Protocol):
    def emit(self, metric: Metric) -> None: ...


def backup_metrics(policy: Policy, result: RunResult) -> list[Metric]:
    """The metrics of one dataset's backup outcome (nothing for 'exists' / 'locked')."""
    spec = policy.datasets.get(result.dataset)
    dims = {"dataset": result.dataset, "tier": spec.tier if spec else "unknown"}
    if result.status == "failed":
        return [Metric("BackupFailed", 1, "Count", dims)]
    if result.status != "committed" or result.manifest is None:
        return []
    m = result.manifest
    out = [
        Metric("BackupSucceeded", 1, "Count", dims),
        Metric("ItemsBackedUp", m.totals.items, "Count", dims),
        Metric("BytesStored", m.totals.stored_bytes, "Bytes", dims),
        Metric("BackupDurationSeconds", (m.finished_at - m.started_at).total_seconds(), "Seconds", dims),
    ]
    blobs = m.source.get("blobs")
    if isinstance(blobs, dict):  # S3 source: object content copied into blobs by this run
        out += [
            Metric("BlobBytesCopied", int(blobs.get("copied_bytes", 0)), "Bytes", dims),
            Metric("ObjectsReused", int(blobs.get("reused_objects", 0)), "Count", dims),
        ]
    return out


def freshness_metrics(dataset: str, tier: str, age_seconds: float | None,
                      breached: bool) -> list[Metric]:
    """The watchdog's metrics (no age when the dataset has no committed snapshot at all)."""
    dims = {"dataset": dataset, "tier": tier}
    out = [Metric("RpoBreached", 1 if breached else 0, "Count", dims)]
    if age_seconds is not None:
        out.insert(0, Metric("SnapshotAgeSeconds", round(age_seconds, 3), "Seconds", dims))
    return out


def verification_metrics(report: Any) -> list[Metric]:
    """``VerificationFailed`` for every verification; ``RestoreDrillSeconds`` for a drill that
    restored."""
    dims = {"dataset": report.dataset, "tier": report.tier or "unknown"}
    out = [Metric("VerificationFailed", 0 if report.ok else 1, "Count", dims)]
    if report.level == "drill" and report.restore_seconds is not None:
        out.append(Metric("RestoreDrillSeconds", round(report.restore_seconds, 3), "Seconds", dims))
    return out


def capture_metrics(policy: Policy, dataset: str, result: Any) -> list[Metric]:
    """The metrics of one batch appended to a change log (a
    :class:`~cloudkeep.changelog.IngestResult`); no lag for an empty batch."""
    spec = policy.datasets.get(dataset)
    dims = {"dataset": dataset, "tier": spec.tier if spec else "unknown"}
    out = [Metric("ChangesCaptured", result.written, "Count", dims),
           Metric("BytesCaptured", result.bytes, "Bytes", dims)]
    if result.lag is not None:
        out.insert(0, Metric("CaptureLagSeconds", round(result.lag.total_seconds(), 3), "Seconds", dims))
    return out


def gap_metrics(policy: Policy, dataset: str) -> list[Metric]:
    """``CaptureGaps`` for one recorded gap of a change log."""
    spec = policy.datasets.get(dataset)
    return [Metric("CaptureGaps", 1, "Count",
                   {"dataset": dataset, "tier": spec.tier if spec else "unknown"})]


METRIC_NAMES = ("BackupSucceeded", "BackupFailed", "ItemsBackedUp", "BytesStored",
                "BackupDurationSeconds", "SnapshotAgeSeconds", "RpoBreached", "VerificationFailed",
                "RestoreDrillSeconds")
CAPTURE_METRIC_NAMES = ("CaptureLagSeconds", "ChangesCaptured", "BytesCaptured", "CaptureGaps")
"""Emitted by the capture functions and ``cloudkeep capture``, not by a tick."""


@dataclass
class MemorySink:
    """For tests."""

    metrics: list[Metric] = field(default_factory=list)

    def emit(self, metric: Metric) -> None:
        self.metrics.append(metric)


class LogSink:
    """One structured log line per metric (Google Cloud log-based metrics, Azure custom
    dimensions): ``{"metric": NAME, "value": V, "unit": U, "dataset": ..., "tier": ...}``."""

    def emit(self, metric: Metric) -> None:
        log.info("metric %s=%s", metric.name, metric.value, extra={"cloudkeep": {
            "metric": metric.name, "value": metric.value, "unit": metric.unit, **metric.dimensions,
        }})


class EmfSink:
    """CloudWatch Embedded Metric Format through Powertools, one EMF blob per metric so each
    carries its own dataset and tier dimensions."""

    def __init__(self, namespace: str = "cloudkeep") -> None:
        self.namespace = namespace

    def emit(self, metric: Metric) -> None:
        from aws_lambda_powertools.metrics import MetricUnit, single_metric

        unit: Any = getattr(MetricUnit, metric.unit)
        with single_metric(name=metric.name, unit=unit, value=metric.value,
                           namespace=self.namespace) as one:
            for key, value in metric.dimensions.items():
                one.add_dimension(name=key, value=value)
