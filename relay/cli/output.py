"""How listings are printed: one JSON object per line for scripts, else a table for people."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TextIO


def print_listing(rows: Sequence[dict[str, Any]], *, as_json: bool, out: TextIO, empty: str, header: str,
                  line: Callable[[dict[str, Any]], str]) -> None:
    """``--json``: each row as a JSON line (nothing when there are none); else ``header`` and a line a row."""
    if as_json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False), file=out)
        return
    if not rows:
        print(empty, file=out)
        return
    print(header, file=out)
    for row in rows:
        print(line(row), file=out)
