"""``cloudkeep report``: where every dataset stands, for a calm weekly look.

Per dataset: the newest snapshot and its age against the RPO, the last verification and the last
restore drill (with the measured restore time against the RTO), how many snapshots are stored and
how big they are, what retention would keep and remove now, legal holds and open alerts — plus
the history the HTML report draws: every snapshot, every verification, every RPO breach.

Reading only: the report never writes to a store. A dataset whose store cannot be read is
reported with its error; the others are still reported.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from . import __version__, coldtiers, holds, layout, rehydrate, runs, timeline, verify_slots
from .alerts import open_alerts
from .catalog import scan
from .changelog import window
from .errors import CloudkeepError, ObjectNotFoundError
from .policy import Policy, format_duration
from .prune import prune
from .registry import open_store
from .stores import Store
from .trust import expect_for

log = logging.getLogger(__name__)


def build(policy: Policy, now: datetime, *, policy_source: str = "",
          datasets: list[str] | None = None) -> dict[str, Any]:
    """The whole report as plain data (what ``--format json`` prints and the HTML draws)."""
    names = datasets or sorted(policy.datasets)
    for name in names:
        policy.dataset(name)
    rows = [dataset_report(policy, name, now) for name in names]
    return {
        "generated_at": now.isoformat(),
        "policy": policy_source,
        "cloudkeep_version": __version__,
        "datasets": rows,
    }


def dataset_report(policy: Policy, name: str, now: datetime, store: Store | None = None) -> dict[str, Any]:
    """One dataset's entry of the report; a store error is recorded in ``error``, not raised."""
    spec = policy.dataset(name)
    tier = policy.tiers[spec.tier]
    out: dict[str, Any] = {
        "dataset": name,
        "tier": spec.tier,
        "store": spec.store,
        "source_type": spec.source.type,
        "schedule": tier.schedule,
        "rpo_seconds": int(tier.rpo.total_seconds()),
        "rpo": format_duration(tier.rpo),
        "error": None,
    }
    rto = tier.rto  # the tier's RTO, when the policy has one
    out["rto_seconds"] = int(rto.total_seconds()) if rto else None
    problems: list[str] = []
    try:
        store = store or open_store(policy.stores[spec.store])
        # Only trusted manifests are snapshots; every refused one is a problem (cloudkeep.trust).
        listing = scan(store, name, expect=expect_for(policy, name))
        manifests = listing.manifests
        verifications = read_verifications(store, name)
        held = holds.all_for(store, name, problems)
        alerts = read_alerts(store, name)
        retention = prune(policy, name, now, dry_run=True, store=store).as_dict()
    except CloudkeepError as exc:
        out.update(error=str(exc), exit_code=exc.exit_code, status="error")
        return out
    problems = [r.message for r in listing.refused] + problems

    # As of ``now``: records written after it (a report with an earlier --now) are left out.
    verifications = [v for v in verifications if not v["at"] or _time(v["at"]) <= now]
    latest_check: dict[str, dict[str, Any]] = {}
    for record in verifications:  # oldest first: the last one wins
        latest_check[str(record.get("snapshot_id"))] = record
    # A snapshot sits on the timeline at its capture time (timeline.py), as retention, plan and
    # the watchdog see it; it counts at ``now`` when its id's time (its slot) is not after it.
    for m in manifests:
        timeline.remember(store, m)
    ordered = sorted(manifests, key=lambda m: (timeline.capture_time(m), m.snapshot_id))
    snapshots = []
    for m in ordered:
        check = latest_check.get(m.snapshot_id)
        snapshots.append({
            "snapshot_id": m.snapshot_id,
            "time": timeline.capture_time(m).isoformat(),
            "captured_at": timeline.capture_time(m).isoformat(),
            "slot": m.slot.isoformat() if m.slot else None,
            "started_at": m.started_at.isoformat(),
            "finished_at": m.finished_at.isoformat(),
            "trigger": m.trigger,
            "items": m.totals.items,
            "stored_bytes": m.totals.stored_bytes,
            "verified": None if check is None else bool(check.get("ok")),
            "hold": holds.reasons(held.get(m.snapshot_id, [])),
            "holds": [h.as_dict() for h in held.get(m.snapshot_id, [])],
        })
    past = [m for m in ordered if timeline.id_time(m.snapshot_id) <= now]
    newest = past[-1] if past else None
    # the data's age, as `plan`, the watchdog and its metrics count it
    age = timeline.age(timeline.capture_time(newest), now) if newest is not None else None
    rpo_met = age is not None and age <= tier.rpo
    last_verification = verifications[-1] if verifications else None
    drills = [v for v in verifications if v.get("level") == "drill"]
    last_drill = drills[-1] if drills else None
    # Scheduled verifications are remembered after their snapshot is pruned (verify_slots.py).
    try:
        remembered = _remembered_verifications(store, name, now)
    except CloudkeepError as exc:
        log.warning("dataset %s: cannot read the scheduled verification slots: %s", name, exc)
        remembered = {}
    for level, record in remembered.items():
        if last_verification is None or str(record["at"]) > str(last_verification["at"]):
            last_verification = record
        if level == "drill" and (last_drill is None or str(record["at"]) > str(last_drill["at"])):
            last_drill = record
    try:
        # what ran, not what retention left: a pruned gap is no outage (runs.py)
        history = runs.history(store, name, as_of=now, committed=[
            timeline.Captured(m.snapshot_id, timeline.capture_time(m)) for m in manifests])
    except CloudkeepError as exc:
        out.update(error=str(exc), exit_code=exc.exit_code, status="error")
        return out
    out.update(
        newest_snapshot=newest.snapshot_id if newest else None,
        newest_started_at=newest.started_at.isoformat() if newest else None,
        newest_captured_at=timeline.capture_time(newest).isoformat() if newest else None,
        age_seconds=int(age.total_seconds()) if age is not None else None,
        rpo_met=rpo_met,
        snapshot_count=len(manifests),
        stored_bytes=sum(m.totals.stored_bytes for m in manifests),
        raw_bytes=sum(m.totals.raw_bytes for m in manifests),
        items=newest.totals.items if newest else None,
        last_verification=last_verification,
        last_drill=last_drill,
        retention={
            "keep": [s["snapshot_id"] for s in retention["snapshots"] if s["action"] == "keep"],
            "remove": [s["snapshot_id"] for s in retention["snapshots"] if s["action"] == "remove"],
            "errors": retention["errors"],
            # every snapshot with its action and reasons, newest first (as plan --retention)
            "snapshots": [{k: s.get(k) for k in ("snapshot_id", "time", "action", "reasons")}
                          for s in retention["snapshots"]],
        },
        holds=[h.as_dict() for sid in sorted(held) for h in held[sid]],
        problems=problems,
        refused=[r.as_dict() for r in listing.refused],
        alerts_open=alerts,
        snapshots=snapshots,
        verifications=verifications,
        runs=len(history),
        rpo_breaches=rpo_breaches([r.captured_at for r in history], tier.rpo, now),
    )
    try:  # s16-cold: bytes per storage class and the monthly cost (cloudkeep.pricing)
        out["storage"] = coldtiers.storage_by_class(policy, name, store, spec.store)
    except CloudkeepError as exc:
        log.warning("dataset %s: cannot list storage classes: %s", name, exc)
        out["storage"] = None
    out["continuous"] = window.summary(policy, name)  # s16-capture: window and gaps
    try:  # s16-cold: archived snapshots being rehydrated (a verification or copy waits for them)
        out["rehydrating"] = rehydrate.pending(store, name)
    except CloudkeepError as exc:
        log.warning("dataset %s: cannot read the rehydration records: %s", name, exc)
        out["rehydrating"] = []
    out["status"], out["attention"] = _status(out)
    return out


def rpo_breaches(times: list[datetime], rpo: timedelta, now: datetime) -> list[dict[str, Any]]:
    """The spans in which the newest snapshot was older than the RPO (``to`` None: still open),
    from the capture ``times`` of every successful run (the run history, not the snapshots
    retention kept).

    Before the first snapshot there is nothing to be late against, so no breach is counted there.
    """
    out: list[dict[str, Any]] = []
    ordered = sorted(times)
    for prev, nxt in zip(ordered, ordered[1:], strict=False):
        if nxt - prev > rpo:
            out.append({"from": (prev + rpo).isoformat(), "to": nxt.isoformat(),
                        "seconds": int((nxt - prev - rpo).total_seconds())})
    if ordered and now - ordered[-1] > rpo:
        out.append({"from": (ordered[-1] + rpo).isoformat(), "to": None,
                    "seconds": int((now - ordered[-1] - rpo).total_seconds())})
    return out


def read_verifications(store: Store, dataset: str) -> list[dict[str, Any]]:
    """Every verification record of ``dataset``, oldest first, reduced to what the report shows.
    Unreadable records are skipped with a log line (a report is not the place to fail on them)."""
    prefix = layout.all_verifications_prefix(dataset)
    keys = [i.key for i in store.list(prefix) if i.key.endswith(".json")]

    def load(key: str) -> dict[str, Any] | None:
        try:
            data = json.loads(store.get(key))
        except (ObjectNotFoundError, ValueError) as exc:
            log.warning("skipping verification record %s: %s", key, exc)
            return None
        if not isinstance(data, dict):
            return None
        rest = key[len(prefix):]
        snapshot_id, _, stamp = rest.partition("/")
        problems = data.get("problems") or []
        return {
            "snapshot_id": data.get("snapshot_id") or snapshot_id,
            "level": data.get("level", "integrity"),
            "ok": bool(data.get("ok")),
            "at": data.get("finished_at") or data.get("started_at") or _stamp_time(stamp),
            "problems": len(problems) if isinstance(problems, list) else int(bool(problems)),
            "restore_seconds": data.get("restore_seconds"),
            "rto_met": data.get("rto_met"),
            **_settings_not_applied(data),
        }

    with ThreadPoolExecutor(max_workers=8) as pool:
        records = [r for r in pool.map(load, keys) if r is not None]
    records.sort(key=lambda r: str(r["at"]))
    return records


def _remembered_verifications(store: Store, dataset: str, now: datetime) -> dict[str, dict[str, Any]]:
    """The newest recorded outcome of each scheduled level (``verify_slots.py``), as of ``now``,
    in the form of :func:`read_verifications`."""
    out: dict[str, dict[str, Any]] = {}
    for level in ("drill", "sample"):
        data = verify_slots.latest_outcome(store, dataset, level)
        at = (data or {}).get("finished_at") or (data or {}).get("started_at")
        if data is None or not at or _time(str(at)) > now:
            continue
        problems = data.get("problems") or []
        out[level] = {
            "snapshot_id": data.get("snapshot_id"),
            "level": level,
            "ok": bool(data.get("ok")),
            "at": at,
            "problems": len(problems) if isinstance(problems, list) else int(bool(problems)),
            "restore_seconds": data.get("restore_seconds"),
            "rto_met": data.get("rto_met"),
            **_settings_not_applied(data),
        }
    return out


def _settings_not_applied(data: dict[str, Any]) -> dict[str, Any]:
    """A drill record's settings that its restore did not apply (s16-settings), by name."""
    settings = data.get("settings")
    if not isinstance(settings, dict) or not isinstance(settings.get("not_applied"), list):
        return {}
    return {"settings_not_applied": [str(e.get("setting")) for e in settings["not_applied"]
                                     if isinstance(e, dict)]}


def _time(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _stamp_time(stamp: str) -> str | None:
    try:
        return datetime.strptime(stamp[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).isoformat()
    except ValueError:
        return None


def read_alerts(store: Store, dataset: str) -> list[dict[str, Any]]:
    """The dataset's open alerts (none when no alert state was ever written): the newest entry
    of its append-only alert state (``alerts.load_state``)."""
    return [a for a in open_alerts(store, dataset) if isinstance(a, dict)]


def _status(row: dict[str, Any]) -> tuple[str, list[str]]:
    """ok / warning / critical, with the reasons a person should look."""
    critical: list[str] = []
    warning: list[str] = []
    if row["newest_snapshot"] is None:
        critical.append("no committed snapshot")
    elif not row["rpo_met"]:
        critical.append(f"newest snapshot is older than the RPO ({row['rpo']})")
    last = row["last_verification"]
    if last is None:
        warning.append("never verified")
    elif not last["ok"]:
        critical.append(f"last verification failed ({last['snapshot_id']}, {last['problems']} problems)")
    drill = row["last_drill"]
    if drill is not None and (not drill["ok"] or drill.get("rto_met") is False):
        critical.append("last restore drill failed" if not drill["ok"] else "last restore drill missed the RTO")
    if row["alerts_open"]:
        critical.append(f"{len(row['alerts_open'])} alert(s) open")
    if row.get("refused"):
        kinds = ", ".join(sorted({str(r["kind"]) for r in row["refused"]}))
        critical.append(f"{len(row['refused'])} manifest(s) refused ({kinds}): see problems")
    elif row.get("problems"):
        warning.append(f"{len(row['problems'])} unreadable record(s): see problems")
    if row["retention"]["errors"]:
        warning.extend(row["retention"]["errors"])
    if critical:
        return "critical", critical + warning
    return ("warning" if warning else "ok"), warning


def human_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    whole = int(seconds)
    if whole >= 86400:  # coarser as it grows: 3d4h, 21h3m, 5m12s
        whole -= whole % 3600
    elif whole >= 3600:
        whole -= whole % 60
    return format_duration(timedelta(seconds=whole))


def human_bytes(n: float) -> str:
    """``512 B``, ``1.5 KiB`` ... ``2.0 TiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def age_text(row: dict[str, Any]) -> str:
    """A dataset row's newest snapshot age against its RPO (``3h / 1d``, ``— RPO MISSED``)."""
    if row.get("age_seconds") is None:
        return f"never / {row['rpo']}"
    mark = "" if row["rpo_met"] else " — RPO MISSED"
    return f"{human_seconds(row['age_seconds'])} / {row['rpo']}{mark}"


def check_state(check: dict[str, Any]) -> str:
    """``ok`` or ``FAILED (N problems)`` of a row's last verification."""
    return "ok" if check["ok"] else f"FAILED ({check['problems']} problems)"


def drill_text(drill: dict[str, Any], when: str, *, restored: str = "", rto: str = "") -> str:
    """A row's last drill: ``ok``/``FAILED``, how long its restore took (after ``restored``)
    and whether it met the RTO (``(met)``/``(MISSED)``, after ``rto``), then ``when``."""
    text = "ok" if drill["ok"] else "FAILED"
    if drill.get("restore_seconds") is not None:
        text += f", {restored}{human_seconds(drill['restore_seconds'])}"
        if drill.get("rto_met") is not None:
            text += f" ({rto}met)" if drill["rto_met"] else f" ({rto}MISSED)"
    return f"{text}, {when}"
