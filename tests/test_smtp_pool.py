"""The SMTP pool against the real recording sink: outcomes, reuse, TLS, AUTH, faults."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage

import pytest

from relay.config import SmtpConfig
from relay.delivery.smtp import SendResult, SmtpPool, smtp_connection
from relay.devservers.smtpsink import RecordingSink


def raw_message(to: str, n: int = 0) -> bytes:
    message = EmailMessage()
    message["From"] = "bin@example.org"
    message["To"] = to
    message["Subject"] = f"test {n}"
    message.set_content(f"body {n}\n")
    return message.as_bytes()


def send_all(cfg: SmtpConfig, recipients: list[str]) -> tuple[list[SendResult], int]:
    """Send from ``cfg.connections`` threads at once; results in recipient order."""
    pool = SmtpPool(cfg)
    try:
        with ThreadPoolExecutor(max_workers=pool.size) as executor:
            results = list(executor.map(
                lambda pair: pool.send("bin+bounce-1@example.org", pair[1], raw_message(pair[1], pair[0])),
                enumerate(recipients),
            ))
    finally:
        pool.close()
    return results, pool.connects


def test_messages_reuse_the_pool_connections(smtp_sink: RecordingSink, smtp_config: SmtpConfig) -> None:
    recipients = [f"m{i}@example.net" for i in range(20)]
    results, connects = send_all(smtp_config, recipients)
    assert all(result.accepted for result in results)
    assert connects == smtp_config.connections
    assert smtp_sink.stats.sessions == smtp_config.connections
    got = sorted(rcpts[0] for _, rcpts, _ in smtp_sink.messages)
    assert got == sorted(recipients)
    assert {sender for sender, _, _ in smtp_sink.messages} == {"bin+bounce-1@example.org"}


def test_outcomes_per_recipient(smtp_sink: RecordingSink, smtp_config: SmtpConfig) -> None:
    smtp_sink.reject("gone@example.net", "550 5.1.1 no such user")
    smtp_sink.reject("busy@example.net", "451 4.3.0 try again later")
    results, connects = send_all(smtp_config.model_copy(update={"connections": 1}),
                                 ["gone@example.net", "busy@example.net", "ok@example.net"])
    assert [r.outcome for r in results] == ["permanent", "temporary", "accepted"]
    assert results[0].code == 550 and "no such user" in results[0].detail
    assert results[1].code == 451
    assert connects == 1  # a refused recipient does not cost the connection
    assert [rcpts for _, rcpts, _ in smtp_sink.messages] == [["ok@example.net"]]


def test_421_mid_session_is_temporary_and_the_pool_reconnects(
    smtp_sink: RecordingSink, smtp_config: SmtpConfig
) -> None:
    smtp_sink.close_after(2)
    cfg = smtp_config.model_copy(update={"connections": 1})
    results, connects = send_all(cfg, [f"m{i}@example.net" for i in range(5)])
    assert [r.outcome for r in results] == ["accepted", "accepted", "temporary", "accepted", "accepted"]
    assert results[2].code == 421
    assert connects == 2
    assert len(smtp_sink.messages) == 4


def test_drop_after_data_is_temporary_though_the_message_arrived(
    smtp_sink: RecordingSink, smtp_config: SmtpConfig
) -> None:
    smtp_sink.drop_after_data(1)
    cfg = smtp_config.model_copy(update={"connections": 1})
    results, connects = send_all(cfg, ["a@example.net", "b@example.net"])
    assert [r.outcome for r in results] == ["temporary", "accepted"]
    assert connects == 2
    assert len(smtp_sink.messages) == 2  # the in-flight one arrived: a resend would duplicate it


def test_a_stalled_server_times_out_as_temporary(smtp_sink: RecordingSink, smtp_config: SmtpConfig) -> None:
    smtp_sink.data_delay = 3.0
    cfg = smtp_config.model_copy(update={"connections": 1, "timeout_seconds": 0.5})
    results, _ = send_all(cfg, ["slow@example.net"])
    assert results[0].outcome == "temporary"


def test_unreachable_server_is_temporary() -> None:
    with RecordingSink() as sink:
        port = sink.port
    cfg = SmtpConfig(host="127.0.0.1", port=port, starttls=False, connections=1, timeout_seconds=2)
    results, _ = send_all(cfg, ["a@example.net"])
    assert results[0].outcome == "temporary"


def test_starttls_and_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_SMTP_PASSWORD", "s3cret")
    with RecordingSink(users={"bin@example.org": "s3cret"}, require_tls=True) as sink:
        cfg = SmtpConfig(host="127.0.0.1", port=sink.port, starttls=True, username="bin@example.org",
                         password_env="X_SMTP_PASSWORD", cafile=sink.cafile, connections=1, timeout_seconds=5)
        results, _ = send_all(cfg, ["a@example.net"])
        assert results[0].accepted
        monkeypatch.setenv("X_SMTP_PASSWORD", "wrong")
        results, _ = send_all(cfg, ["b@example.net"])
        assert results[0].outcome == "temporary" and "authentication" in results[0].detail
        assert len(sink.messages) == 1


def test_smtp_connection_as_used_by_check(smtp_sink: RecordingSink, smtp_config: SmtpConfig) -> None:
    async def login() -> bool:
        connection = smtp_connection(smtp_config)
        await connection.connect()
        try:
            return connection.is_connected
        finally:
            await connection.quit()

    assert asyncio.run(login())


def test_smtp_connection_with_starttls_and_auth_as_check_uses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_SMTP_PASSWORD", "s3cret")
    with RecordingSink(users={"bin@example.org": "s3cret"}, require_tls=True) as sink:
        cfg = SmtpConfig(host="127.0.0.1", port=sink.port, starttls=True, username="bin@example.org",
                         password_env="X_SMTP_PASSWORD", cafile=sink.cafile, connections=1, timeout_seconds=5)

        async def login() -> bool:
            connection = smtp_connection(cfg)
            await connection.connect()
            try:
                return connection.is_connected and connection.get_transport_info("sslcontext") is not None
            finally:
                await connection.quit()

        assert asyncio.run(login())


def test_implicit_tls_and_auth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("X_SMTP_PASSWORD", "s3cret")
    with RecordingSink(users={"bin@example.org": "s3cret"}, implicit_tls=True) as sink:
        cfg = SmtpConfig(host="127.0.0.1", port=sink.port, ssl=True, starttls=False, username="bin@example.org",
                         password_env="X_SMTP_PASSWORD", cafile=sink.cafile, connections=1, timeout_seconds=5)
        results, _ = send_all(cfg, ["a@example.net"])
        assert results[0].accepted
        assert len(sink.messages) == 1


def test_an_untrusted_certificate_is_refused() -> None:
    with RecordingSink(starttls=True) as sink:
        cfg = SmtpConfig(host="127.0.0.1", port=sink.port, starttls=True, connections=1, timeout_seconds=5)
        results, _ = send_all(cfg, ["a@example.net"])
        assert results[0].outcome == "temporary" and results[0].unreachable
        assert sink.messages == []


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_outcomes_alike_with_and_without_pipelining(pipelining: bool) -> None:
    """A refusal inside a pipelined group leaves the session in step: the next message on it goes."""
    with RecordingSink(pipelining=pipelining) as sink:
        sink.reject("gone@example.net", "550 5.1.1 no such user")
        sink.reject("busy@example.net", "451 4.3.0 try again later")
        sink.close_after(4)
        cfg = SmtpConfig(host="127.0.0.1", port=sink.port, starttls=False, connections=1, timeout_seconds=5)
        recipients = ["gone@example.net", "a@example.net", "busy@example.net", "b@example.net",
                      "c@example.net", "d@example.net", "e@example.net", "f@example.net", "g@example.net"]
        results, connects = send_all(cfg, recipients)
        assert [r.outcome for r in results] == ["permanent", "accepted", "temporary", "accepted", "accepted",
                                                "accepted", "temporary", "accepted", "accepted"]
        assert results[6].code == 421  # after four messages the server closes: MAIL answered 421
        assert connects == 2
        assert sorted(rcpts[0] for _, rcpts, _ in sink.messages) == [f"{c}@example.net" for c in "abcdfg"]


def test_a_line_starting_with_a_dot_arrives_intact(smtp_sink: RecordingSink, smtp_config: SmtpConfig) -> None:
    raw = b"From: bin@example.org\r\nTo: a@example.net\r\nSubject: dots\r\n\r\n.\r\n..two\r\n.end"
    pool = SmtpPool(smtp_config)
    try:
        assert pool.send("bin@example.org", "a@example.net", raw).accepted
    finally:
        pool.close()
    [(_, _, arrived)] = smtp_sink.messages
    assert arrived.endswith((b"\r\n\r\n.\r\n..two\r\n.end", b"\r\n\r\n.\r\n..two\r\n.end\r\n"))


def test_a_session_the_server_closed_while_idle_is_reopened_not_failed(
    smtp_sink: RecordingSink, smtp_config: SmtpConfig
) -> None:
    pool = SmtpPool(smtp_config.model_copy(update={"connections": 1}))
    try:
        assert pool.send("bin@example.org", "a@example.net", raw_message("a@example.net")).accepted
        smtp_sink.hang_up()  # an idle timeout between two passes
        time.sleep(0.2)
        assert pool.send("bin@example.org", "b@example.net", raw_message("b@example.net")).accepted
        assert pool.connects == 2
    finally:
        pool.close()
    assert len(smtp_sink.messages) == 2
