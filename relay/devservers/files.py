"""Small file helpers shared by the private servers."""

from __future__ import annotations

from pathlib import Path


def tail(path: Path | None, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file; empty when there is none (yet)."""
    if path is None:
        return ""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
