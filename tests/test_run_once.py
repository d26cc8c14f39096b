"""`binrelay run --once` does all pending work and says when it could not: real Dovecot, SMTP sink, SQLite."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import func, select

from relay.cli.main import main
from relay.devservers.stack import LoopbackStack, compose
from storage.models import Message
from tests.e2e import ANNA, MAASPOORT


def run_once(stack: LoopbackStack, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit code, stdout and the command's own complaints on stderr (not its log lines)."""
    code = main(["--config", str(stack.config_path), "run", "--once"])
    out, err = capsys.readouterr()
    return code, out, "".join(line for line in err.splitlines(keepends=True) if line.startswith("binrelay "))


def statuses(stack: LoopbackStack) -> dict[str, int]:
    assert stack.daemon is not None and stack.daemon.runtime is not None
    with stack.daemon.runtime.sessions() as session:
        query = select(Message.status, func.count()).group_by(Message.status)
        return {str(status): int(count) for status, count in session.execute(query)}


def inbox_size(stack: LoopbackStack) -> int:
    return sum(1 for path in (stack.dovecot.maildir(stack.mailbox_user) / "new").iterdir() if path.is_file()) + \
        sum(1 for path in (stack.dovecot.maildir(stack.mailbox_user) / "cur").iterdir() if path.is_file())


def reports(count: int) -> list[bytes]:
    return [compose(sender=f"bewoner{n}@bewoners.nl", subject=f"Verdachte auto {n}",
                    body=f"Er staat al uren een auto met draaiende motor bij huisnummer {n} aan de Marathonloop.")
            for n in range(count)]


def test_everything_pending_is_routed_and_sent_in_one_call(
        stack: LoopbackStack, capsys: pytest.CaptureFixture[str]) -> None:
    stack.dovecot.deliver_many(stack.mailbox_user, reports(700))  # more than one routing batch
    code, out, err = run_once(stack, capsys)
    assert (code, err) == (0, "")
    assert "stored 700, routed 700" in out
    assert "new" not in statuses(stack) and sum(statuses(stack).values()) == 700
    assert stack.sink.messages  # the approval requests went out in the same call


def test_a_failed_imap_login_exits_1_and_names_the_source_not_the_account(
        stack: LoopbackStack, capsys: pytest.CaptureFixture[str]) -> None:
    (stack.workdir / "imap.secret").write_text("not-the-password")
    stack.mail_in(compose(sender=MAASPOORT[0], subject="Inbraak", body="Ingebroken aan de Marathonloop."))
    code, _out, err = run_once(stack, capsys)
    assert code == 1
    assert "binrelay run --once: imap 127.0.0.1:" in err and "LoginError" in err
    assert stack.mailbox_user not in err
    assert inbox_size(stack) == 1  # nothing was taken


def test_an_unreachable_smtp_server_exits_1_and_keeps_the_mail(
        stack: LoopbackStack, capsys: pytest.CaptureFixture[str]) -> None:
    stack.mail_in(compose(sender=MAASPOORT[0], subject="Inbraak", body="Ingebroken aan de Marathonloop."))
    stack.sink.stop()  # nothing listens on the configured port any more
    code, out, err = run_once(stack, capsys)
    assert code == 1 and "SMTP server unreachable" in err
    assert "stored 1, routed 1" in out
    stack.sink.start()
    stack.write_config(stack.workdir / "imap.secret")  # the sink's new port
    code, _out, err = run_once(stack, capsys)
    assert (code, err) == (0, "")
    # The request and the reporter's acknowledgement, once each: nothing was lost or doubled.
    assert sorted(r for _from, rcpts, _raw in stack.sink.messages for r in rcpts) == [ANNA, MAASPOORT[0]]


def test_a_database_that_refuses_writes_exits_1_and_loses_nothing(
        stack: LoopbackStack, capsys: pytest.CaptureFixture[str]) -> None:
    database = stack.workdir / "binrelay.db"
    with sqlite3.connect(database) as connection:  # as if the disk were full
        connection.execute("CREATE TRIGGER full BEFORE INSERT ON messages "
                           "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    stack.mail_in(compose(sender=MAASPOORT[0], subject="Inbraak", body="Ingebroken aan de Marathonloop."))
    code, _out, err = run_once(stack, capsys)
    assert code == 1 and "ingest failed" in err and "disk is full" in err
    assert inbox_size(stack) == 1  # still in the mailbox, read again next time
    with sqlite3.connect(database) as connection:
        connection.execute("DROP TRIGGER full")
    code, out, _err = run_once(stack, capsys)
    assert code == 0 and "stored 1, routed 1" in out


def test_an_unreachable_smtp_server_is_named_and_said_once_a_pass(
        stack: LoopbackStack, capsys: pytest.CaptureFixture[str]) -> None:
    # The stack has two SMTP connections: each finds the server down.
    for n in range(3):
        stack.mail_in(compose(sender=MAASPOORT[0], subject=f"Inbraak {n}",
                              body=f"Ingebroken aan de Marathonloop {n}, de achterdeur is opengebroken."))
    port = stack.sink.port
    stack.sink.stop()
    code = main(["--config", str(stack.config_path), "run", "--once"])
    _out, err = capsys.readouterr()
    assert code == 1
    assert f"binrelay run --once: SMTP server unreachable: 127.0.0.1:{port}: " in err
    assert err.count("SMTP server unreachable (") == 1  # the log line: once, not once per connection
