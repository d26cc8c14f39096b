"""Every outside connection is opened here, so tests point them at the fixtures."""

from __future__ import annotations

import ssl

from imapclient import IMAPClient

from relay.config import ImapConfig


def imap_client(cfg: ImapConfig) -> IMAPClient:
    """A logged-in client: implicit TLS, STARTTLS or (loopback/tests) plain, with ``cfg.timeout_seconds``."""
    context = ssl.create_default_context() if (cfg.ssl or cfg.starttls) else None
    if context is not None and cfg.cafile is not None:
        context.load_verify_locations(cafile=str(cfg.cafile))
    client = IMAPClient(
        cfg.host, port=cfg.port, ssl=cfg.ssl, ssl_context=context, timeout=cfg.timeout_seconds
    )
    try:
        if cfg.starttls:
            client.starttls(context)
        client.login(cfg.username, cfg.password() or "")
    except BaseException:
        client.shutdown()
        raise
    return client
