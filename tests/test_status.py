"""`binrelay status [--json]`: what needs attention, from a real Dovecot, SMTP sink and SQLite."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from relay.cli.main import main
from relay.devservers.dovecot import PrivateDovecot
from relay.devservers.stack import LoopbackStack, compose
from relay.service.clock import FrozenClock
from tests.e2e import MAASPOORT, make_stack

pytestmark = pytest.mark.dovecot
LOCAL_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")


def status(stack: LoopbackStack, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["--config", str(stack.config_path), "status", "--json"])
    return code, json.loads(capsys.readouterr().out)


def run_once(stack: LoopbackStack, capsys: pytest.CaptureFixture[str]) -> int:
    code = main(["--config", str(stack.config_path), "run", "--once"])
    capsys.readouterr()
    return code


def test_before_any_pass_status_asks_whether_binrelay_runs(stack: LoopbackStack,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, document = status(stack, capsys)
    assert code == 1
    assert document["attention"] == ["no mailbox has been read yet (is binrelay running?)"]


def test_after_a_good_pass_status_is_ok_and_shows_the_queue(stack: LoopbackStack,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    stack.mail_in(compose(sender=MAASPOORT[0], subject="Inbraak", body="Ingebroken aan de Marathonloop."))
    assert run_once(stack, capsys) == 0
    code, document = status(stack, capsys)
    assert code == 0 and document["ok"] and document["attention"] == []
    [source] = document["sources"]
    assert source["error"] is None and LOCAL_TIME.match(source["last_read"])
    assert "@" not in json.dumps(document)  # roles and labels, never an address
    [ward] = document["pending"]
    assert ward["ward"] == "maaspoort" and ward["items"] == 1 and ward["oldest_age_seconds"] >= 0
    assert LOCAL_TIME.match(document["at"]) and LOCAL_TIME.match(ward["oldest"])
    assert document["messages"] == {"waiting": 0, "failed": 0}
    assert document["workers"] == []  # run --once has finished: nothing is running now


def test_a_mailbox_that_cannot_be_read_needs_attention(stack: LoopbackStack,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert run_once(stack, capsys) == 0
    (stack.workdir / "imap.secret").write_text("not-the-password")
    assert run_once(stack, capsys) == 1
    code, document = status(stack, capsys)
    assert code == 1
    [reason] = document["attention"]
    assert reason.startswith("imap 127.0.0.1:") and "LoginError" in reason
    [source] = document["sources"]
    assert source["last_read"] is not None and source["failed_at"] is not None  # when it last worked, and since


def test_the_text_form_names_each_part(stack: LoopbackStack, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_once(stack, capsys) == 0
    assert main(["--config", str(stack.config_path), "status"]) == 0
    out = capsys.readouterr().out
    for part in ("binrelay status at", ": ok", "mailboxes:", "messages:", "pending items:", "deliveries:",
                 "members disabled by bounces: 0", "live workers: 0"):
        assert part in out, out


def test_a_processed_folder_the_server_refuses_fails_loudly_and_loses_nothing(
        tmp_path: Path, dovecot_server: PrivateDovecot, clock: FrozenClock,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Two hierarchy separators in a row: Dovecot refuses the name, plain or under a prefix.
    stack = make_stack(tmp_path, dovecot_server, clock, config={"imap": {"processed_folder": "Verwerkt..oud"}})
    try:
        stack.mail_in(compose(sender=MAASPOORT[0], subject="Inbraak", body="Ingebroken aan de Marathonloop."))
        code = main(["--config", str(stack.config_path), "run", "--once"])
        err = capsys.readouterr().err
        assert code == 1 and "cannot create the processed folder" in err
        code, document = status(stack, capsys)
        assert code == 1 and any("cannot create the processed folder" in reason for reason in document["attention"])
        client = stack.dovecot.client(stack.mailbox_user)
        try:
            assert client.select_folder("INBOX", readonly=True)[b"EXISTS"] == 1  # still there, for the next try
        finally:
            client.logout()
    finally:
        stack.stop()
