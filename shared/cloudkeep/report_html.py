"""The HTML report: one self-contained file (inline CSS and SVG; no script, font, image or link
to anything outside it), so it can be mailed, archived or opened from a bucket as it is."""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape
from typing import Any

from .changelog.window import describe as describe_window
from .pricing import summary_text
from .report import age_text, check_state, drill_text, human_bytes, human_seconds

REPORT_MARK = "<title>cloudkeep report</title>"  # what marks a file as a cloudkeep report

CSS = """
:root { --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --muted: #6e7781; --line: #d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1f2328;
       background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0 0 8px; }
h3 { font-size: 14px; margin: 14px 0 4px; color: var(--muted); font-weight: 600; }
.meta { color: var(--muted); margin-bottom: 18px; }
table { border-collapse: collapse; margin: 6px 0 12px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px 4px 0; text-align: left;
         vertical-align: top; }
th { font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.nw { white-space: nowrap; }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; color: #fff; font-size: 12px;
         font-weight: 600; }
.badge.ok { background: var(--ok); } .badge.warning { background: var(--warn); }
.badge.critical, .badge.error { background: var(--bad); }
section.dataset { border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px;
                  margin: 16px 0; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0; }
dt { color: var(--muted); } dd { margin: 0; }
.attention { color: var(--bad); margin: 6px 0; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font: 11px system-ui, sans-serif; fill: #57606a; }
.legend span { margin-right: 14px; color: var(--muted); font-size: 12px; }
.sw { display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 2px;
      vertical-align: -1px; }
"""

OK, BAD, UNVERIFIED, BREACH = "#1a7f37", "#cf222e", "#8c959f", "#cf222e"


def render(report: dict[str, Any]) -> str:
    """The whole report as one HTML document."""
    now = _time(report["generated_at"])
    rows = report["datasets"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        REPORT_MARK,
        f"<style>{CSS}</style></head><body>",
        "<h1>cloudkeep report</h1>",
        f'<div class="meta">generated {escape(_show_time(now))} UTC · policy '
        f"{escape(report.get('policy') or '—')} · cloudkeep {escape(report['cloudkeep_version'])} · "
        f"{len(rows)} dataset(s)</div>",
        _summary_table(rows),
    ]
    for row in rows:
        parts.append(_dataset_section(row, now))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _summary_table(rows: list[dict[str, Any]]) -> str:
    head = ("<table id=\"summary\"><tr><th>dataset</th><th>status</th><th>tier</th><th>newest</th>"
            "<th>age / RPO</th><th>last verification</th><th>last drill</th><th>snapshots</th>"
            "<th>stored</th><th>alerts</th></tr>")
    body = []
    for r in rows:
        name = escape(r["dataset"])
        if r.get("error"):
            body.append(f'<tr data-dataset="{name}"><td><a href="#ds-{name}">{name}</a></td>'
                        f'<td>{_badge("error")}</td><td>{escape(r["tier"])}</td>'
                        f'<td colspan="7">{escape(r["error"])}</td></tr>')
            continue
        body.append(
            f'<tr data-dataset="{name}"><td><a href="#ds-{name}">{name}</a></td>'
            f"<td>{_badge(r['status'])}</td><td>{escape(r['tier'])}</td>"
            f"<td>{escape(r['newest_snapshot'] or 'none')}</td>"
            f"<td class=\"nw\">{escape(age_text(r))}</td>"
            f"<td>{escape(_verification(r['last_verification']))}</td>"
            f"<td>{escape(_drill(r['last_drill']))}</td><td class=\"num\">{r['snapshot_count']}</td>"
            f"<td class=\"num\">{escape(human_bytes(r['stored_bytes']))}</td>"
            f"<td class=\"num\">{len(r['alerts_open'])}</td></tr>"
        )
    return head + "".join(body) + "</table>"


def _kept_because(rows: list[dict[str, Any]], most: int = 8) -> str:
    """The newest kept snapshots with the retention reasons that keep each (plan --retention)."""
    kept = [f"{s['snapshot_id']}: {', '.join(s.get('reasons') or [])}" for s in rows
            if s.get("action") == "keep"]
    return "; ".join(kept[:most]) + (" …" if len(kept) > most else "") or "—"


def _dataset_section(r: dict[str, Any], now: datetime) -> str:
    name = escape(r["dataset"])
    out = [f'<section class="dataset" id="ds-{name}" data-dataset="{name}">',
           f"<h2>{name} {_badge(r.get('status', 'error'))}</h2>"]
    if r.get("error"):
        out.append(f'<p class="attention">cannot read the store {escape(r["store"])}: '
                   f"{escape(r['error'])}</p></section>")
        return "".join(out)
    for reason in r["attention"]:
        out.append(f'<div class="attention">{escape(reason)}</div>')
    retention = r["retention"]
    facts = [
        ("source", f"{r['source_type']} → store {r['store']}"),
        ("tier", f"{r['tier']} (schedule {r['schedule']}, RPO {r['rpo']}"
                 + (f", RTO {human_seconds(r['rto_seconds'])}" if r.get("rto_seconds") else "") + ")"),
        ("newest snapshot", f"{r['newest_snapshot'] or 'none'}"
                            + (f" ({r['items']} items)" if r["items"] is not None else "")),
        ("age / RPO", age_text(r)),
        ("last verification", _verification(r["last_verification"])),
        ("last restore drill", _drill(r["last_drill"])),
        ("snapshots", f"{r['snapshot_count']} stored, {human_bytes(r['stored_bytes'])} "
                      f"({human_bytes(r['raw_bytes'])} uncompressed)"),
        ("storage classes", summary_text(r["storage"], human_bytes) if r.get("storage") else "unknown"),
        ("retention now", f"keeps {len(retention['keep'])}, would remove {len(retention['remove'])}"
                          + (f": {', '.join(retention['remove'][:5])}" if retention["remove"] else "")
                          + (" …" if len(retention["remove"]) > 5 else "")),
        ("kept because", _kept_because(retention.get("snapshots") or [])),
        ("legal holds", ", ".join(f"{h['snapshot_id']} ({h.get('reason', '')})" for h in r["holds"])
                        or "none"),
        ("alerts open", "; ".join(f"{a.get('kind', '?')} since {a.get('since', '?')}: "
                                  f"{a.get('message', '')}" for a in r["alerts_open"]) or "0"),
    ]
    if r.get("continuous"):  # continuous capture: the recoverable window and its gaps (#21)
        facts.append(("point-in-time", describe_window(r["continuous"]).removeprefix("continuous: ")))
    out.append("<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{escape(str(v))}</dd>" for k, v in facts)
               + "</dl>")
    out.append("<h3>timeline: snapshots, verifications, RPO breaches</h3>")
    out.append(timeline_svg(r, now))
    out.append('<div class="legend">'
               f'<span><i class="sw" style="background:{OK}"></i>snapshot, verified</span>'
               f'<span><i class="sw" style="background:{UNVERIFIED}"></i>not verified</span>'
               f'<span><i class="sw" style="background:{BAD}"></i>verification failed</span>'
               '<span><i class="sw" style="background:rgba(207,34,46,.18)"></i>RPO breached</span>'
               "<span>▲ verification · ■ restore drill</span></div>")
    out.append("<h3>stored size</h3>")
    out.append(size_svg(r, now))
    out.append("</section>")
    return "".join(out)


# ------------------------------------------------------------------------------------- SVG

W, PAD_L, PAD_R = 900, 60, 20


def _span(r: dict[str, Any], now: datetime) -> tuple[datetime, datetime]:
    times = [_time(s["time"]) for s in r["snapshots"]]
    times += [_time(v["at"]) for v in r["verifications"] if v.get("at")]
    rpo = timedelta(seconds=r["rpo_seconds"])
    start = min(times) if times else now - 7 * rpo
    start = min(start, now - rpo)
    end = max([now, *times])
    pad = (end - start) * 0.03 or timedelta(hours=1)
    return start - pad, end + pad


def _x(t: datetime, start: datetime, end: datetime) -> float:
    total = (end - start).total_seconds() or 1.0
    return PAD_L + (W - PAD_L - PAD_R) * (t - start).total_seconds() / total


def _axis(start: datetime, end: datetime, y: float) -> str:
    out = [f'<line x1="{PAD_L}" y1="{y}" x2="{W - PAD_R}" y2="{y}" stroke="#d0d7de"/>']
    ticks = 6
    for i in range(ticks + 1):
        t = start + (end - start) * i / ticks
        x = _x(t, start, end)
        label = t.strftime("%m-%d %H:%M") if (end - start) < timedelta(days=60) else t.strftime("%Y-%m-%d")
        anchor = "start" if i == 0 else "end" if i == ticks else "middle"
        out.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" stroke="#8c959f"/>'
                   f'<text x="{x:.1f}" y="{y + 16}" text-anchor="{anchor}">{escape(label)}</text>')
    return "".join(out)


def timeline_svg(r: dict[str, Any], now: datetime) -> str:
    start, end = _span(r, now)
    h = 120
    y_snap, y_check = 38, 70
    out = [f'<svg class="timeline" viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" '
           f'aria-label="timeline of {escape(r["dataset"])}" xmlns="http://www.w3.org/2000/svg">']
    for breach in r["rpo_breaches"]:
        x1 = _x(_time(breach["from"]), start, end)
        x2 = _x(_time(breach["to"]) if breach["to"] else now, start, end)
        label = f"RPO breached from {breach['from'][:19]} to {(breach['to'] or 'now')[:19]}"
        out.append(f'<rect class="breach" x="{x1:.1f}" y="14" width="{max(x2 - x1, 1.5):.1f}" '
                   f'height="{y_check + 10 - 14}" fill="rgba(207,34,46,.18)">'
                   f"<title>{escape(label)}</title></rect>")
    out.append(f'<text x="4" y="{y_snap + 4}">snapshots</text><text x="4" y="{y_check + 4}">checks</text>')
    out.append(f'<line x1="{PAD_L}" y1="{y_snap}" x2="{W - PAD_R}" y2="{y_snap}" stroke="#eaeef2"/>')
    out.append(f'<line x1="{PAD_L}" y1="{y_check}" x2="{W - PAD_R}" y2="{y_check}" stroke="#eaeef2"/>')
    xn = _x(now, start, end)
    out.append(f'<line x1="{xn:.1f}" y1="10" x2="{xn:.1f}" y2="{y_check + 12}" stroke="#57606a" '
               f'stroke-dasharray="3 3"/><text x="{xn:.1f}" y="10" text-anchor="end">now</text>')
    for s in r["snapshots"]:
        x = _x(_time(s["time"]), start, end)
        colour = UNVERIFIED if s["verified"] is None else OK if s["verified"] else BAD
        state = "not verified" if s["verified"] is None else "verified" if s["verified"] else "FAILED"
        tip = (f"{s['snapshot_id']}: {s['items']} items, {human_bytes(s['stored_bytes'])}, {state}"
               + (f", legal hold: {s['hold']}" if s["hold"] else ""))
        ring = ' stroke="#1f2328" stroke-width="2"' if s["hold"] else ""
        out.append(f'<circle class="snapshot" cx="{x:.1f}" cy="{y_snap}" r="5" fill="{colour}"{ring}>'
                   f"<title>{escape(tip)}</title></circle>")
    for v in r["verifications"]:
        if not v.get("at"):
            continue
        x = _x(_time(v["at"]), start, end)
        colour = OK if v["ok"] else BAD
        tip = f"{v['level']} of {v['snapshot_id']}: {'ok' if v['ok'] else 'FAILED'}"
        if v.get("restore_seconds") is not None:
            tip += f", restore took {human_seconds(v['restore_seconds'])}"
        if v["level"] == "drill":
            shape = (f'<rect class="check drill" x="{x - 5:.1f}" y="{y_check - 5}" width="10" '
                     f'height="10" fill="{colour}">')
            out.append(f"{shape}<title>{escape(tip)}</title></rect>")
        else:
            points = f"{x:.1f},{y_check - 6} {x - 6:.1f},{y_check + 5} {x + 6:.1f},{y_check + 5}"
            out.append(f'<polygon class="check" points="{points}" fill="{colour}">'
                       f"<title>{escape(tip)}</title></polygon>")
    out.append(_axis(start, end, y_check + 18))
    out.append("</svg>")
    return "".join(out)


def size_svg(r: dict[str, Any], now: datetime) -> str:
    """Per-snapshot stored size (bars) and the total stored after each snapshot (line)."""
    start, end = _span(r, now)
    h, top, base = 130, 12, 92
    snaps = r["snapshots"]
    totals, running = [], 0
    for s in snaps:
        running += s["stored_bytes"]
        totals.append(running)
    peak = max(totals, default=0) or 1
    out = [f'<svg class="sizes" viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" '
           f'aria-label="stored size of {escape(r["dataset"])}" xmlns="http://www.w3.org/2000/svg">']
    out.append(f'<text x="4" y="{top + 8}">{escape(human_bytes(peak))}</text><text x="4" y="{base}">0</text>')

    def y(value: float) -> float:
        return base - (base - top) * value / peak

    for s in snaps:
        x = _x(_time(s["time"]), start, end)
        out.append(f'<rect class="size" x="{x - 2:.1f}" y="{y(s["stored_bytes"]):.1f}" width="4" '
                   f'height="{base - y(s["stored_bytes"]):.1f}" fill="#54aeff">'
                   f"<title>{escape(s['snapshot_id'])}: {escape(human_bytes(s['stored_bytes']))}</title></rect>")
    if snaps:
        points = " ".join(f"{_x(_time(s['time']), start, end):.1f},{y(t):.1f}"
                          for s, t in zip(snaps, totals, strict=True))
        out.append(f'<polyline class="total" points="{points}" fill="none" stroke="#0969da" '
                   f'stroke-width="2"><title>total stored: {escape(human_bytes(totals[-1]))}</title></polyline>')
    else:
        out.append(f'<text x="{W / 2}" y="{(top + base) / 2}" text-anchor="middle">no snapshots</text>')
    out.append(_axis(start, end, base))
    out.append("</svg>")
    return "".join(out)


# ------------------------------------------------------------------------------------- text


def _badge(status: str) -> str:
    return f'<span class="badge {escape(status)}">{escape(status)}</span>'


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _show_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M")


def _verification(v: dict[str, Any] | None) -> str:
    if v is None:
        return "never"
    return (f"{v['level']} {check_state(v)}, {str(v.get('at') or '')[:16].replace('T', ' ')} "
            f"({v['snapshot_id']})")


def _drill(v: dict[str, Any] | None) -> str:
    if v is None:
        return "never"
    return drill_text(v, str(v.get("at") or "")[:16].replace("T", " "), restored="restored in ",
                      rto="RTO ")
