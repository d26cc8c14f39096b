"""Properties of the one sender identity (rules/sender.py), for arbitrary From and Sender headers."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mail.headers import decode_header_value
from mail.message import parse_mail
from rules.sender import Assurance, Trust, identify

TRUST = Trust((), "bin.example")
ADDRESS_LIKE = re.compile(r"[^\s<>()\"\[\],;:]+@[^\s<>()\"\[\],;:]+")
LOCAL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=1, max_size=12).filter(
    lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s)
DOMAIN = st.sampled_from(["example.org", "politie.nl", "bin.example", "mail.example.net", "xn--bcher-kva.de"])
ADDRESS = st.builds(lambda local, domain: f"{local}@{domain}", LOCAL, DOMAIN)
NAME_TEXT = st.text(alphabet=st.characters(exclude_categories=["Cs", "Cc"]), max_size=30)


def mail_with(*headers: str) -> bytes:
    head = "".join(f"{header}\r\n" for header in headers)
    return f"{head}To: bin@bin.example\r\nSubject: x\r\nMessage-ID: <p@x>\r\n\r\ntext\r\n".encode(
        "utf-8", "surrogateescape")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=200))
def test_any_from_value_yields_its_one_address_or_none(value: str) -> None:
    value = value.replace("\r", " ").replace("\n", " ")
    identity = identify(parse_mail(mail_with(f"From: {value}")), TRUST)
    if identity.address is None:
        return
    decoded = decode_header_value(value).lower()
    named = {found.rstrip(".") for found in ADDRESS_LIKE.findall(decoded)}
    assert identity.address in decoded
    assert named <= {identity.address}  # never one address among several


@settings(max_examples=400, deadline=None)
@given(real=ADDRESS, other=ADDRESS, name=NAME_TEXT,
       shape=st.sampled_from(["{name} <{real}>", '"{other}" <{real}>', "{other} <{real}>", "{real} ({other})",
                              "{name} <{real}> ({other})", "{real}, {other}", "{name} <{real}>, {other}",
                              "=?utf-8?q?{encoded}?= <{real}>", "{real}"]))
def test_the_address_is_the_real_one_and_none_when_another_is_shown(real: str, other: str, name: str,
                                                                    shape: str) -> None:
    encoded = other.replace("@", "=40").replace("_", "=5F")
    value = shape.format(name=name.replace('"', "").replace("\\", ""), real=real, other=other, encoded=encoded)
    identity = identify(parse_mail(mail_with(f"From: {value}")), TRUST)
    shows_other = "{other}" in shape or "{encoded}" in shape or ("{name}" in shape and ADDRESS_LIKE.search(name))
    if identity.address is not None:
        assert identity.address == real.lower()
    if shows_other and other.lower() != real.lower():
        assert identity.address is None  # ambiguous: nobody


@settings(max_examples=200, deadline=None)
@given(first=ADDRESS, second=ADDRESS)
def test_two_from_headers_are_nobody(first: str, second: str) -> None:
    identity = identify(parse_mail(mail_with(f"From: {first}", f"From: {second}")), TRUST)
    assert identity.address is None


@settings(max_examples=200, deadline=None)
@given(address=ADDRESS, sender=ADDRESS, result=st.sampled_from(["pass", "fail", "none"]))
def test_a_sender_header_naming_someone_else_is_never_trusted(address: str, sender: str, result: str) -> None:
    verdict = f"Authentication-Results: mx.bin.example; dmarc={result} header.from={address.split('@')[1]}"
    identity = identify(parse_mail(mail_with(verdict, f"From: {address}", f"Sender: {sender}")), TRUST)
    if sender.lower() != address.lower():
        assert identity.assurance == Assurance.FAILED and not identity.usable
    else:
        assert identity.address == address.lower()


@settings(max_examples=200, deadline=None)
@given(address=ADDRESS, server=st.sampled_from(["evil.example", "mx.example.org", "bin.example.evil"]),
       result=st.sampled_from(["pass", "fail"]))
def test_results_from_other_servers_are_ignored(address: str, server: str, result: str) -> None:
    verdict = f"Authentication-Results: {server}; dmarc={result} header.from={address.split('@')[1]}"
    identity = identify(parse_mail(mail_with(verdict, f"From: {address}")), TRUST)
    assert identity.assurance == Assurance.UNAUTHENTICATED


@settings(max_examples=200, deadline=None)
@given(address=ADDRESS, results=st.lists(st.sampled_from(["pass", "fail"]), min_size=1, max_size=4))
def test_of_several_trusted_results_a_failure_wins(address: str, results: list[str]) -> None:
    domain = address.split("@")[1]
    headers = [f"Authentication-Results: mx.bin.example; dmarc={r} header.from={domain}" for r in results]
    identity = identify(parse_mail(mail_with(*headers, f"From: {address}")), TRUST)
    expected = Assurance.FAILED if "fail" in results else Assurance.AUTHENTICATED
    assert identity.assurance == expected
