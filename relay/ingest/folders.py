"""Where the processed folder lives on this server: its name as configured, or inside the personal namespace.

Courier, and Cyrus as Debian configures it, keep every personal folder under
``INBOX.`` (RFC 2342 NAMESPACE: personal prefix "INBOX.", separator ".").
There ``CREATE Verwerkt`` is refused ("Invalid mailbox name", "Permission
denied") and the folder must be ``INBOX.Verwerkt``. A folder that already
exists under either name is used as it is.
"""

from __future__ import annotations

import imaplib
from dataclasses import dataclass

from imapclient import IMAPClient


@dataclass(frozen=True)
class FolderChoice:
    name: str  # the folder binrelay moves processed mail to
    exists: bool
    why: str  # for check and logs: "exists", "the server's personal namespace is 'INBOX.'"


def candidates(client: IMAPClient, wanted: str) -> list[str]:
    """The names ``wanted`` may have here, the one to create first: inside a prefixed personal namespace
    the prefixed name, else the name as configured."""
    prefixed = [_inside(prefix, separator, wanted) for prefix, separator in _personal(client)]
    preferred = [name for name in prefixed if name != wanted]
    return [*dict.fromkeys([*preferred, wanted])]


def choose(client: IMAPClient, wanted: str) -> FolderChoice:
    """Which folder it is (read only): an existing one, else the one ``ensure`` would create."""
    names = candidates(client, wanted)
    for name in [wanted, *names]:
        if client.folder_exists(name):
            return FolderChoice(name, True, "exists")
    first = names[0]
    why = "as configured" if first == wanted else f"inside the server's personal namespace ({first!r})"
    return FolderChoice(first, False, f"will be created, {why}")


def ensure(client: IMAPClient, wanted: str) -> FolderChoice:
    """The folder, created when missing: the preferred name first, the other if the server refuses it."""
    choice = choose(client, wanted)
    if choice.exists:
        return choice
    refused: list[str] = []
    for name in candidates(client, wanted):
        try:
            client.create_folder(name)
            where = "" if name == wanted else ", inside the server's personal namespace"
            return FolderChoice(name, True, f"created{where}")
        except imaplib.IMAP4.error as error:
            if client.folder_exists(name):  # another process created it meanwhile
                return FolderChoice(name, True, "exists")
            refused.append(f"{name!r}: {_text(error)}")
    raise imaplib.IMAP4.error(f"cannot create the processed folder ({'; '.join(refused)})")


def _personal(client: IMAPClient) -> list[tuple[str, str]]:
    """(prefix, separator) of each personal namespace; [] when the server has no NAMESPACE."""
    if b"NAMESPACE" not in client.capabilities():
        return []
    try:
        personal = client.namespace().personal or ()
    except imaplib.IMAP4.error:
        return []
    return [(_text(prefix), _text(separator or "")) for prefix, separator in personal]


def _inside(prefix: str, separator: str, wanted: str) -> str:
    if not prefix or wanted.upper().startswith(prefix.upper()) or wanted.upper() == "INBOX":
        return wanted
    return prefix + wanted.replace("/", separator) if separator else prefix + wanted


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, BaseException) and value.args:
        return _text(value.args[0])
    return str(value)
