"""A source's settings on restore: which recorded settings apply (``--settings all|data|none``),
applying them to the target after its data, listing what would be applied (``--dry-run``), and
comparing a restored target's settings with the manifest (drills).

A backup records the settings a source reads in its manifest, under ``source["settings"]``: one
entry per setting name, its value in the source's own form, or the text ``"unreadable: <reason>"``
when the backup identity could not read it (a backup never fails for a setting). Which settings a
source has, and how they are applied, is the source's (``capabilities.RestoresSettings``; its
``sources/<name>/settings.py``). Guarantees here:

- nothing recorded is dropped silently: every recorded setting ends up in exactly one of
  ``applied``, ``not_applied`` (with the reason: unreadable at backup, refused by the target, not
  supported where it was restored) or ``skipped`` (left out by ``--settings``);
- a manifest written before settings were recorded restores as before and says
  ``recorded: false`` ("no settings recorded");
- ``plan`` writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .capabilities import RefusesSettingsTargets, RestoresSettings, able
from .errors import CloudkeepError

MODES = ("all", "data", "none")
DEFAULT_MODE = "all"
UNREADABLE = "unreadable: "
NOT_HERE = "not applicable here: "  # a reason that is the target's kind, not a failure
NOT_READ = "the backup could not read it"
#: Settings that grant access, hand the data's keys to someone else or cannot be undone on the
#: target: applied only from an authenticated (signed or encrypted) manifest, so a forged unsigned
#: manifest (accepted with --allow-unsigned, or by a policy that does not sign) cannot open a
#: restored table (``resource_policy``), encrypt it with a KMS key of another account (a KMS
#: ``sse``/``encryption``), or put retention no one can lift on a restored bucket
#: (``object_lock``). Settings that are checked against the target instead (a TTL on a key
#: attribute, absurd auto-scaling capacities) are refused by the source's applier.
SENSITIVE = frozenset({"resource_policy", "object_lock", "sse", "encryption"})
UNSIGNED = ("applied only from a signed or encrypted snapshot, and this manifest is not "
            "authenticated: it grants access, chooses the encryption key or cannot be undone; "
            "apply it by hand if you trust it")


def _harmless(name: str, value: Any) -> bool:
    """A sensitive setting's value that is also every new target's default (no resource policy,
    AWS-owned / S3-managed encryption, Object Lock off): applying it changes nothing risky."""
    if value is None or value == "AWS owned":
        return True
    if name == "object_lock":
        return not (isinstance(value, dict) and value.get("ObjectLockEnabled") == "Enabled")
    if name == "encryption":  # S3: the default-encryption rules (a list)
        rules = value.get("Rules") if isinstance(value, dict) else value
        return isinstance(rules, list) and all(
            isinstance(r, dict) and isinstance(r.get("ApplyServerSideEncryptionByDefault"), dict)
            and r["ApplyServerSideEncryptionByDefault"].get("SSEAlgorithm") == "AES256"
            for r in rules)
    return False


@dataclass
class SettingsOutcome:
    """What happened to a snapshot's recorded settings in one restore (or would, ``dry_run``)."""

    mode: str
    recorded: bool
    applied: list[str] = field(default_factory=list)
    not_applied: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    dry_run: bool = False
    note: str | None = None

    def failed(self) -> list[tuple[str, str]]:
        """The settings that were to be applied but were refused or not kept by the target
        (not those the backup could not read, nor those that do not apply to this kind of
        target, e.g. bucket settings on a prefix)."""
        return [(name, why) for name, why in self.not_applied
                if not why.startswith((NOT_READ, NOT_HERE, UNSIGNED))]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "recorded": self.recorded,
            ("to_apply" if self.dry_run else "applied"): list(self.applied),
            "not_applied": [{"setting": name, "reason": why} for name, why in self.not_applied],
            "skipped": list(self.skipped),
        }
        if self.note:
            out["note"] = self.note
        return out


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`; ValueError naming the choices otherwise."""
    if mode not in MODES:
        raise ValueError(f"--settings is one of {', '.join(MODES)} (got {mode!r})")
    return mode


def _split(source: object, recorded: Mapping[str, Any], mode: str, *, authenticated: bool = True
           ) -> tuple[dict[str, Any] | None, dict[str, Any], list[str], list[tuple[str, str]]]:
    """(all recorded settings or None, the selected readable ones, the skipped names, the
    unreadable — or, from an unauthenticated manifest, sensitive — ones with their reasons)."""
    applier = able(source, RestoresSettings)
    if applier is None:
        return None, {}, [], []
    settings = applier.recorded_settings(recorded)
    if settings is None:
        return None, {}, [], []
    keep = (set(settings) if mode == "all" else set(applier.data_settings()) if mode == "data"
            else set())
    selected: dict[str, Any] = {}
    skipped: list[str] = []
    unreadable: list[tuple[str, str]] = []
    for name, value in settings.items():
        if name not in keep:
            skipped.append(name)
        elif isinstance(value, str) and value.startswith(UNREADABLE):
            unreadable.append((name, f"{NOT_READ} ({value[len(UNREADABLE):]})"))
        elif name in SENSITIVE and not authenticated and not _harmless(name, value):
            unreadable.append((name, UNSIGNED))
        else:
            selected[name] = value
    return settings, selected, skipped, unreadable


def recorded_for_restore(source: object, recorded: Mapping[str, Any], mode: str, *,
                         authenticated: bool = True) -> dict[str, Any]:
    """The ``recorded`` source description a restore target is created from: its ``settings``
    narrowed to the readable settings ``mode`` selects (so a container or bucket created with its
    settings gets only those). Unchanged for a source that records no settings."""
    settings, selected, _, _ = _split(source, recorded, mode, authenticated=authenticated)
    if settings is None:
        return dict(recorded)
    return dict(recorded) | {"settings": selected}


def _none_recorded(mode: str, source: object, *, dry_run: bool) -> SettingsOutcome:
    note = ("none recorded in this snapshot (it was taken before settings were recorded)"
            if able(source, RestoresSettings) is not None
            else "this source type records no settings")
    return SettingsOutcome(mode, False, dry_run=dry_run, note=note)


def plan(source: object, recorded: Mapping[str, Any], mode: str, *, target: str = "",
         authenticated: bool = True) -> SettingsOutcome:
    """What a restore into ``target`` with ``--settings mode`` would apply (``--dry-run``).
    Reads and writes nothing."""
    settings, selected, skipped, unreadable = _split(source, recorded, mode,
                                                     authenticated=authenticated)
    if settings is None:
        return _none_recorded(mode, source, dry_run=True)
    refuses = able(source, RefusesSettingsTargets)
    not_here = (refuses.settings_not_applicable(target, sorted(selected), recorded)
                if refuses is not None else {})
    return SettingsOutcome(mode, True, applied=sorted(n for n in selected if n not in not_here),
                           not_applied=unreadable + sorted(not_here.items()),
                           skipped=sorted(skipped), dry_run=True)


def apply(source: object, recorded: Mapping[str, Any], target: str, mode: str, *,
          authenticated: bool = True) -> SettingsOutcome:
    """Apply the settings ``mode`` selects to the restored ``target`` (after its data); every
    recorded setting is accounted for in the outcome. From a manifest that is not
    ``authenticated``, settings that grant access (:data:`SENSITIVE`) are listed, not applied."""
    settings, selected, skipped, unreadable = _split(source, recorded, mode,
                                                     authenticated=authenticated)
    applier = able(source, RestoresSettings)
    if settings is None or applier is None:
        return _none_recorded(mode, source, dry_run=False)
    outcome = SettingsOutcome(mode, True, not_applied=list(unreadable), skipped=sorted(skipped))
    if selected:
        try:
            results = applier.apply_settings(target, selected, recorded)
        except CloudkeepError as exc:  # the items are in: a failed settings step is reported
            results = [(name, f"not applied: {' '.join(str(exc).split())[:300]}")
                       for name in selected]
        for name, why in results:
            if why is None:
                outcome.applied.append(name)
            else:
                outcome.not_applied.append((name, why))
    return outcome


def canonical(value: Any) -> str:
    """One spelling of a setting's value, to compare two (key order does not matter)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def compare(source: object, recorded: Mapping[str, Any], target: str,
            outcome: SettingsOutcome) -> list[str]:
    """Every setting ``outcome`` says was applied whose live value on ``target`` differs from the
    manifest's, as ``"<name>: manifest says X, the target has Y"``; empty when all match."""
    applier = able(source, RestoresSettings)
    settings = applier.recorded_settings(recorded) if applier is not None else None
    if applier is None or settings is None or not outcome.applied:
        return []
    live = applier.read_settings(target, recorded)
    problems = []
    for name in outcome.applied:
        want, have = canonical(settings.get(name)), canonical(live.get(name))
        if want != have:
            problems.append(f"{name}: the manifest says {want[:300]}, the restored target has "
                            f"{have[:300]}")
    return problems


def unreadable(reason: str) -> str:
    """The recorded value of a setting the backup could not read."""
    return UNREADABLE + " ".join(reason.split())[:300]
