"""One time rule: what a person reads is the network's local time with its offset."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from relay.service.logsetup import ZonedFormatter, use_zone
from relay.service.texts import local_time, shown_time

WINTER = datetime(2026, 12, 2, 1, 19, 43, tzinfo=UTC)
SUMMER = datetime(2026, 7, 2, 1, 19, 43, tzinfo=UTC)


def test_a_time_is_shown_in_the_networks_zone_with_its_offset() -> None:
    assert shown_time(WINTER, "Europe/Amsterdam") == "2026-12-02 02:19:43+01:00"
    assert shown_time(SUMMER, "Europe/Amsterdam") == "2026-07-02 03:19:43+02:00"
    assert shown_time(None, "Europe/Amsterdam") == "-"


def test_a_time_in_a_message_carries_its_offset() -> None:
    assert local_time(WINTER, "Europe/Amsterdam") == "02-12-2026 02:19 (+01:00)"
    assert local_time(SUMMER, "Europe/London") == "02-07-2026 02:19 (+01:00)"
    assert local_time(WINTER, "UTC") == "02-12-2026 01:19 (+00:00)"


@pytest.fixture
def amsterdam_logs() -> object:
    use_zone(ZoneInfo("Europe/Amsterdam"))
    yield None
    ZonedFormatter.zone = None


def test_log_lines_carry_the_networks_local_time_and_offset(amsterdam_logs: object) -> None:
    record = logging.LogRecord("binrelay", logging.INFO, __file__, 1, "hello", None, None)
    record.created = WINTER.timestamp()
    line = ZonedFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(record)
    assert line == "2026-12-02T02:19:43+01:00 INFO binrelay: hello"
