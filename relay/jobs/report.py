"""`binrelay report`: a month in numbers, per ward and overall, and the monthly email.

Everything is counted from rows that retention keeps (classifications, queue
decisions, coordinators' corrections, member dates, delivery statuses), so a
month whose messages were purged still reports. The corrections (SPOED,
CATEGORIE ... in a reply) show operators where the rules are overruled. ``--send`` mails the user group a Dutch (or English)
report with a PNG chart of the month per ward: each recipient gets a month's
report once, however often it is asked for and however many processes run the
monthly job (``storage.workers.claim_job`` per recipient and month).
"""

from __future__ import annotations

import io
import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any, TextIO

from sqlalchemy.orm import Session

from relay.delivery import compose
from relay.delivery.sender import deliver_pending
from relay.service.runtime import Runtime
from storage.limits import address_key
from storage.models import DeliveryStatus, ItemStatus
from storage.outbox import enqueue_notice, outcomes_of
from storage.reports import (
    alert_copy_outcomes,
    all_members,
    corrections_made,
    items_decided,
    reports_received,
)
from storage.workers import claim_job

ALL = "*"  # the key for the whole network
CORRECTED_FIELDS = ("urgency", "category")
CORRECTION_LABELS = {"nl": {"urgency": "urgentie", "category": "categorie"},
                     "en": {"urgency": "urgency", "category": "category"}}


@dataclass
class WardNumbers:
    received: Counter[str] = field(default_factory=Counter)  # "source" and "source/category"
    outcomes: Counter[str] = field(default_factory=Counter)  # approved | rejected | expired
    decision_minutes: list[float] = field(default_factory=list)
    members: Counter[str] = field(default_factory=Counter)  # joined | left | disabled
    # Coordinators' corrections: "urgency", "category", and "urgency/normal>urgent", "category/other>fraud".
    corrections: Counter[str] = field(default_factory=Counter)

    def median(self) -> float | None:
        return statistics.median(self.decision_minutes) if self.decision_minutes else None

    def p90(self) -> float | None:
        if not self.decision_minutes:
            return None
        ordered = sorted(self.decision_minutes)
        return ordered[max(0, -(-len(ordered) * 9 // 10) - 1)]  # nearest-rank 90th percentile


@dataclass
class MonthReport:
    month: str
    wards: dict[str, WardNumbers]
    deliveries_sent: int = 0
    deliveries_failed: int = 0

    def ward(self, slug: str) -> WardNumbers:
        return self.wards.setdefault(slug, WardNumbers())


def month_bounds(month: str) -> tuple[datetime, datetime]:
    year, number = (int(part) for part in month.split("-"))
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=UTC)
    return start, end


def previous_month(now: datetime) -> str:
    year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    return f"{year:04d}-{month:02d}"


def build_report(session: Session, month: str, ward_slugs: list[str]) -> MonthReport:
    start, end = month_bounds(month)
    report = MonthReport(month, {slug: WardNumbers() for slug in [ALL, *ward_slugs]})
    _received(session, report, start, end)
    _decisions(session, report, start, end)
    _corrections(session, report, start, end)
    _members(session, report, start, end)
    _deliveries(session, report, start, end)
    return report


def _received(session: Session, report: MonthReport, start: datetime, end: datetime) -> None:
    for source, category, wards in reports_received(session, start, end):
        for slug in [ALL, *(wards or [])]:
            numbers = report.ward(slug)
            numbers.received[source] += 1
            numbers.received[f"{source}/{category or 'other'}"] += 1
            numbers.received[f"*/{category or 'other'}"] += 1


def _decisions(session: Session, report: MonthReport, start: datetime, end: datetime) -> None:
    for status, created, decided, expires, target, proposed in items_decided(session):
        when = decided if status != ItemStatus.EXPIRED else (decided or expires)
        if when is None or not start <= when < end:
            continue
        for slug in [ALL, *(target if target is not None else proposed or [])]:
            numbers = report.ward(slug)
            numbers.outcomes[status] += 1
            if status != ItemStatus.EXPIRED and decided is not None:
                numbers.decision_minutes.append((decided - created).total_seconds() / 60)


def _corrections(session: Session, report: MonthReport, start: datetime, end: datetime) -> None:
    for what, old, new, wards in corrections_made(session, start, end):
        for slug in [ALL, *(wards or [])]:
            numbers = report.ward(slug)
            numbers.corrections[what] += 1
            numbers.corrections[f"{what}/{old or '-'}>{new}"] += 1


def _members(session: Session, report: MonthReport, start: datetime, end: datetime) -> None:
    for member in all_members(session):
        for what, when in (("joined", member.joined_at), ("left", member.left_at), ("disabled", member.disabled_at)):
            if when is not None and start <= when < end:
                report.ward(ALL).members[what] += 1
                report.ward(member.ward).members[what] += 1


def _deliveries(session: Session, report: MonthReport, start: datetime, end: datetime) -> None:
    for status, sent_at, created in alert_copy_outcomes(session):
        if status == DeliveryStatus.SENT and sent_at is not None and start <= sent_at < end:
            report.deliveries_sent += 1
        elif status == DeliveryStatus.FAILED and start <= created < end:
            report.deliveries_failed += 1


# ---------------------------------------------------------------- text


def render_text(rt: Runtime, report: MonthReport, language: str) -> str:
    nl = language == "nl"
    lines = [f"{'Maandrapport' if nl else 'Monthly report'} {rt.config.network.name} — {report.month}", ""]
    for slug, numbers in report.wards.items():
        ward = rt.config.ward(slug)
        title = ("Hele netwerk" if nl else "Whole network") if slug == ALL else (ward.name if ward else slug)
        lines += [title, "-" * len(title), *_ward_lines(numbers, nl), ""]
    lines.append(f"{'Berichten bezorgd' if nl else 'Alert copies delivered'}: {report.deliveries_sent}, "
                 f"{'mislukt/bounces' if nl else 'failed/bounced'}: {report.deliveries_failed}")
    return "\n".join(lines) + "\n"


def _ward_lines(numbers: WardNumbers, nl: bool) -> list[str]:
    sources = ", ".join(f"{s} {numbers.received[s]}" for s in ("police", "municipality", "coordinator", "member", "unknown")
                        if numbers.received[s]) or "-"
    categories = ", ".join(f"{key.split('/', 1)[1]} {count}" for key, count in sorted(numbers.received.items())
                           if key.startswith("*/")) or "-"
    outcomes = numbers.outcomes
    median, p90 = numbers.median(), numbers.p90()
    timing = f"{median:.0f} / {p90:.0f} min" if median is not None and p90 is not None else "-"
    return [
        f"  {'ontvangen per bron' if nl else 'received by source'}: {sources}",
        f"  {'per categorie' if nl else 'by category'}: {categories}",
        (f"  {'goedgekeurd' if nl else 'approved'} {outcomes['approved']}, "
        f"{'afgewezen' if nl else 'rejected'} {outcomes['rejected']}, "
        f"{'verlopen' if nl else 'expired'} {outcomes['expired']}"),
        f"  {'tijd tot besluit (mediaan / p90)' if nl else 'time to decision (median / p90)'}: {timing}",
        (f"  {'verbeterd door coördinatoren' if nl else 'corrected by coordinators'}: "
        f"{_correction_counts(numbers.corrections, 'nl' if nl else 'en')}"),
        (f"  {'leden' if nl else 'members'}: +{numbers.members['joined']} "
        f"-{numbers.members['left']} ({'uitgeschakeld' if nl else 'disabled'} {numbers.members['disabled']})"),
    ]


def _correction_counts(corrections: Counter[str], language: str) -> str:
    """ "urgentie 2 (normal → urgent 2), categorie 1 (other → fraud 1)", or "-"."""
    parts = []
    for what in CORRECTED_FIELDS:
        if not corrections[what]:
            continue
        changes = sorted(((count, key.split("/", 1)[1]) for key, count in corrections.items()
                          if key.startswith(f"{what}/")), key=lambda pair: (-pair[0], pair[1]))
        detail = ", ".join(f"{change.replace('>', ' → ')} {count}" for count, change in changes)
        parts.append(f"{CORRECTION_LABELS[language][what]} {corrections[what]} ({detail})")
    return ", ".join(parts) or "-"


# ---------------------------------------------------------------- chart and mail


def render_chart(rt: Runtime, report: MonthReport, language: str) -> bytes:
    """Stacked bars per ward: reports received by category, readable at a glance; below them, when the
    coordinators corrected the rules this month, the corrections per ward and field."""
    # Deferred: matplotlib takes a second to import, and only the monthly mail draws a chart.
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot  # deferred with matplotlib, above
    from matplotlib.ticker import MaxNLocator  # deferred with pyplot, above

    slugs = [slug for slug in report.wards if slug != ALL]
    names = [(rt.config.ward(s).name if rt.config.ward(s) else s) for s in slugs]  # type: ignore[union-attr]
    corrected = any(report.wards[s].corrections for s in slugs)
    figure, panels = pyplot.subplots(2 if corrected else 1, 1, figsize=(10, 8.5 if corrected else 5.5), dpi=100,
                                     squeeze=False, gridspec_kw={"height_ratios": [3, 2] if corrected else [1]})
    colours = pyplot.get_cmap("tab20").colors  # type: ignore[attr-defined]
    _received_panel(rt, report, panels[0][0], slugs, names, colours, language)
    if corrected:
        _corrections_panel(report, panels[1][0], slugs, names, colours, language)
    for row in panels:
        row[0].yaxis.set_major_locator(MaxNLocator(integer=True))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    return buffer.getvalue()


def _received_panel(rt: Runtime, report: MonthReport, axes: Any, slugs: list[str], names: list[str],
                    colours: Any, language: str) -> None:
    categories = sorted({key.split("/", 1)[1] for n in report.wards.values() for key in n.received if key.startswith("*/")})
    bottoms = [0] * len(slugs)
    for index, category in enumerate(categories):
        values = [report.wards[s].received[f"*/{category}"] for s in slugs]
        axes.bar(names, values, bottom=bottoms, label=rt.classifier.rules.label(category, language)
                 if rt.classifier is not None else category, color=colours[index % len(colours)])
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    title = "Meldingen per wijk" if language == "nl" else "Reports per ward"
    axes.set_title(f"{title} — {report.month}", fontsize=14)
    axes.set_ylabel("aantal" if language == "nl" else "count")
    axes.tick_params(axis="x", labelrotation=30, labelsize=10)
    if categories:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)


def _corrections_panel(report: MonthReport, axes: Any, slugs: list[str], names: list[str], colours: Any,
                       language: str) -> None:
    """Side-by-side bars per ward: how often coordinators corrected the urgency and the category."""
    width = 0.4
    positions = range(len(slugs))
    for index, what in enumerate(CORRECTED_FIELDS):
        values = [report.wards[s].corrections[what] for s in slugs]
        axes.bar([x + (index - 0.5) * width for x in positions], values, width=width,
                 label=CORRECTION_LABELS[language][what], color=colours[(2 * index + 6) % len(colours)])
    axes.set_xticks(list(positions), names)
    title = "Verbeterd door coördinatoren" if language == "nl" else "Corrected by coordinators"
    axes.set_title(title, fontsize=12)
    axes.set_ylabel("aantal" if language == "nl" else "count")
    axes.tick_params(axis="x", labelrotation=30, labelsize=10)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)


def report_recipients(rt: Runtime) -> list[str]:
    config = rt.config
    return config.network.report_recipients or sorted(
        {*config.network.coordinators, *(a for w in config.wards for a in w.coordinators)}
    )


def report_purpose(month: str) -> str:
    """The outbox purpose of a month's report mails: how a later run finds what became of them."""
    return f"report {month}"


def send_report(rt: Runtime, session: Session, report: MonthReport, now: datetime) -> list[str]:
    """Queue the report mail (text + PNG chart) for each recipient who has not had this month's yet.

    Returns the recipients queued now.
    """
    config = rt.config
    language = config.network.language
    recipients = [r for r in report_recipients(rt)
                  if claim_job(session, f"report:{address_key(r)[:24]}", report.month, rt.worker_id, now)]
    if not recipients:
        return []
    text = render_text(rt, report, language)
    chart = render_chart(rt, report, language)
    subject = f"{'Maandrapport' if language == 'nl' else 'Monthly report'} {config.network.name} {report.month}"
    for recipient in recipients:
        message = EmailMessage()
        message["From"] = compose.network_from(config)
        message["To"] = recipient
        message["Subject"] = compose.header_safe(subject)
        message["Date"] = format_datetime(now)
        message["Message-ID"] = compose.new_message_id(config)
        message["Auto-Submitted"] = "auto-generated"
        message["X-Loop"] = config.network.address
        message.set_content(text, charset="utf-8")
        message.add_attachment(chart, maintype="image", subtype="png", filename=f"binrelay-{report.month}.png")
        enqueue_notice(session, recipient=recipient, raw=message.as_bytes(policy=SMTP),
                       purpose=report_purpose(report.month), now=now)
    return recipients


def report_command(rt: Runtime, month: str | None, send: bool, out: TextIO, err: TextIO) -> int:
    """Print the month's report; with ``send`` also mail it. Exit 1 when a recipient does not have it."""
    now = rt.clock.now()
    month = month or previous_month(now)
    with rt.sessions() as session, session.begin():
        report = build_report(session, month, [w.slug for w in rt.config.wards])
        out.write(render_text(rt, report, rt.config.network.language))
        if send:
            send_report(rt, session, report, now)
    if not send:
        return 0
    deliver_pending(rt)
    with rt.sessions() as session:
        outcomes = outcomes_of(session, report_purpose(month))
    sent = [row.recipient for row in outcomes if row.status == DeliveryStatus.SENT]
    out.write(f"\nsent to {len(sent)} of {len(outcomes)} recipients: {', '.join(sent) or '-'}\n")
    missing = [row for row in outcomes if row.status != DeliveryStatus.SENT]
    for row in missing:
        state = "will be retried" if row.status == DeliveryStatus.PENDING else "failed for good"
        err.write(f"binrelay report: not sent to {row.recipient} ({state}): {row.last_error or 'not tried yet'}\n")
    return 1 if missing else 0


def send_monthly(rt: Runtime) -> None:
    """The daemon's monthly job: last month's report to the user group."""
    now = rt.clock.now()
    with rt.sessions() as session, session.begin():
        report = build_report(session, previous_month(now), [w.slug for w in rt.config.wards])
        send_report(rt, session, report, now)
