"""What the private servers share: their log file and their use as a context manager."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Self


class PrivateServer:
    """A server started in its own ``workdir``; ``with`` starts it and cleans it away afterwards."""

    workdir: Path | None = None
    log_name = "server.log"  # in ``workdir``

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the server and remove what it left behind."""
        raise NotImplementedError

    def log_tail(self, lines: int = 30) -> str:
        return tail(self.workdir / self.log_name if self.workdir is not None else None, lines)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def tail(path: Path | None, lines: int = 30) -> str:
    """The last ``lines`` lines of a log file; empty when there is none (yet)."""
    if path is None:
        return ""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
