"""Use cases that tell how the backups are doing: :func:`report` (as data, and optionally as
one self-contained HTML file) and :func:`plan` (per dataset: due or not, next run)."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from .. import clock, extras, runtime
from ..changelog import window
from ..errors import CloudkeepError, UsageError
from ..policy import Policy
from ..redaction import redact_obj
from ..report import build
from ..report_html import REPORT_MARK
from ..report_html import render as render_html
from ..results import Report


@extras.translating
def report(policy: Policy, now: datetime | None = None, *, policy_source: str = "",
           datasets: Sequence[str] | None = None, html: str | Path | None = None) -> Report:
    """Per dataset at ``now``: newest snapshot and age against the RPO, last verification and
    restore drill, snapshots and stored size, what retention would keep and remove now, legal
    holds and open alerts (redacted: no credential in it). With ``html``, also written there
    as one HTML file (``data["html"]``: its absolute path); only a file that is an earlier
    cloudkeep report is ever overwritten."""
    data = redact_obj(build(policy, now or clock.now(), policy_source=policy_source,
                            datasets=list(datasets) if datasets else None))
    if html:
        write_html(Path(html), render_html(data))
        data["html"] = str(Path(html).resolve())
    return Report(data)


@extras.translating
def plan(policy: Policy, now: datetime | None = None) -> list[runtime.DatasetPlan]:
    """Per dataset at ``now``: latest snapshot and its age against the RPO, the current slot,
    due or not, the next run, the last verification and drill, open alerts."""
    plans = runtime.plan(policy, now or clock.now())
    for entry in plans:  # continuous capture: the recoverable window and gaps (s16-capture)
        entry.continuous = window.summary(policy, entry.dataset)
    return plans


def write_html(path: Path, text: str) -> None:
    """Write the HTML report whole (a temporary file renamed over the target), and overwrite
    only an earlier cloudkeep report: never a link, a policy, a manifest or any other file."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise UsageError(f"bad --output {str(path)!r}: {exc.strerror}") from None
    if info is not None:
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"bad --output {str(path)!r}: it exists and is not a regular file "
                             "(a link, a folder or a device); choose another file")
        try:
            with open(path, "rb") as fh:
                head = fh.read(4096).decode("utf-8", "replace")
        except OSError as exc:
            raise UsageError(f"bad --output {str(path)!r}: {exc.strerror}") from None
        if REPORT_MARK not in head:
            raise UsageError(f"bad --output {str(path)!r}: it exists and is not a cloudkeep "
                             "report; refusing to overwrite it (choose another file)")
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".cloudkeep-report-", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary new file (mkstemp makes it 0600)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp)
        raise CloudkeepError(f"cannot write {path}: {exc}") from None
