"""What the rules know of the network, as plain data: its wards, partners and coordinators.

The classifier needs only these facts from the configuration; the daemon builds
a ``Directory`` from its configuration (``relay.config.Config.directory``), and
tests can build one by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rules.sender import Trust


@dataclass(frozen=True)
class Ward:
    slug: str
    name: str
    aliases: tuple[str, ...] = ()
    postcodes: tuple[str, ...] = ()  # 4-digit prefixes
    streets: tuple[str, ...] = ()
    coordinators: tuple[str, ...] = ()  # lower-case addresses


@dataclass(frozen=True)
class Partner:
    kind: str  # police | municipality
    name: str
    domains: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Directory:
    name: str  # the network's name, e.g. "BIN 's-Hertogenbosch"
    address: str  # the network's own (shared mailbox) address, lower case
    coordinators: tuple[str, ...] = ()  # network-wide
    wards: tuple[Ward, ...] = ()
    partners: tuple[Partner, ...] = ()
    trust: Trust = field(default_factory=Trust)  # whose Authentication-Results count
    # Partner mail with no verdict at all counts as the partner (a failed verdict never does).
    partner_without_verdict: bool = True
    _coordinator_wards: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.trust.network_domain and "@" in self.address:
            object.__setattr__(self, "trust", Trust(self.trust.authserv_ids, self.address.rsplit("@", 1)[1],
                                                    self.trust.max_header_bytes))
        wards: dict[str, list[str]] = {}
        for ward in self.wards:
            for address in ward.coordinators:
                wards.setdefault(address, []).append(ward.slug)
        self._coordinator_wards.update({address: tuple(slugs) for address, slugs in wards.items()})

    @property
    def slugs(self) -> list[str]:
        return sorted(ward.slug for ward in self.wards)

    def coordinator_wards(self, address: str) -> tuple[str, ...]:
        """The wards ``address`` coordinates (not counting network-wide coordination)."""
        return self._coordinator_wards.get(address.lower(), ())

    def ward_name(self, slug: str) -> str:
        return next((ward.name for ward in self.wards if ward.slug == slug), slug)

    def is_coordinator(self, address: str) -> bool:
        address = address.lower()
        return address in self.coordinators or address in self._coordinator_wards
