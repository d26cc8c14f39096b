"""Reading coordinators' answers: commands, combinations, typos, quotes and signatures, real clients."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mail.html import html_to_text
from mail.message import parse_mail
from mail.quotes import new_text
from relay.config import Config, parse_config
from rules.loader import load_rules
from rules.places import Places
from rules.replies import ReplyCommand, category_problem, parse_reply
from tests.test_approvals_helpers import config_dict

# ---------------------------------------------------------------- single commands


@pytest.mark.parametrize(
    "text",
    ["AKKOORD", "akkoord", "Akkoord!", "OK", "ok.", "Ok", "JA", "Ja, prima", "ja prima hoor", "APPROVE", "Yes",
     "yes!", "*AKKOORD*", "  Akkoord  ", "Akkoord.\n\nMet vriendelijke groet,\nAnna"],
)
def test_approve_words(text: str) -> None:
    command = parse_reply(text)
    assert command.decision == "approve" and command.problems == [] and command.wards == []


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("AFWIJZEN", None),
        ("afwijzen dit is al bekend", "dit is al bekend"),
        ("Nee, dit is al bekend.", "dit is al bekend."),
        ("NEE: staat al op Facebook", "staat al op Facebook"),
        ("REJECT duplicate", "duplicate"),
        ("No. Already known to the police", "Already known to the police"),
        ("AFWIJZEN\nDit is al eerder gemeld\ndoor de wijkagent.", "Dit is al eerder gemeld door de wijkagent."),
        ("AFWIJZEN\n\nDit is al eerder gemeld.\n\nMet groet,\nAnna", "Dit is al eerder gemeld."),
        ("AFWIJZEN te persoonlijk\n\nGroet, Anna", "te persoonlijk"),
        ("Afwijzen - te persoonlijk\nGroetjes", "te persoonlijk"),
    ],
)
def test_reject_and_its_reason(text: str, reason: str | None) -> None:
    command = parse_reply(text)
    assert command.decision == "reject" and command.reason == reason and command.problems == []


def test_edit_text_is_the_lines_after_the_word() -> None:
    command = parse_reply("WIJZIG\nVannacht is ingebroken in een schuur.\nLet op uw fietsen.\n\n")
    assert command.decision == "edit"
    assert command.edited_text == "Vannacht is ingebroken in een schuur.\nLet op uw fietsen."


def test_edit_text_may_start_on_the_same_line_and_keeps_paragraphs() -> None:
    command = parse_reply("EDIT: Break-in last night.\n\nPlease lock your sheds.")
    assert command.edited_text == "Break-in last night.\n\nPlease lock your sheds."


@pytest.mark.parametrize(
    ("text", "edited"),
    [pytest.param("Wijzig\nInbraak in een schuur aan de Marathonloop.\n\n"
                  "Op 3 nov. 2026 om 14:02 schreef BIN Den Bosch <bin+abc@example.org>:\n> Ingebroken bij nummer 12\n",
                  "Inbraak in een schuur aan de Marathonloop.", id="quote"),
     pytest.param("WIJZIG\nInbraak in een schuur.\n\nMet vriendelijke groet,\nAnna\n-- \nAnna de Vries\nCoördinator",
                  "Inbraak in een schuur.", id="signature"),
     pytest.param("EDIT\nBreak-in in a shed.\n\nSent from my iPhone\n\n> On 3 Nov 2026, at 14:02, BIN wrote:\n> x",
                  "Break-in in a shed.", id="phone signature"),
     pytest.param("WIJZIG\nLet op: inbraak aan de Marathonloop.\nSluit uw schuur af.\n\nMet vriendelijke groet,\n"
                  "Anna de Vries\nCoördinator Maaspoort\n06-12345678\nanna@example.net",
                  "Let op: inbraak aan de Marathonloop.\nSluit uw schuur af.", id="sign-off with contact lines"),
     pytest.param("WIJZIG\nLet op: inbraak.\n\nAnna de Vries\nCoördinator Maaspoort\n06-12345678",
                  "Let op: inbraak.", id="name and phone without sign-off"),
     pytest.param("WIJZIG\nLet op: inbraak.\n\nHeeft u iets gezien? Bel de politie:\n0900-8844",
                  "Let op: inbraak.\n\nHeeft u iets gezien? Bel de politie:\n0900-8844", id="phone of the alert stays")],
)
def test_edit_text_ends_where_the_new_text_ends(text: str, edited: str) -> None:
    assert parse_reply(text).edited_text == edited


def test_edit_without_text_is_a_problem() -> None:
    for text in ("WIJZIG", "WIJZIG\n\nGroet, Anna", "wijzig\nPOLITIE"):
        command = parse_reply(text)
        assert command.decision == "edit" and command.edited_text is None
        assert command.problems == ["WIJZIG zonder nieuwe tekst"]
    assert parse_reply("EDIT").problems == ["EDIT without new text"]


# ---------------------------------------------------------------- wards and partners


def test_combined_approve_wards_and_police() -> None:
    command = parse_reply("AKKOORD\nWIJK Maaspoort, Empel\nPOLITIE")
    assert command == ReplyCommand(decision="approve", wards=["Maaspoort", "Empel"], partners=["police"])


@pytest.mark.parametrize(
    ("line", "wards"),
    [
        ("WIJK Empel", ["Empel"]),
        ("wijk: Empel en Maaspoort", ["Empel", "Maaspoort"]),
        ("WARD Empel and Maaspoort", ["Empel", "Maaspoort"]),
        ("Wijken Empel, Maaspoort en Rosmalen-Noord.", ["Empel", "Maaspoort", "Rosmalen-Noord"]),
        ("WIJK Empel; Binnenstad / 's-Hertogenbosch", ["Empel", "Binnenstad", "'s-Hertogenbosch"]),
    ],
)
def test_ward_lines_split_on_commas_and_en(line: str, wards: list[str]) -> None:
    assert parse_reply(f"AKKOORD\n{line}").wards == wards


def test_ward_without_a_name_is_a_problem() -> None:
    assert parse_reply("AKKOORD\nWIJK").problems == ["WIJK zonder naam van een wijk"]


@pytest.mark.parametrize(
    ("text", "partners"),
    [("AKKOORD\nPOLITIE", ["police"]), ("ok\nGemeente.", ["municipality"]),
     ("APPROVE\nPOLICE\nMUNICIPALITY", ["police", "municipality"]),
     ("Ja\nPolitie en gemeente", ["police", "municipality"])],
)
def test_partner_lines(text: str, partners: list[str]) -> None:
    assert parse_reply(text).partners == partners


def test_police_alone_has_no_decision() -> None:
    command = parse_reply("POLITIE\n\nGroet, Anna")
    assert command.decision is None and command.partners == ["police"] and command.problems == []


def test_ward_line_before_the_decision_counts() -> None:
    command = parse_reply("WIJK Empel\nAKKOORD")
    assert command.decision == "approve" and command.wards == ["Empel"]


def test_reject_with_police_keeps_the_reason_apart() -> None:
    command = parse_reply("AFWIJZEN niet voor de buurt\nPOLITIE")
    assert command.decision == "reject" and command.reason == "niet voor de buurt" and command.partners == ["police"]


def test_a_sentence_that_mentions_the_police_is_not_a_partner_line() -> None:
    command = parse_reply("AFWIJZEN\nde politie weet het al")
    assert command.partners == [] and command.reason == "de politie weet het al"


def test_edit_text_without_ward_and_police_lines() -> None:
    command = parse_reply("WIJZIG\nInbraak in een schuur.\nWIJK Empel\nPOLITIE\nLet op uw fietsen.")
    assert command.edited_text == "Inbraak in een schuur.\nLet op uw fietsen."
    assert command.wards == ["Empel"] and command.partners == ["police"]


# ---------------------------------------------------------------- ambiguity is asked about, never guessed


@pytest.mark.parametrize(
    ("text", "problem"),
    [("AKOORD", "onbekend woord 'AKOORD' (bedoelt u AKKOORD?)"),
     ("Akkord", "onbekend woord 'Akkord' (bedoelt u AKKOORD?)"),
     ("aprove", "unknown word 'aprove' (did you mean APPROVE?)"),
     ("Approved", "unknown word 'Approved' (did you mean APPROVE?)"),
     ("Oké", "onbekend woord 'Oké' (bedoelt u OK?)"),
     ("jaaa", "onbekend woord 'jaaa' (bedoelt u JA?)"),
     ("AFWIJZN", "onbekend woord 'AFWIJZN' (bedoelt u AFWIJZEN?)"),
     ("Wjizig\nnieuwe tekst", "onbekend woord 'Wjizig' (bedoelt u WIJZIG?)"),
     ("Akord", "onbekend woord 'Akord' (bedoelt u AKKOORD?)"),
     ("Rejected", "unknown word 'Rejected' (did you mean REJECT?)")],
)
def test_typos_are_problems_not_decisions(text: str, problem: str) -> None:
    command = parse_reply(text)
    assert command.decision is None and command.problems == [problem]


@pytest.mark.parametrize("text", ["AKKOORD\nAFWIJZEN", "OK\nNee toch maar niet", "AKKOORD\nWIJZIG\nandere tekst",
                                  "AFWIJZEN te laat\nAKKOORD"])
def test_two_decisions_are_a_problem(text: str) -> None:
    assert "twee verschillende besluiten" in parse_reply(text).problems


def test_same_decision_twice_is_fine() -> None:
    command = parse_reply("AKKOORD\nJa, prima zo")
    assert command.decision == "approve" and command.problems == []
    command = parse_reply("AKKOORD\n\nIk bel alleen nog even met de melder.\n\nAnna")
    assert command.decision == "approve" and command.problems == []  # a later paragraph sets no condition


@pytest.mark.parametrize("text", ["misschien morgen", "Dank je, ik kijk ernaar", "Wij bellen even", "Op zich prima",
                                  "Nou, lastig", "", "Wijkagent weet het al", "Politieagent belt u"])
def test_free_text_has_no_decision_and_no_false_alarm(text: str) -> None:
    command = parse_reply(text)
    assert command.decision is None and command.problems == [] and command.partners == []


def test_a_command_below_other_text_is_named_not_obeyed() -> None:
    command = parse_reply("Prima bericht, dank je.\nAKKOORD")
    assert command.decision is None and command.problems == ["AKKOORD moet op de eerste regel staan"]
    command = parse_reply("I'll call them.\nPOLICE")
    assert command.partners == [] and command.problems == ["POLICE must be on the first line"]


def test_a_salutation_line_is_skipped() -> None:
    assert parse_reply("Hoi Kees,\n\nAkkoord\n\nAnna").decision == "approve"
    assert parse_reply("Beste allen,\nAFWIJZEN al bekend").reason == "al bekend"


# ---------------------------------------------------------------- what counts as new text


@pytest.mark.parametrize(
    "quote",
    [
        "Op 12-11-2026 om 09:14 schreef Anna:\n> tekst",
        "Op ma 3 nov. 2026 om 14:02 schreef BIN Den Bosch <\nbin+abc@example.org>:\n\n> tekst",
        "Op maandag 3 november 2026 14:02 schreef BIN Den Bosch\n<bin+abc@example.org>:\n> tekst",
        "On Mon, Nov 3, 2026 at 2:02 PM BIN Den Bosch <bin+abc@example.org> wrote:\n> text",
        "Am 03.11.2026 um 14:02 schrieb BIN Den Bosch:\n> text",
        "Op 3 nov. 2026 om 14:02 heeft BIN Den Bosch <bin+abc@example.org> het volgende geschreven:\n\n> tekst",
        ("Van: BIN Den Bosch <bin+abc@example.org>\nVerzonden: maandag 3 november 2026 14:02\nAan: Anna\n"
        "Onderwerp: [BIN-abc] Inbraak\n\nAntwoord met AKKOORD"),
        ("From: BIN Den Bosch <bin+abc@example.org>\nSent: Monday, November 3, 2026 2:02 PM\nTo: Anna\n"
        "Subject: [BIN-abc]\n\nReply APPROVE"),
        "-----Oorspronkelijk bericht-----\nVan: BIN\nAKKOORD",
        "-----Original Message-----\nFrom: BIN\nAPPROVE",
        "________________________________\nVan: BIN <bin@example.org>\nVerzonden: maandag\nAKKOORD",
        "--------------------\nVan: BIN\nDatum: maandag\nAKKOORD",
        "Begin doorgestuurd bericht:\n\nVan: BIN\nAKKOORD",
        "-------- Oorspronkelijk bericht --------\nVan: BIN\nAKKOORD",
        "> AKKOORD\n> tekst",
    ],
)
def test_quoted_original_is_cut(quote: str) -> None:
    assert new_text(f"AFWIJZEN al bekend\n\n{quote}") == "AFWIJZEN al bekend"
    assert parse_reply(f"AFWIJZEN al bekend\n\n{quote}").decision == "reject"


@pytest.mark.parametrize(
    "signature",
    ["Verzonden vanaf mijn iPhone", "Verstuurd vanaf mijn iPhone", "Sent from my iPhone",
     "Verstuurd vanaf mijn Samsung Galaxy-smartphone.", "Outlook voor Android downloaden",
     "Outlook voor iOS downloaden (https://aka.ms/o0ukef)", "Get Outlook for Android",
     "Get Outlook for iOS<https://aka.ms/o0ukef>", "Verzonden vanuit Yahoo Mail voor Android",
     "Sent from Mail for Windows", "-- \nAnna de Vries\n06-12345678", "--\nAnna"],
)
def test_signatures_are_cut(signature: str) -> None:
    assert new_text(f"Akkoord\n\n{signature}") == "Akkoord"


def test_bottom_posting_reads_below_the_quote() -> None:
    text = ("Op 12-11-2026 om 09:14 schreef BIN Den Bosch:\n> Inbraak in Maaspoort\n> Antwoord met AKKOORD\n\n"
            "AFWIJZEN al bekend\n\nAnna")
    assert new_text(text) == "AFWIJZEN al bekend\n\nAnna"
    assert parse_reply(text).reason == "al bekend"


def test_interleaved_reply_keeps_only_unquoted_lines() -> None:
    text = "> Antwoord met AKKOORD\nAKKOORD\n> WIJK ...\nWIJK Empel\n"
    assert parse_reply(text) == ReplyCommand(decision="approve", wards=["Empel"])


def test_client_artefacts_are_removed() -> None:
    text = "\ufeff\u200bAkkoord\xa0\n[cid:image001.png@01DC4D3A.5E7F1B20]\n\n"
    assert new_text(text) == "Akkoord"


def test_quoted_command_words_never_count() -> None:
    text = ("Dank je!\n\nOp 3 nov. 2026 om 14:02 schreef BIN:\n> AKKOORD\n> WIJK Empel\n> POLITIE")
    assert parse_reply(text) == ReplyCommand()


# ---------------------------------------------------------------- ward names


def places_of(config: Config) -> Places:
    return Places(config.directory(), load_rules())


def test_resolve_wards_by_name_slug_alias_and_postcode() -> None:
    data = config_dict()
    data["wards"][0]["aliases"] = ["De Maaspoort", "Rosmalen-Zuid"]
    data["wards"][1]["postcodes"] = ["5235"]
    data["wards"].append({"slug": "s-hertogenbosch-oost", "name": "'s-Hertogenbosch Oost"})
    config = parse_config(data)
    names = ["MAASPOORT", "empel", "rosmalen zuid", "Binnenstad", "5235 AB", "Atlantis", "de Empel",
             "'s Hertogenbosch-Oost", "s-hertogenbosch-oost"]
    slugs, unknown = places_of(config).resolve_names(names)
    assert slugs == ["maaspoort", "empel", "binnenstad", "s-hertogenbosch-oost"]
    assert unknown == ["Atlantis"]


def test_resolve_wards_ignores_accents_and_case() -> None:
    data = config_dict()
    data["wards"].append({"slug": "cafe-wijk", "name": "Café-wijk"})
    config = parse_config(data)
    places = places_of(config)
    assert places.resolve_names(["CAFE WIJK", "café-Wijk"]) == (["cafe-wijk"], [])
    assert places.resolve_names([]) == ([], [])


# ---------------------------------------------------------------- properties

_COMMAND_FREE_WORDS = st.sampled_from(
    ["inbraak", "schuur", "fiets", "morgen", "dank", "prima", "bericht", "Maaspoort", "de", "het", "een",
     "politieagent", "wij", "nou", "op", "hoi", "groet", "!", ",", "?", "12", "thanks", "later", "vannacht"]
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_arbitrary_text_never_raises(text: str) -> None:
    command = parse_reply(text)
    assert command.decision in (None, "approve", "reject", "edit")
    assert new_text(new_text(text)) == new_text(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_COMMAND_FREE_WORDS, max_size=8).map(" ".join), max_size=6),
       st.sampled_from(["", "\n\nOp 3 nov. 2026 om 14:02 schreef BIN:\n> AKKOORD\n> WIJK Empel",
                        "\n\n-----Original Message-----\nFrom: BIN\nAPPROVE", "\n-- \nAKKOORD"]))
def test_text_without_a_command_word_never_decides(lines: list[str], quote: str) -> None:
    command = parse_reply("\n".join(lines) + quote)
    assert command.decision is None and command.partners == [] and command.wards == []
    assert command.urgency is None and command.category is None


# ---------------------------------------------------------------- real clients' replies (tests/replies/*.eml)

REPLIES = Path(__file__).parent / "replies"
EXPECTED: dict[str, dict[str, Any]] = json.loads((REPLIES / "expected.json").read_text(encoding="utf-8"))


def test_every_fixture_has_an_expectation() -> None:
    files = sorted(path.name for path in REPLIES.glob("*.eml"))
    assert files == sorted(EXPECTED) and len(files) >= 35


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_client_reply(name: str) -> None:
    expected = EXPECTED[name]
    mail = parse_mail((REPLIES / name).read_bytes())
    text = new_text(mail.text)
    # Nothing of the quoted request (its instructions, its token) is taken for the coordinator's words.
    assert "doorsturen naar" not in text and "k7m2q4x9a3b5c6d7" not in text and ">" not in text, text
    assert not any(phrase in text.lower() for phrase in ("iphone", "outlook", "galaxy", "yahoo", "k-9", "proton"))
    command = parse_reply(text)
    assert command.decision == expected["decision"], text
    assert command.reason == expected["reason"], text
    assert command.edited_text == expected["edited_text"], text
    assert command.wards == expected["wards"], text
    assert command.partners == expected["partners"], text
    assert command.urgency == expected.get("urgency"), text  # only the correction fixtures name them
    assert command.category == expected.get("category"), text
    assert command.problems == expected["problems"], text


WITH_HTML = [name for name in sorted(EXPECTED) if parse_mail((REPLIES / name).read_bytes()).html is not None]


@pytest.mark.parametrize("name", WITH_HTML)
def test_client_reply_html_alternative_reads_the_same(name: str) -> None:
    """HTML-only clients send what the plain part says as markup; rendered, it must give the same command."""
    mail = parse_mail((REPLIES / name).read_bytes())
    assert mail.html is not None
    command = parse_reply(html_to_text(mail.html))
    expected = EXPECTED[name]
    assert (command.decision, command.reason, command.edited_text, command.wards, command.partners,
            command.urgency, command.category, command.problems) == (
        expected["decision"], expected["reason"], expected["edited_text"], expected["wards"], expected["partners"],
        expected.get("urgency"), expected.get("category"), expected["problems"])


def test_a_long_repeated_thread_reads_only_the_first_answer() -> None:
    text = "AKKOORD\n\nOp 3 nov. 2026 om 14:02 schreef BIN:\n" + "> " + "schreef op " * 50 + "\n" * 1
    command = parse_reply(text * 2000)
    assert command.decision == "approve"


@pytest.mark.parametrize(
    ("text", "problem"),
    [("Akkoord, maar zonder het huisnummer",
      "'Akkoord, maar zonder het huisnummer' is akkoord met een voorwaarde; stuur WIJZIG met de nieuwe tekst"),
     ("Yes but only for Empel", "'Yes but only for Empel' approves with a condition; send EDIT with the new text"),
     ("AKKOORD\nWIJK Empel\nmaar zonder het huisnummer",
      "'maar zonder het huisnummer' is akkoord met een voorwaarde; stuur WIJZIG met de nieuwe tekst"),
     ("Ja, nee toch niet", "twee verschillende besluiten"),
     ("Nee, akkoord", "twee verschillende besluiten")],
)
def test_an_approval_with_a_condition_or_a_contradiction_is_asked_about(text: str, problem: str) -> None:
    assert parse_reply(text).problems == [problem]


@pytest.mark.parametrize(
    ("text", "problem"),
    [("akkoord, graag ook naar wijk Empel", "zet WIJK op een eigen regel onder AKKOORD"),
     ("Akkoord en politie", "zet POLITIE op een eigen regel onder AKKOORD"),
     ("Yes, police only", "put POLICE on a line of its own below YES")],
)
def test_ward_or_partner_on_the_approval_line_is_asked_about_not_ignored(text: str, problem: str) -> None:
    command = parse_reply(text)
    assert command.problems == [problem] and command.wards == [] and command.partners == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [("No problem, I'll check", "'No problem, I'll check' is unclear: APPROVE or REJECT?"),
     ("Nee, geen bezwaar", "'Nee, geen bezwaar' is niet duidelijk: AKKOORD of AFWIJZEN?"),
     ("Nee, alleen politie", "bedoelt u POLITIE zonder de wijk? Zet dan NEE en POLITIE elk op een eigen regel"),
     ("No, police only", "do you mean POLICE but not the ward? Then put NO and POLICE each on a line of its own")],
)
def test_a_no_that_may_mean_something_else_is_asked_about(text: str, problem: str) -> None:
    assert parse_reply(text).problems == [problem]


def test_a_reason_that_mentions_the_police_is_just_a_reason() -> None:
    command = parse_reply("Nee, politie is al gebeld")
    assert (command.decision, command.reason, command.partners, command.problems) == (
        "reject", "politie is al gebeld", [], [])


def test_edit_followed_by_a_ward_never_becomes_the_alert_text() -> None:
    command = parse_reply("WIJZIG WIJK Empel")
    assert command.edited_text is None and command.wards == ["Empel"]
    assert command.problems == ["WIJZIG is voor een nieuwe tekst; zet WIJK op een eigen regel onder AKKOORD"]
    assert parse_reply("WIJZIG: Politie zoekt getuigen").edited_text == "Politie zoekt getuigen"


@pytest.mark.parametrize(
    ("text", "problem"),
    [("Ok, ik kijk er morgen naar", "'Ok, ik kijk er morgen naar' is nog geen besluit: AKKOORD of AFWIJZEN?"),
     ("OK\nik overleg even met de wijkagent",
      "'ik overleg even met de wijkagent' is nog geen besluit: AKKOORD of AFWIJZEN?"),
     ("Yes, I'll check tomorrow", "'Yes, I'll check tomorrow' is not a decision yet: APPROVE or REJECT?")],
)
def test_an_ok_that_only_acknowledges_is_asked_about(text: str, problem: str) -> None:
    assert parse_reply(text).problems == [problem]


def test_problems_after_ok_are_in_the_language_of_its_line() -> None:
    assert parse_reply("Ok, but only Empel").problems == [
        "'Ok, but only Empel' approves with a condition; send EDIT with the new text"]
    assert parse_reply("Ok, maar alleen Empel").problems == [
        "'Ok, maar alleen Empel' is akkoord met een voorwaarde; stuur WIJZIG met de nieuwe tekst"]


# ---------------------------------------------------------------- corrections: SPOED / NIET SPOED, CATEGORIE


@pytest.mark.parametrize(
    ("text", "urgency"),
    [("AKKOORD\nSPOED", "urgent"), ("akkoord\nspoed!", "urgent"), ("APPROVE\nURGENT", "urgent"),
     ("AKKOORD\nNIET SPOED", "normal"), ("Ja\nGeen spoed.", "normal"), ("APPROVE\nNOT URGENT", "normal"),
     ("Yes\nnon-urgent", "normal"), ("OK\n*Niet spoed*", "normal"), ("SPOED\nAKKOORD", "urgent")],
)
def test_urgency_lines_with_an_approval(text: str, urgency: str) -> None:
    command = parse_reply(text)
    assert (command.decision, command.urgency, command.problems) == ("approve", urgency, [])


@pytest.mark.parametrize(
    ("line", "category"),
    [("CATEGORIE fraude", "fraude"), ("Categorie: inbraak.", "inbraak"), ("category missing person", "missing person"),
     ("CATEGORY: Theft", "Theft"), ("categorie Verdachte situatie", "Verdachte situatie")],
)
def test_category_lines_keep_the_name_as_written(line: str, category: str) -> None:
    command = parse_reply(f"AKKOORD\n{line}")
    assert (command.decision, command.category, command.problems) == ("approve", category, [])


def test_corrections_combine_with_wards_partners_and_a_rejection() -> None:
    command = parse_reply("AKKOORD\nWIJK Empel\nCATEGORIE fraude\nSPOED\nPOLITIE\n\nGroet, Anna")
    assert command == ReplyCommand(decision="approve", wards=["Empel"], partners=["police"], urgency="urgent",
                                   category="fraude")
    command = parse_reply("AFWIJZEN al bekend bij de wijkagent\nNIET SPOED\nCATEGORIE overlast")
    assert (command.decision, command.reason, command.urgency, command.category) == (
        "reject", "al bekend bij de wijkagent", "normal", "overlast")


def test_corrections_never_become_part_of_an_edited_text() -> None:
    command = parse_reply("WIJZIG\nLet op: inbraak in een schuur.\nSPOED\nCATEGORIE inbraak\nSluit uw schuur af.")
    assert command.edited_text == "Let op: inbraak in een schuur.\nSluit uw schuur af."
    assert (command.urgency, command.category, command.problems) == ("urgent", "inbraak", [])
    # A text that only starts with the word is the alert's text, not a correction.
    assert parse_reply("WIJZIG\nSpoed: vermiste jongen, 8 jaar.").edited_text == "Spoed: vermiste jongen, 8 jaar."


def test_a_correction_alone_has_no_decision_and_no_problem() -> None:
    for text, urgency, category in [("SPOED", "urgent", None), ("NOT URGENT\n\nKees", "normal", None),
                                    ("CATEGORIE fraude", None, "fraude"),
                                    ("Hoi,\n\nNIET SPOED\nCATEGORIE overlast\n\nGroet, Bert", "normal", "overlast")]:
        command = parse_reply(text)
        assert (command.decision, command.urgency, command.category, command.problems) == (
            None, urgency, category, []), text
        assert command.corrects


@pytest.mark.parametrize(
    ("text", "problem"),
    [("AKKOORD\nSPOEDD", "onbekend woord 'SPOEDD' (bedoelt u SPOED?)"),
     ("AKKOORD\nNIET SPOEED", "onbekend woord 'SPOEED' (bedoelt u SPOED?)"),
     ("APPROVE\nURGNET", "unknown word 'URGNET' (did you mean URGENT?)"),
     ("AKKOORD\nCATEGRIE fraude", "onbekend woord 'CATEGRIE' (bedoelt u CATEGORIE?)"),
     ("APPROVE\nCATEGROY fraud", "unknown word 'CATEGROY' (did you mean CATEGORY?)"),
     ("Spoedd", "onbekend woord 'Spoedd' (bedoelt u SPOED?)"),
     ("AKKOORD\nSpoed graag", "'Spoed graag': zet SPOED alleen op een eigen regel"),
     ("OK\nNot urgent at all", "'Not urgent at all': put NOT URGENT alone on a line of its own"),
     ("Akkoord, spoed", "zet SPOED op een eigen regel onder AKKOORD"),
     ("Akkoord, niet spoed", "zet NIET SPOED op een eigen regel onder AKKOORD"),
     ("Yes, category fraud", "put CATEGORY on a line of its own below YES"),
     ("AKKOORD\nCATEGORIE", "CATEGORIE zonder naam van een categorie"),
     ("AKKOORD\nSPOED\nNIET SPOED", "twee verschillende urgenties: SPOED of NIET SPOED?"),
     ("AKKOORD\nCATEGORIE fraude\nCATEGORIE inbraak", "twee verschillende categorieën: fraude of inbraak?"),
     ("WIJZIG SPOED", "WIJZIG is voor een nieuwe tekst; zet SPOED op een eigen regel onder AKKOORD"),
     ("Prima zo.\nNIET SPOED", "NIET SPOED moet op de eerste regel staan")],
)
def test_unclear_corrections_are_asked_about_never_guessed(text: str, problem: str) -> None:
    assert parse_reply(text).problems == [problem]


def test_a_sentence_about_urgency_is_neither_a_correction_nor_a_problem() -> None:
    command = parse_reply("AFWIJZEN niet urgent genoeg voor de hele wijk")
    assert (command.reason, command.urgency, command.problems) == ("niet urgent genoeg voor de hele wijk", None, [])
    command = parse_reply("AKKOORD\n\nIk bel de melder vanavond nog even, het lijkt me spoedeisend.\n\nAnna")
    assert (command.decision, command.urgency, command.problems) == ("approve", None, [])


def test_an_unknown_category_names_the_known_ones_and_the_likely_one() -> None:
    rules = load_rules()
    assert category_problem(rules, "fraude", "nl") is None and category_problem(rules, "Missing person", "en") is None
    problem = category_problem(rules, "fruade", "nl")
    assert problem is not None and problem.startswith("onbekende categorie 'fruade' (bedoelt u fraude?)")
    assert "inbraak" in problem and "oplichting" in problem and "overig" in problem
    problem = category_problem(rules, "spaceships", "en")
    assert problem == ("unknown category 'spaceships'; known categories: "
                       + ", ".join(rules.name(category, "en") for category in rules.categories))
