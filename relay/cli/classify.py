"""``binrelay classify FILE.eml...``: what would the rules decide, without storing.

With ``--json`` every file gives one line with the SPEC's object (file, source,
kind, category, wards, urgency, explanation). Without it, a short readable
summary per file with the explanation indented below. A file that cannot be
read gives one error line on stderr and exit 1, but the other files are still
classified.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from mail.message import parse_mail
from relay.config import Config
from relay.service.runtime import make_classifier

MemberLookup = Callable[[str], str | None]

EXIT_OK, EXIT_FAILURE = 0, 1


def run_classify(
    config: Config,
    files: Sequence[Path],
    as_json: bool,
    member_lookup: MemberLookup,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Classify each file and print the result; 1 when any file was unreadable."""
    out = out or sys.stdout
    err = err or sys.stderr
    classifier = make_classifier(config)
    status = EXIT_OK
    for path in files:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            print(f"binrelay: {path}: cannot read: {exc.strerror or exc}", file=err)
            status = EXIT_FAILURE
            continue
        mail = parse_mail(raw, config.limits.max_message_bytes)
        result = classifier.classify(mail, member_lookup).as_json(str(path))
        out.write(json.dumps(result, ensure_ascii=False) + "\n" if as_json else summary(result))
        out.flush()
    return status


def summary(result: dict[str, Any]) -> str:
    """A few readable lines: the decision first, then why."""
    wards = ", ".join(result.get("wards") or []) or "(none)"
    decision = f"{result['source']} {result['kind']}"
    if result.get("category"):
        decision += f", category {result['category']}"
    if result.get("urgency"):
        decision += f", urgency {result['urgency']}"
    lines = [f"{result['file']}: {decision}, wards {wards}"]
    lines.extend(f"    {line}" for line in result.get("explanation") or [])
    return "\n".join(lines) + "\n"
