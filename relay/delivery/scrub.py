"""What members may read of a report: one scrub for everything that leaves for them.

The Subject, the body and the attachment names of an alert all pass through
``MemberScrub`` before they are stored on the alert (and so before any copy is
rendered): the reporter's names and address become ``[naam]`` / ``[e-mail]``,
and so does every email address in the text that is not the network's own or
a partner's. The approval request warns the coordinator about those other
addresses (``rules.safeguards.other_addresses``), so nothing disappears unseen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from relay.config import Config
from rules.safeguards import EMAIL_ADDRESS

NAME_PARTICLES = frozenset({"van", "de", "der", "den", "het", "ten", "ter", "te", "'t", "la", "le", "di", "el",
                            "al", "von", "du", "da", "dos"})
NAME = "[naam]"
ADDRESS = "[e-mail]"


def public_address(config: Config, address: str) -> bool:
    """An address members may see: the network's own (and its plus forms) or a partner's."""
    address = address.lower().rstrip(".")
    local, _, domain = address.rpartition("@")
    network_local, _, network_domain = config.network.address.partition("@")
    if domain == network_domain and (local == network_local or local.startswith(network_local + "+")):
        return True
    for partner in config.partners:
        if address in partner.addresses or address == partner.forward_to:
            return True
        if any(domain == d or domain.endswith("." + d) for d in partner.domains):
            return True
    return False


@dataclass(frozen=True)
class MemberScrub:
    config: Config
    names: tuple[str, ...] = ()  # the reporter's names as written (display name, member name)

    @classmethod
    def for_reporter(cls, config: Config, names: Iterable[str]) -> MemberScrub:
        return cls(config, tuple(name for name in names if name))

    def __call__(self, text: str) -> str:
        text = EMAIL_ADDRESS.sub(lambda m: m.group(0) if public_address(self.config, m.group(0)) else ADDRESS, text)
        for word in _name_words(self.names):
            text = re.sub(rf"(?<!\w){re.escape(word)}(?!\w)", NAME, text)
        return text


def _name_words(names: Iterable[str]) -> list[str]:
    """The whole names and their distinctive parts, longest first ("Jan de Vries" before "Jan")."""
    words: set[str] = set()
    for name in names:
        cleaned = " ".join(name.replace('"', " ").split())
        if "@" in cleaned or not cleaned:
            continue
        words.add(cleaned)
        words.update(part for part in re.split(r"[\s,]+", cleaned)
                     if len(part) >= 2 and part.lower() not in NAME_PARTICLES and part[0].isupper())
    return sorted(words, key=len, reverse=True)
