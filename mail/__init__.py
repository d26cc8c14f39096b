"""The mail layer: bytes in, a parsed and decoded message out.

Pure code: no database, no network, no configuration. ``rules/`` and
``relay/`` build on it; it imports nothing of theirs.
"""

from mail.message import Attachment, ParsedMail, parse_mail

__all__ = ["Attachment", "ParsedMail", "parse_mail"]
