"""``binrelay members ...``: import, list, remove, export and erase members, for operators.

Import reads a CSV with a header (``email,name,ward`` and optionally
``postcode``; a BOM, ``;`` or tab as delimiter and any column order are
accepted). Every bad row is reported by its line number and skipped; the good
rows are imported in chunks of one transaction each, so a 50,000-row file
takes seconds and an interruption keeps the chunks already done.
"""

from __future__ import annotations

import csv
import getpass
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.orm import Session

from mail.headers import valid_address
from relay.cli.output import print_listing
from relay.members.erasure import erase_address
from relay.service.runtime import Runtime
from relay.service.tokens import new_token
from rules.places import Places, postcode_in
from storage import audit
from storage.members import (
    export_member,
    insert_members,
    list_members,
    members_by_email,
    normalise_email,
    remove_member,
)
from storage.models import Member, MemberStatus

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
CHUNK_ROWS = 2000
PROGRESS_FROM_ROWS = 5000  # smaller files finish before a bar is worth drawing
CSV_FORMAT = """\
The CSV file has a header line naming its columns, in any order:
  email     required (also: e-mail, mail, emailadres)
  ward      required: a ward's slug, name or alias (also: wijk); left empty, the postcode's ward
  name      optional (also: naam)
  postcode  optional: 4 digits and 2 letters, or 4 digits
Delimiter "," ";" or tab; UTF-8 (a BOM is fine). Example:
  email,name,ward,postcode
  els@example.org,Els,maaspoort,5221
Each bad row is reported by its line number and skipped; an address listed again is updated."""
REQUIRED_COLUMNS = ("email", "ward")
KNOWN_COLUMNS = ("email", "name", "ward", "postcode")
COLUMN_ALIASES = {"e-mail": "email", "mail": "email", "emailadres": "email", "e-mailadres": "email",
                  "naam": "name", "wijk": "ward"}


@dataclass(frozen=True)
class ImportRow:
    line: int
    email: str
    name: str | None
    ward: str
    postcode: str | None


@dataclass
class ImportResult:
    added: int = 0
    updated: int = 0
    kept_left: int = 0  # updated, but they unsubscribed themselves: an import does not sign them up again
    bad: list[tuple[int, str]] = field(default_factory=list)


class CsvHeaderError(Exception):
    pass


# ---------------------------------------------------------------- import


def members_import(rt: Runtime, path: Path, out: TextIO, err: TextIO) -> int:
    """Add or update members from a CSV file; 0 when every row was good, 1 when some were bad."""
    try:
        text = read_text(path)
        rows, bad = parse_rows(rt.classifier.places, text)
    except (OSError, CsvHeaderError) as error:
        print(f"{path}: {error}", file=err)
        return EXIT_USAGE
    result = ImportResult(bad=bad)
    for line, problem in bad:
        print(f"{path}:{line}: {problem}", file=err)
    with _progress(err, len(rows)) as advance:
        for chunk in _chunks(rows, CHUNK_ROWS):
            with rt.sessions() as session, session.begin():
                import_chunk(session, chunk, rt.config.network.language, rt.clock.now(), result)
            advance(len(chunk))
    with rt.sessions() as session, session.begin():
        audit.record(session, at=rt.clock.now(), actor=_operator(), action="members_imported", file=str(path),
                     added=result.added, updated=result.updated, bad=len(result.bad))
    summary = f"{result.added} added, {result.updated} updated, {len(result.bad)} bad"
    if result.kept_left:
        summary += f" ({result.kept_left} had unsubscribed and stay unsubscribed)"
    print(summary, file=out)
    return EXIT_FAILURE if result.bad else EXIT_OK


def read_text(path: Path) -> str:
    """The file as text: UTF-8 (with or without BOM), else Windows-1252 as Excel writes it."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def parse_rows(places: Places, text: str) -> tuple[list[ImportRow], list[tuple[int, str]]]:
    """Good rows (the last one wins for an address listed twice) and (line number, problem) for bad ones."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    header = next(reader, None)
    columns = _columns(header)
    good: dict[str, ImportRow] = {}
    bad: list[tuple[int, str]] = []
    line = reader.line_num
    for values in reader:
        start, line = line + 1, reader.line_num
        if not any(value.strip() for value in values):
            continue
        row = _row(places, columns, values, start)
        if isinstance(row, str):
            bad.append((start, row))
        else:
            good.pop(row.email, None)
            good[row.email] = row
    return list(good.values()), bad


def _delimiter(text: str) -> str:
    first = text.split("\n", 1)[0]
    return max((";", ",", "\t"), key=first.count) if any(d in first for d in ";,\t") else ","


def _columns(header: list[str] | None) -> dict[str, int]:
    if not header:
        raise CsvHeaderError("empty file: expected a header line such as 'email,name,ward'")
    names = [COLUMN_ALIASES.get(name.strip().lower(), name.strip().lower()) for name in header]
    if any("@" in name for name in names):
        raise CsvHeaderError("line 1: a header line is required (for example 'email,name,ward,postcode')")
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        raise CsvHeaderError(f"line 1: the header has no column {', '.join(missing)} "
                             f"(expected {','.join(KNOWN_COLUMNS)})")
    return {name: names.index(name) for name in KNOWN_COLUMNS if name in names}


def _row(places: Places, columns: dict[str, int], values: list[str], line: int) -> ImportRow | str:
    def cell(name: str) -> str | None:
        index = columns.get(name)
        return values[index].strip() if index is not None and index < len(values) else None

    email, ward_text, postcode = cell("email"), cell("ward"), cell("postcode")
    if email is None or ward_text is None:
        return f"missing column {'email' if email is None else 'ward'}"
    address = normalise_email(email)
    if not _good_address(address):
        return f"bad address {email!r}" if email else "no address"
    ward = places.ward_for(ward_text) or (places.ward_for(postcode) if not ward_text else None)
    if ward is None:
        return f"unknown ward {ward_text!r}" if ward_text else "no ward"
    name = cell("name") or None
    return ImportRow(line, address, name[:200] if name else None, ward,
                     postcode_in(postcode) if postcode else None)


def _good_address(address: str) -> bool:
    return len(address) <= 320 and valid_address(address) and "." in address.rsplit("@", 1)[-1]


def import_chunk(session: Session, rows: list[ImportRow], language: str, now: datetime,
                 result: ImportResult) -> None:
    """Update the members that exist, insert the others in one statement. The caller commits."""
    existing = members_by_email(session, [row.email for row in rows])
    new: list[dict[str, Any]] = []
    for row in rows:
        member = existing.get(row.email)
        if member is None:
            new.append({"email": row.email, "name": row.name, "ward": row.ward, "postcode": row.postcode,
                        "language": language, "status": MemberStatus.ACTIVE, "bounce_score": 0,
                        "unsubscribe_token": new_token(), "preferences": {}, "joined_at": now})
            continue
        member.ward = row.ward
        if row.name is not None:
            member.name = row.name
        if row.postcode is not None:
            member.postcode = row.postcode
        result.updated += 1
        result.kept_left += member.status == MemberStatus.LEFT
    result.added += insert_members(session, new)


def _chunks(rows: list[ImportRow], size: int) -> Iterator[list[ImportRow]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


class _progress:
    """A rich progress bar on a terminal for large files; nothing otherwise (pipes, logs, tests)."""

    def __init__(self, err: TextIO, total: int) -> None:
        self._bar: Any = None
        if total >= PROGRESS_FROM_ROWS and err.isatty():
            # Deferred: rich is only needed for a progress bar on a terminal.
            from rich.console import Console
            from rich.progress import Progress

            self._bar = Progress(console=Console(file=err), transient=True)
            self._task = self._bar.add_task("importing members", total=total)

    def __enter__(self) -> Any:
        if self._bar is None:
            return lambda _count: None
        self._bar.start()
        return lambda count: self._bar.advance(self._task, count)

    def __exit__(self, *_exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


# ---------------------------------------------------------------- list, remove, export, erase


def members_list(rt: Runtime, ward: str | None, as_json: bool, out: TextIO, err: TextIO | None = None) -> int:
    """Members (not those who left), by ward and address: a table, or one JSON object per line."""
    slug = None
    if ward is not None:
        slug = rt.classifier.places.ward_for(ward)
        if slug is None:
            known = ", ".join(w.slug for w in rt.config.wards)
            print(f"unknown ward {ward!r} (known: {known})", file=err or sys.stderr)
            return EXIT_USAGE
    with rt.sessions() as session:
        rows = [_summary(member) for member in list_members(session, slug)]
    print_listing(rows, as_json=as_json, out=out, empty="no members",
                  header=f"{'EMAIL':40}  {'WARD':20}  {'STATUS':8}  {'LANG':4}  NAME",
                  line=lambda row: f"{row['email']:40}  {row['ward']:20}  {row['status']:8}  "
                                   f"{row['language']:4}  {row['name'] or ''}")
    if rows and not as_json:
        print(f"{len(rows)} members", file=out)
    return EXIT_OK


def _summary(member: Member) -> dict[str, Any]:
    return {"email": member.email, "name": member.name, "ward": member.ward, "postcode": member.postcode,
            "language": member.language, "status": member.status, "preferences": member.preferences or {},
            "joined_at": member.joined_at.isoformat()}


def members_remove(rt: Runtime, email: str, out: TextIO, err: TextIO) -> int:
    """The member leaves at once (kept as 'left' for the audit trail; ``erase`` forgets them)."""
    now = rt.clock.now()
    with rt.sessions() as session, session.begin():
        member = remove_member(session, email, now)
        if member is None:
            print(f"no active member {normalise_email(email)}", file=err)
            return EXIT_FAILURE
        audit.record(session, at=now, actor=_operator(), action="member_removed", email=member.email,
                     ward=member.ward)
    print(f"removed {normalise_email(email)}", file=out)
    return EXIT_OK


def members_export(rt: Runtime, email: str, out: TextIO, err: TextIO) -> int:
    """All data kept about one address as one JSON document (a privacy request)."""
    with rt.sessions() as session:
        data = export_member(session, email)
    if data is None:
        print(f"nothing is kept about {normalise_email(email)}", file=err)
        return EXIT_FAILURE
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str), file=out)
    return EXIT_OK


def members_erase(rt: Runtime, email: str, out: TextIO, err: TextIO) -> int:
    """Forget one address everywhere: its rows go, every mention of it (texts, stored messages, the
    audit trail) is replaced by a stand-in; prints what changed, per table and column."""
    address = normalise_email(email)
    now = rt.clock.now()
    with rt.sessions() as session, session.begin():
        changed = erase_address(session, address, now)
        if changed:
            # The record of the erasure names no address: only that one took place, and where.
            audit.record(session, at=now, actor=_operator(), action="member_erased", changed=dict(changed))
    if not changed:
        print(f"nothing is kept about {address}", file=err)
        return EXIT_FAILURE
    print(f"erased {address}:", file=out)
    for name, count in sorted(changed.items()):
        print(f"  {name}: {count}", file=out)
    return EXIT_OK


def _operator() -> str:
    try:
        return f"operator:{getpass.getuser()}"
    except (KeyError, OSError):
        return "operator"
