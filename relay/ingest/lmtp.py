"""Optional inbound LMTP listener, for a local Postfix that delivers straight to binrelay.

Store before accept: each recipient gets its 250 only after the message is
committed to the database; if the database fails, 451 tells Postfix to keep
the message and try again later. (LMTP answers DATA once per recipient; the
network address is usually the only one.)
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import Envelope, Session

from relay.config import LmtpConfig
from relay.ingest.store import Ingestor

log = logging.getLogger("binrelay.ingest.lmtp")


class StoreHandler:
    def __init__(self, ingestor: Ingestor, arrived: threading.Event | None = None) -> None:
        self.ingestor = ingestor
        self.arrived = arrived

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        count = max(1, len(envelope.rcpt_tos))
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                None, lambda: self.ingestor.store(raw, origin="lmtp", origin_ref=None)
            )
        except Exception:
            log.exception("lmtp: could not store a message of %d bytes; answered 451", len(raw))
            return "\r\n".join(["451 4.3.0 not stored, please try again later"] * count)
        if self.arrived is not None:
            self.arrived.set()
        log.info("lmtp: message %s stored%s", result.message_id, "" if result.stored else " (duplicate)")
        return "\r\n".join([f"250 2.0.0 stored as {result.message_id}"] * count)


class _LmtpController(Controller):
    def factory(self) -> LMTP:
        return LMTP(self.handler, **self.SMTP_kwargs)


@dataclass
class LmtpServer:
    controller: _LmtpController

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def stop(self) -> None:
        self.controller.stop()


def start_lmtp(config: LmtpConfig, ingestor: Ingestor, arrived: threading.Event | None = None) -> LmtpServer:
    controller = _LmtpController(
        StoreHandler(ingestor, arrived), hostname=config.host, port=config.port,
        decode_data=False, data_size_limit=None,
    )
    controller.start()
    log.info("lmtp: listening on %s:%s", config.host, config.port)
    return LmtpServer(controller)
