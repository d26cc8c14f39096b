"""Member commands by email, end to end at the handler level: stored message in, outbox rows out."""

from __future__ import annotations

import hashlib
import itertools
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from mail.message import parse_mail
from relay.config import parse_config
from relay.members.commands import handle_command, parse_categories
from relay.service.clock import FrozenClock
from relay.service.runtime import Runtime, build_runtime, make_classifier
from relay.service.tokens import token_hash
from rules.loader import load_rules
from storage.models import Confirmation, Member
from tests import mailgen
from tests.test_approvals_helpers import audit_actions, config_dict, outbox, store

NETWORK = "bin@example.org"
PIET = "piet@example.net"
_SERIAL = itertools.count()


def membership_config() -> Any:
    data = config_dict()
    data["wards"] = [
        {"slug": "maaspoort", "name": "Maaspoort", "aliases": ["Rietvelden"], "postcodes": ["5221", "5222"],
         "streets": ["Marathonloop"], "coordinators": ["anna@example.org"]},
        {"slug": "empel", "name": "Empel", "postcodes": ["5235"], "coordinators": ["carla@example.org"]},
        {"slug": "den-bosch-oost", "name": "Den Bosch-Oost", "aliases": ["Hintham"], "postcodes": ["5223"]},
    ]
    return parse_config(data)


def runtime(engine: Engine, clock: FrozenClock) -> Runtime:
    return build_runtime(membership_config(), engine, clock)


def verdict(result: str, sender: str = PIET) -> dict[str, str]:
    """The receiving server's Authentication-Results (mx.example.org, trusted for the network example.org)."""
    return {"Authentication-Results": f"mx.example.org; dmarc={result} header.from={sender.rsplit('@', 1)[1]}"}


def command(rt: Runtime, command: str, *, subject: str = "", body: str = "", sender: str = PIET,
            to: str = NETWORK, headers: dict[str, str] | None = None, verified: bool = True) -> None:
    """A member's mail, stored and classified as ``command``, through handle_command in one transaction.

    ``verified``: the receiving server says dmarc=pass (the common case for a real mailbox provider).
    """
    if verified and headers is None:
        headers = verdict("pass", sender)
    ident = hashlib.sha1(f"{next(_SERIAL)}{sender}{subject}{body}{to}{headers}".encode()).hexdigest()
    raw = mailgen.message(subject, body, sender=sender, to=to, message_id=f"{ident}@example.net", headers=headers)
    with rt.sessions() as session, session.begin():
        message = store(rt, session, raw, source="member", kind="command", command=command, category=None,
                        wards=())
        assert message.classification is not None
        handle_command(rt, session, message, parse_mail(raw), message.classification)


def members(rt: Runtime) -> dict[str, Member]:
    with rt.sessions() as session:
        rows = list(session.scalars(select(Member)))
        for row in rows:
            session.expunge(row)
    return {row.email: row for row in rows}


def confirm_token(rt: Runtime, recipient: str = PIET) -> str:
    sent = [s for s in outbox(rt.sessions, "member_confirm") if s.recipient == recipient]
    assert sent, f"no confirmation to {recipient}"
    subject = sent[-1].subject
    token = subject.split("[BIN-c-", 1)[1].split("]", 1)[0]
    assert len(token) == 16
    return token


def reply_to_confirmation(rt: Runtime, token: str, sender: str = PIET, *, via: str = "subject") -> None:
    if via == "subject":
        command(rt, "confirm", subject=f"Re: [BIN-c-{token}] Bevestig je aanmelding", body="ja", sender=sender)
    else:
        command(rt, "confirm", subject="Re: Bevestig", body="ok", sender=sender, to=f"bin+c-{token}@example.org")


# ---------------------------------------------------------------- subscribe and confirm


def test_dutch_double_opt_in(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    command(rt, "subscribe", subject="AANMELDEN Maaspoort")
    assert members(rt) == {}  # nothing before the confirmation
    [sent] = outbox(rt.sessions, "member_confirm")
    token = confirm_token(rt)
    assert sent.recipient == PIET and sent.message["To"] == PIET
    assert sent.subject == f"[BIN-c-{token}] Bevestig je aanmelding bij BIN Test"
    assert sent.message["Reply-To"] == f"bin+c-{token}@example.org"
    assert sent.message["Auto-Submitted"] == "auto-replied"
    assert "antwoord op dit bericht om je aanmelding te bevestigen" in sent.body.lower()
    assert "Maaspoort" in sent.body and "72 uur" in sent.body
    with rt.sessions() as session:  # only the hash is stored
        [row] = session.scalars(select(Confirmation))
        assert row.token_hash == token_hash(token) and row.ward == "maaspoort"
        assert row.expires_at == clock.now() + timedelta(hours=72)

    clock.advance(hours=1)
    reply_to_confirmation(rt, token, via="address")
    member = members(rt)[PIET]
    assert (member.ward, member.status, member.language) == ("maaspoort", "active", "nl")
    assert len(member.unsubscribe_token) == 16
    [welcome] = outbox(rt.sessions, "member_welcome")
    assert welcome.recipient == PIET and welcome.subject == "Welkom bij BIN Test"
    for word in ("HELP", "AFMELDEN", "ALLEEN SPOED", "CATEGORIEEN", "DAGELIJKS", "Maaspoort"):
        assert word in welcome.body
    assert ("piet@example.net", "member_joined", {"ward": "maaspoort", "previous_ward": None}) in [
        (a, b, {k: v for k, v in d.items()}) for a, b, d in audit_actions(rt.sessions)]


def test_english_subscribe_by_postcode_and_welcome_in_english(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    command(rt, "subscribe", subject="Subscribe", body="subscribe 5235 AB\n\nthanks!")
    [sent] = outbox(rt.sessions, "member_confirm")
    assert sent.subject.startswith("[BIN-c-") and "Confirm your subscription" in sent.subject
    assert "Reply to this message to confirm" in sent.body and "Empel" in sent.body
    reply_to_confirmation(rt, confirm_token(rt))
    member = members(rt)[PIET]
    assert (member.ward, member.language, member.postcode) == ("empel", "en", "5235AB")
    [welcome] = outbox(rt.sessions, "member_welcome")
    assert welcome.subject == "Welcome to BIN Test" and "UNSUBSCRIBE" in welcome.body


def test_ward_forms(engine: Engine, clock: FrozenClock) -> None:
    places = make_classifier(membership_config()).places
    for text, slug in [("Maaspoort", "maaspoort"), ("maaspoort", "maaspoort"), ("MAASPOORT.", "maaspoort"),
                       ("rietvelden", "maaspoort"), ("wijk Maaspoort", "maaspoort"), ("5221", "maaspoort"),
                       ("5222AB", "maaspoort"), ("5222 ab", "maaspoort"), ("5223 XY", "den-bosch-oost"),
                       ("den bosch-oost", "den-bosch-oost"), ("Den Bosch Oost", "den-bosch-oost"),
                       ("den-bosch-oost", "den-bosch-oost"), ("Hïntham", "den-bosch-oost"), ("empel", "empel"),
                       ("wijk: Empel", "empel"), ("voor de wijk Maaspoort graag", "maaspoort"),
                       ("Marathonloop 12", "maaspoort"), ("Maaspoort 5221 AB", "maaspoort")]:
        assert places.ward_for(text) == slug, text
    for text in ["", "Rosmalen", "1234", "52211", "5999 AA", "Empel of Maaspoort", "em"]:
        assert places.ward_for(text) is None, text


def test_unknown_ward_answer_lists_wards(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    command(rt, "subscribe", subject="aanmelden Rosmalen")
    [answer] = outbox(rt.sessions, "member_unknown_ward")
    assert answer.recipient == PIET and answer.subject == "Welke wijk bedoel je?"
    assert '"Rosmalen"' in answer.body and "AANMELDEN <wijk of postcode>" in answer.body
    for name in ("Maaspoort (postcodes 5221, 5222)", "Empel (postcodes 5235)", "Den Bosch-Oost"):
        assert name in answer.body
    assert outbox(rt.sessions, "member_confirm") == [] and members(rt) == {}

    command(rt, "subscribe", subject="join", body="join nowhere")
    english = outbox(rt.sessions, "member_unknown_ward")[-1]
    assert english.subject == "Which ward do you mean?" and "SUBSCRIBE <ward or postcode>" in english.body


def test_expired_confirmation_changes_nothing(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    command(rt, "subscribe", subject="AANMELDEN Empel")
    token = confirm_token(rt)
    clock.advance(hours=72, seconds=1)
    reply_to_confirmation(rt, token)
    assert members(rt) == {}
    [answer] = outbox(rt.sessions, "member_confirm_failed")
    assert answer.recipient == PIET and "verlopen" in answer.body


def test_confirmation_from_another_address_changes_nothing(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    command(rt, "subscribe", subject="AANMELDEN Empel")
    token = confirm_token(rt)
    reply_to_confirmation(rt, token, sender="mallory@example.com")
    assert members(rt) == {}
    [answer] = outbox(rt.sessions, "member_confirm_failed")
    assert answer.recipient == "mallory@example.com" and "ander adres" in answer.body
    reply_to_confirmation(rt, token)  # the real owner still can
    assert members(rt)[PIET].ward == "empel"


def test_reused_and_forged_tokens_change_nothing(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    command(rt, "subscribe", subject="AANMELDEN Empel")
    token = confirm_token(rt)
    reply_to_confirmation(rt, token)
    command(rt, "unsubscribe", subject="AFMELDEN")
    assert members(rt)[PIET].status == "left"
    reply_to_confirmation(rt, token)  # a second use must not bring the member back
    assert members(rt)[PIET].status == "left"
    reply_to_confirmation(rt, "a" * 16)
    reasons = [d.get("reason") for _, action, d in audit_actions(rt.sessions) if action == "confirm_refused"]
    assert reasons == ["used", "unknown"]
    bodies = [sent.body for sent in outbox(rt.sessions, "member_confirm_failed")]
    assert "al gebruikt" in bodies[0] and "hoort bij geen enkele aanmelding" in bodies[1]


def test_subscribe_again_to_own_ward_gets_a_short_answer(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    command(rt, "subscribe", subject="AANMELDEN Empel")
    reply_to_confirmation(rt, confirm_token(rt))
    command(rt, "subscribe", subject="Aanmelden: empel")
    [answer] = outbox(rt.sessions, "member_already")
    assert answer.subject == "Je bent al aangemeld voor Empel"
    assert len(outbox(rt.sessions, "member_confirm")) == 1


def test_moving_to_another_ward_needs_confirmation(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    command(rt, "subscribe", subject="AANMELDEN Empel")
    reply_to_confirmation(rt, confirm_token(rt))
    old_token = members(rt)[PIET].unsubscribe_token
    command(rt, "subscribe", subject="AANMELDEN 5221")
    assert members(rt)[PIET].ward == "empel"
    reply_to_confirmation(rt, confirm_token(rt))
    member = members(rt)[PIET]
    assert member.ward == "maaspoort" and member.unsubscribe_token == old_token
    assert "member_moved" in [action for _, action, _ in audit_actions(rt.sessions)]


def test_confirmations_are_rate_limited_per_address(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    victim = "victim@example.com"
    for _ in range(5):
        command(rt, "subscribe", subject="AANMELDEN Empel", sender=victim)
        clock.advance(minutes=1)
    assert len(outbox(rt.sessions, "member_confirm")) == 3  # limits.confirmations_per_day
    assert [a for _, a, _ in audit_actions(rt.sessions)].count("confirmation_rate_limited") == 2
    command(rt, "subscribe", subject="AANMELDEN Empel", sender="other@example.com")
    assert len(outbox(rt.sessions, "member_confirm")) == 4  # others are not affected
    clock.advance(days=1)
    command(rt, "subscribe", subject="AANMELDEN Empel", sender=victim)
    assert len(outbox(rt.sessions, "member_confirm")) == 5  # a day later it works again


def test_no_answer_to_automatic_mail_or_ourselves(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    command(rt, "subscribe", subject="AANMELDEN Empel", headers={"Auto-Submitted": "auto-replied"})
    command(rt, "help", subject="HELP", sender="bin+u-abc@example.org")
    command(rt, "help", subject="HELP", sender=NETWORK)
    assert outbox(rt.sessions) == []
    assert [a for _, a, _ in audit_actions(rt.sessions)] == ["member_command_ignored"] * 3


# ---------------------------------------------------------------- unsubscribe


def joined(rt: Runtime, ward: str = "Empel", sender: str = PIET, english: bool = False) -> Member:
    command(rt, "subscribe", subject=f"{'SUBSCRIBE' if english else 'AANMELDEN'} {ward}", sender=sender)
    reply_to_confirmation(rt, confirm_token(rt, sender), sender=sender)
    return members(rt)[sender]


def test_unsubscribe_in_dutch_and_english(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    joined(rt)
    command(rt, "unsubscribe", subject="Re: nieuwsbrief", body="afmelden\n\n> oude tekst")
    member = members(rt)[PIET]
    assert member.status == "left" and member.left_at == clock.now()
    [bye] = outbox(rt.sessions, "member_goodbye")
    assert bye.recipient == PIET and bye.subject == "Afgemeld bij BIN Test" and "Empel" in bye.body

    joined(rt, sender="jane@example.com", english=True)
    command(rt, "unsubscribe", subject="UNSUBSCRIBE", sender="jane@example.com")
    assert members(rt)["jane@example.com"].status == "left"
    assert outbox(rt.sessions, "member_goodbye")[-1].subject == "Unsubscribed from BIN Test"


def test_unsubscribe_when_not_a_member(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    command(rt, "unsubscribe", subject="UNSUBSCRIBE", sender="nobody@example.com")
    [answer] = outbox(rt.sessions, "member_not_member")
    assert answer.recipient == "nobody@example.com" and "not (or no longer)" in answer.body
    assert members(rt) == {}


def test_list_unsubscribe_address_leaves_once(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    token = joined(rt).unsubscribe_token
    # Sent by the mail client from another address of the member: the token is the proof.
    command(rt, "unsubscribe", subject="unsubscribe", sender="piet.alias@example.net",
            to=f"bin+u-{token}@example.org")
    assert members(rt)[PIET].status == "left"
    command(rt, "unsubscribe", subject="unsubscribe", sender=PIET, to=f"bin+u-{token}@example.org")
    [bye] = outbox(rt.sessions, "member_goodbye")  # never more than one
    assert bye.recipient == PIET
    command(rt, "unsubscribe", subject="unsubscribe", to=f"bin+u-{'b' * 16}@example.org")
    assert len(outbox(rt.sessions)) == 3  # confirm, welcome, goodbye: a forged link gets nothing


# ---------------------------------------------------------------- help and preferences


def test_help_for_a_member_and_a_stranger(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    joined(rt, ward="Maaspoort")
    command(rt, "help", subject="HELP")
    help_nl = outbox(rt.sessions, "member_help")[-1]
    assert help_nl.subject == "Hulp: zo werkt BIN Test"
    assert "wijk Maaspoort" in help_nl.body and "Alle berichten van je wijk" in help_nl.body
    assert "AFMELDEN" in help_nl.body
    command(rt, "help", subject="help", sender="jane@example.com")
    stranger = outbox(rt.sessions, "member_help")[-1]
    assert stranger.recipient == "jane@example.com" and "nog geen deelnemer" in stranger.body

    joined(rt, sender="john@example.com", english=True)
    command(rt, "help", subject="help", sender="john@example.com")  # HELP is both: the member's language
    english = outbox(rt.sessions, "member_help")[-1]
    assert english.subject == "Help: how BIN Test works" and "the ward Empel" in english.body


def test_preferences_dutch(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    joined(rt)
    command(rt, "preferences", subject="ALLEEN SPOED")
    assert members(rt)[PIET].preferences == {"urgent_only": True, "categories": [], "digest": False}
    answer = outbox(rt.sessions, "member_preferences")[-1]
    assert answer.subject == "Je instellingen zijn gewijzigd" and "Alleen spoedberichten" in answer.body
    command(rt, "preferences", subject="Re: Welkom", body="Categorieën: inbraak, vermissing en Brand\n-- \nPiet")
    assert members(rt)[PIET].preferences["categories"] == ["burglary", "fire", "missing_person"]
    assert "Categorieën: inbraak, brand, vermissing (spoedberichten altijd)" in outbox(
        rt.sessions, "member_preferences")[-1].body
    command(rt, "preferences", subject="dagelijks")
    preferences = members(rt)[PIET].preferences
    assert preferences["digest"] is True and preferences["urgent_only"] is False  # the latest mode wins
    assert preferences["categories"] == ["burglary", "fire", "missing_person"]
    assert "één keer per dag" in outbox(rt.sessions, "member_preferences")[-1].body
    command(rt, "preferences", subject="ALLES")
    assert members(rt)[PIET].preferences == {"urgent_only": False, "categories": [], "digest": False}


def test_preferences_english_and_unknown_category(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    joined(rt, english=True)
    command(rt, "preferences", subject="CATEGORIES burglary, missing_person, Missing person")
    assert members(rt)[PIET].preferences["categories"] == ["burglary", "missing_person"]
    answer = outbox(rt.sessions, "member_preferences")[-1]
    assert answer.subject == "Your settings have changed" and "burglary, missing person" in answer.body
    command(rt, "preferences", subject="categories burglary, unicorns")
    assert members(rt)[PIET].preferences["categories"] == ["burglary", "missing_person"]
    refused = outbox(rt.sessions, "member_preferences")[-1]
    assert refused.subject == "Setting not changed" and "unicorns" in refused.body
    command(rt, "preferences", subject="URGENT ONLY")
    command(rt, "preferences", subject="all")
    assert members(rt)[PIET].preferences == {"urgent_only": False, "categories": [], "digest": False}


def test_preferences_from_a_stranger(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    command(rt, "preferences", subject="DAILY", sender="jane@example.com")
    [answer] = outbox(rt.sessions, "member_not_member")
    assert answer.subject == "You are not a member of BIN Test"


RULES = load_rules()


def test_category_names() -> None:
    assert parse_categories(RULES, "inbraak, vermissing") == (["burglary", "missing_person"], [])
    assert parse_categories(RULES, "Burglary; FIRE / oplichting") == (["burglary", "fire", "fraud"], [])
    assert parse_categories(RULES, "inbraak, kabouters") == (["burglary"], ["kabouters"])


def test_answers_to_one_address_are_capped_per_day(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    for _ in range(15):
        command(rt, "help", subject="HELP", sender="victim@example.com")
        clock.advance(minutes=1)
    assert len(outbox(rt.sessions, "member_help")) == 10


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_reading_commands_never_raises(text: str) -> None:
    classifier = CLASSIFIER
    line = classifier.commands.parse_line(text)
    assert line is None or line.command in ("subscribe", "unsubscribe", "help", "preferences")
    classifier.places.ward_for(text)
    categories, _unknown = parse_categories(RULES, text)
    assert set(categories) <= set(RULES.categories)


CLASSIFIER = make_classifier(membership_config())


def test_a_confirmation_is_used_once_even_by_racing_transactions(engine: Engine, clock: FrozenClock) -> None:
    from storage.members import use_confirmation

    rt = runtime(engine, clock)
    command(rt, "subscribe", subject="AANMELDEN Empel")
    with rt.sessions() as session, session.begin():
        [row_id] = session.scalars(select(Confirmation.id))
    with rt.sessions() as first, first.begin():
        assert use_confirmation(first, row_id, clock.now()) is True
    with rt.sessions() as second, second.begin():
        assert use_confirmation(second, row_id, clock.now()) is False


def test_preferences_decide_now_or_digest() -> None:
    from storage.members import wants_digest, wants_now

    def member_with(**preferences: Any) -> Member:
        return Member(email="x@example.nl", ward="empel", preferences=preferences)

    everything = member_with()
    assert wants_now(everything, "theft", "normal") and not wants_digest(everything, "normal", "theft")
    urgent_only = member_with(urgent_only=True)
    assert wants_now(urgent_only, "fire", "urgent") and not wants_now(urgent_only, "fire", "normal")
    assert not wants_digest(urgent_only, "normal", "fire")
    picky = member_with(categories=["burglary", "missing_person"])
    assert wants_now(picky, "burglary", "normal") and not wants_now(picky, "theft", "low")
    assert wants_now(picky, "theft", "urgent")  # urgent always goes out at once
    daily = member_with(digest=True, categories=["burglary"])
    assert not wants_now(daily, "burglary", "normal") and wants_digest(daily, "normal", "burglary")
    assert not wants_digest(daily, "normal", "theft") and wants_now(daily, "theft", "urgent")
    assert not wants_digest(daily, "urgent", "burglary")


# ---------------------------------------------------------------- authentication


def test_a_failed_verdict_changes_nothing_and_answers_nobody(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    command(rt, "subscribe", subject="AANMELDEN Empel")
    reply_to_confirmation(rt, confirm_token(rt))
    sent_before = len(outbox(rt.sessions))
    for word, name in (("AFMELDEN", "unsubscribe"), ("ALLEEN SPOED", "preferences"), ("AANMELDEN Maaspoort", "subscribe")):
        command(rt, name, subject=word, headers=verdict("fail"))
    member = members(rt)[PIET]
    assert (member.status, member.ward, bool(member.preferences.get("urgent_only"))) == ("active", "empel", False)
    assert len(outbox(rt.sessions)) == sent_before
    refused = [detail for _actor, action, detail in audit_actions(rt.sessions) if action == "member_command_refused"]
    assert len(refused) == 3 and all(d["reason"] == "sender failed verification" for d in refused)


def test_an_unverified_afmelden_waits_for_a_reply_from_the_address(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    command(rt, "subscribe", subject="AANMELDEN Empel")
    reply_to_confirmation(rt, confirm_token(rt))
    command(rt, "unsubscribe", subject="AFMELDEN", verified=False)
    assert members(rt)[PIET].status == "active"  # anyone can write a From line
    [ask] = outbox(rt.sessions, "member_confirm_change")
    assert ask.recipient == PIET and "afmelden" in ask.body
    token = ask.subject.split("[BIN-c-", 1)[1].split("]", 1)[0]
    command(rt, "confirm", subject=f"Re: [BIN-c-{token}] Bevestig", body="ja", sender="mallory@example.com")
    assert members(rt)[PIET].status == "active"  # only the address itself can confirm
    command(rt, "confirm", subject=f"Re: [BIN-c-{token}] Bevestig", body="ja", verified=False)
    assert members(rt)[PIET].status == "left"


def test_an_unverified_setting_waits_for_a_reply_from_the_address(engine: Engine, clock: FrozenClock) -> None:
    rt = runtime(engine, clock)
    command(rt, "subscribe", subject="AANMELDEN Empel")
    reply_to_confirmation(rt, confirm_token(rt))
    command(rt, "preferences", subject="CATEGORIEEN inbraak, brand", verified=False)
    assert members(rt)[PIET].preferences.get("categories") in (None, [])
    [ask] = outbox(rt.sessions, "member_confirm_change")
    token = ask.subject.split("[BIN-c-", 1)[1].split("]", 1)[0]
    command(rt, "confirm", subject=f"Re: [BIN-c-{token}] Bevestig", body="ok", verified=False)
    assert members(rt)[PIET].preferences["categories"] == ["burglary", "fire"]


def test_confirmations_have_a_network_wide_hourly_cap(engine: Engine, clock: FrozenClock) -> None:
    config = membership_config()
    rt = build_runtime(config.model_copy(update={"limits": config.limits.model_copy(
        update={"confirmations_per_hour": 5})}), engine, clock)
    for number in range(12):
        command(rt, "subscribe", subject="AANMELDEN Empel", sender=f"stranger{number}@example.com")
    assert len(outbox(rt.sessions, "member_confirm")) == 5
    limited = [d for _a, action, d in audit_actions(rt.sessions) if action == "confirmation_rate_limited"]
    assert len(limited) == 7 and all(d["per"] == "for the network per hour" for d in limited)
    clock.advance(hours=1)
    command(rt, "subscribe", subject="AANMELDEN Empel", sender="neighbour@example.com")
    assert len(outbox(rt.sessions, "member_confirm")) == 6
