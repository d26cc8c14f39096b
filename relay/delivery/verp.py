"""Signed return paths: a bounce counts only when it comes back to an address we signed.

Every message binrelay sends has its own envelope sender,
``bin+bounce-<delivery id>-<mac>@domain``, where the MAC is a signature of the
delivery id under the network's token key. A bounce to that address names its
delivery (and so its member) whatever its body says; a bounce to an unsigned or
wrongly signed return path, or one that only names an address in its text,
changes nothing. So a stranger can neither guess a neighbouring id nor silence
a member whose address they know.
"""

from __future__ import annotations

import re

from relay.config import Config
from relay.delivery import compose
from relay.service.tokens import Signer

_TAG = re.compile(r"^(\d{1,18})-([a-z2-7]{16})$")


def return_path(config: Config, signer: Signer, delivery_id: int) -> str:
    return compose.plus_address(config.network.address, f"bounce-{delivery_id}-{signer.sign('verp', delivery_id)}")


def signed_delivery(signer: Signer, tag: str | None) -> int | None:
    """The delivery id a ``bounce-`` tag names, when its signature is right; else None."""
    found = _TAG.match((tag or "").strip().lower())
    if found is None:
        return None
    delivery_id = int(found.group(1))
    return delivery_id if signer.verify(found.group(2), "verp", delivery_id) else None
